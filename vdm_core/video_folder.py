"""Training on your own videos: a deterministic, resumable stream of clips from a folder.

Every video file under the root (recursively; see `VIDEO_EXTENSIONS`) is decoded once with
`read_video` into a small uint8 clip kept in memory. Files that cannot be used (corrupt, too
large, or shorter than one training window) are skipped with a `VideoFolderWarning` naming each.

Captions come from `captions.csv` in the root (columns `file,caption`, file relative to the
root), else from a `.txt` file with the clip's stem beside it, else "" (unconditional).

Batch b depends only on (seed, b) through `np.random.default_rng([seed, b])`, so restoring the
batch counter with `load_state_dict` resumes the stream exactly.
"""

import csv
import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from vdm_core.batch import Batch
from vdm_core.video_io import (
    MAX_READ_FRAMES,
    VIDEO_EXTENSIONS,
    VideoReadError,
    check_positive_int,
    frames_to_tensor,
    read_video,
)

CAPTIONS_FILE = "captions.csv"
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # 1 GB per training file (decoding streams, so it is cheap)



class VideoFolderWarning(UserWarning):
    """A file in the video folder was skipped, or a caption entry could not be used."""


@dataclass(frozen=True)
class FolderClip:
    """One decoded training video."""

    name: str  # path relative to the root, with "/" separators
    frames: np.ndarray  # (T, H, W, 3) uint8
    caption: str


def _relative_name(text: str) -> str:
    """Normalise a relative file name from captions.csv: '/' separators, no leading './'."""
    return PurePosixPath(text.strip().replace("\\", "/")).as_posix().removeprefix("./")


def find_videos(root: Path) -> list[Path]:
    """All video files under root (recursively, hidden names excluded), sorted by path."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in VIDEO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_captions_csv(path: Path) -> dict[str, str]:
    """captions.csv (header `file,caption`) -> {relative file name: caption}.

    Raises a ValueError naming the file if a required column is missing.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path} must have the header columns 'file,caption'; missing: "
                f"{', '.join(sorted(missing))}"
            )
        return {
            _relative_name(row["file"]): (row["caption"] or "").strip()
            for row in reader
            if (row["file"] or "").strip()
        }


def _sidecar_caption(video: Path) -> str | None:
    """The stripped text of the .txt file beside video with the same stem, if there is one."""
    txt = video.with_suffix(".txt")
    if not txt.is_file():
        return None
    return txt.read_text(encoding="utf-8-sig").strip()


class VideoFolderStream(Iterator[Batch]):
    """Infinite deterministic stream of random `num_frames`-frame windows from a video folder."""

    def __init__(
        self,
        root: str | Path,
        batch_size: int,
        num_frames: int = 16,
        size: int = 32,
        frame_skip: int = 1,
        seed: int = 0,
        max_frames_per_clip: int = MAX_READ_FRAMES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Find, decode and caption every video under root.

        A window covers num_frames * frame_skip consecutive frames and keeps every
        frame_skip-th; clips shorter than that are skipped. Only the first max_frames_per_clip
        frames of each file are decoded. Raises FileNotFoundError / NotADirectoryError for a bad
        root and ValueError when no usable clip remains.
        """
        self.root = Path(root)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.num_frames = check_positive_int("num_frames", num_frames)
        self.size = check_positive_int("size", size)
        self.frame_skip = check_positive_int("frame_skip", frame_skip)
        self.seed = int(seed)
        max_frames_per_clip = check_positive_int("max_frames_per_clip", max_frames_per_clip)
        if self.window > max_frames_per_clip:
            raise ValueError(
                f"a window of num_frames * frame_skip = {self.window} frames exceeds "
                f"max_frames_per_clip = {max_frames_per_clip}"
            )
        if not self.root.exists():
            raise FileNotFoundError(f"video folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {self.root}")
        self.clips = self._load_clips(max_frames_per_clip, max_bytes)
        self.batch_index = 0

    @property
    def window(self) -> int:
        """Frames spanned by one training window: num_frames * frame_skip."""
        return self.num_frames * self.frame_skip

    def _load_clips(self, max_frames: int, max_bytes: int) -> list[FolderClip]:
        """Decode every usable video under the root; warn about and skip the rest."""
        videos = find_videos(self.root)
        if not videos:
            raise ValueError(
                f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found under {self.root}"
            )
        csv_path = self.root / CAPTIONS_FILE
        table = read_captions_csv(csv_path) if csv_path.is_file() else {}
        names = {v.relative_to(self.root).as_posix() for v in videos}
        for unknown in sorted(set(table) - names):
            warnings.warn(
                f"{CAPTIONS_FILE} names '{unknown}', which is not a video file under {self.root}",
                VideoFolderWarning,
                stacklevel=3,
            )
        clips = []
        for video in videos:
            name = video.relative_to(self.root).as_posix()
            try:
                frames = read_video(
                    video, size=self.size, max_frames=max_frames, max_bytes=max_bytes, truncate=True
                )  # (T, size, size, 3)
            except VideoReadError as exc:
                warnings.warn(f"skipping {name}: {exc}", VideoFolderWarning, stacklevel=3)
                continue
            if frames.shape[0] < self.window:
                warnings.warn(
                    f"skipping {name}: it has {frames.shape[0]} frames, fewer than the "
                    f"{self.window} of one window (num_frames={self.num_frames} * "
                    f"frame_skip={self.frame_skip})",
                    VideoFolderWarning,
                    stacklevel=3,
                )
                continue
            caption = table.get(name)
            if caption is None:
                caption = _sidecar_caption(video) or ""
            clips.append(FolderClip(name=name, frames=frames, caption=caption))
        if not clips:
            raise ValueError(
                f"no usable video clip under {self.root}: all {len(videos)} video files were "
                f"skipped (unreadable, or shorter than {self.window} frames)"
            )
        return clips

    @property
    def fingerprint(self) -> str:
        """A short digest of the clip names and lengths, to detect a changed folder on resume."""
        text = "\n".join(f"{c.name}:{c.frames.shape[0]}" for c in self.clips)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]

    def batch_at(self, batch_index: int) -> Batch:
        """Batch number batch_index; a pure function of (seed, batch_index) and the clips."""
        rng = np.random.default_rng([self.seed, batch_index])
        picks = rng.integers(0, len(self.clips), size=self.batch_size)  # (B,)
        lengths = np.array([self.clips[i].frames.shape[0] for i in picks])  # (B,)
        starts = rng.integers(0, lengths - self.window + 1)  # (B,)
        videos = [
            frames_to_tensor(self.clips[i].frames[s : s + self.window : self.frame_skip])
            for i, s in zip(picks, starts, strict=True)
        ]  # B x (3, T, H, W)
        return Batch(
            video=torch.stack(videos),  # (B, 3, T, H, W)
            captions=[self.clips[i].caption for i in picks],
            num_video_frames=self.num_frames,
            frameskip=torch.full((self.batch_size,), self.frame_skip, dtype=torch.long),
        )

    def __iter__(self) -> "VideoFolderStream":
        """The stream is its own iterator."""
        return self

    def __next__(self) -> Batch:
        """The next batch; the stream never ends."""
        batch = self.batch_at(self.batch_index)
        self.batch_index += 1
        return batch

    def state_dict(self) -> dict:
        """JSON-serialisable resume state."""
        return {
            "seed": self.seed,
            "batch_index": self.batch_index,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict`; the seed must match (a changed folder only warns)."""
        if int(state["seed"]) != self.seed:
            raise ValueError(f"stream seed {self.seed} != saved seed {state['seed']}")
        saved = state.get("fingerprint")
        if saved is not None and saved != self.fingerprint:
            warnings.warn(
                f"the clips under {self.root} changed since this state was saved; the stream "
                "resumes at the same batch index but will not repeat the original batches",
                VideoFolderWarning,
                stacklevel=2,
            )
        self.batch_index = int(state["batch_index"])
