"""Where the Extend & compare tab gets its clip: a held-out world clip, the last generated clip or
an uploaded video. Pure functions (no Gradio): problems raise `InputError` with a clear message.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from demo.validation import InputError
from vdm_core.data import BACKGROUND, EVAL_SEEDS, Clip, world_clip
from vdm_core.detect import detect_objects
from vdm_core.metrics import describe_clip
from vdm_core.video_io import MAX_BYTES, MAX_READ_FRAMES, VideoReadError, read_video

WORLD = "World clip"
LAST = "Last generated clip"
UPLOAD = "Uploaded video"
SOURCES = (WORLD, LAST, UPLOAD)
OFF_WORLD_NOTE = ("The model knows only the bouncing-shapes world (coloured shapes on a dark "
                  "32×32 background), so its result on other footage is a demonstration of the "
                  "method, not of realism.")
PROBE_FRAMES = 4  # frames looked at by `looks_like_world`
BACKGROUND_TOLERANCE = 24  # per channel, around the world's background colour
MIN_BACKGROUND = 0.4  # fraction of a world frame that is background (the world: 0.7-0.9)


@dataclass
class SourceClip:
    """A clip to condition on: uint8 frames (T, H, W, 3) at the model's size, its caption, and
    the world Clip (true object trajectories) when it is a world clip."""

    frames: np.ndarray
    caption: str
    label: str
    clip: Clip | None = None

    @property
    def num_frames(self) -> int:
        """Number of frames of the clip."""
        return len(self.frames)


def world_seed(index: int) -> int:
    """The scene seed of held-out world clip number index (wrapping around EVAL_SEEDS)."""
    return EVAL_SEEDS[int(index) % len(EVAL_SEEDS)]


def world_caption(index: int, size: int = 32) -> str:
    """The caption of held-out world clip number index."""
    return world_clip(world_seed(index), 1, size).caption


def world_source(index: int, num_frames: int, size: int) -> SourceClip:
    """num_frames frames of held-out world clip number index (never seen in training)."""
    clip = world_clip(world_seed(index), num_frames, size)
    return SourceClip(clip.frames, clip.caption, f"world clip #{int(index)}", clip)


def last_source(last: dict | None) -> SourceClip:
    """The clip kept from the last Generate call ({"frames", "prompt"}), or an InputError."""
    if not last or last.get("frames") is None:
        raise InputError("There is no generated clip yet: generate one in the Generate tab "
                         "first, or choose another source.")
    return SourceClip(np.asarray(last["frames"], dtype=np.uint8), last.get("prompt", ""),
                      "the last generated clip")


def _upload_path(upload: str | Path | None) -> Path:
    """The local path of an uploaded file, or an InputError when there is none."""
    if not upload:
        raise InputError("No video uploaded: upload a video (mp4, webm, mov, avi, mkv or gif) "
                         "or choose another source.")
    return Path(str(upload))


@lru_cache(maxsize=4)
def _decoded(path: str, size: int, mtime_ns: int, num_bytes: int) -> np.ndarray:
    """read_video of an upload, kept for the next call on the same unchanged file: the prompt is
    read from an upload when it arrives (`upload_caption`) and the task decodes it again when it
    runs. The file's mtime and size are in the key, so a rewritten file is decoded anew."""
    frames = read_video(Path(path), size=size, max_frames=MAX_READ_FRAMES, max_bytes=MAX_BYTES)
    frames.flags.writeable = False  # (T, H, W, 3) shared between calls
    return frames


def upload_source(upload: str | Path | None, size: int) -> SourceClip:
    """An uploaded video decoded to size x size frames, or an InputError naming the limit."""
    path = _upload_path(upload)
    stat = path.stat() if path.is_file() else None  # otherwise read_video names the problem
    try:
        frames = _decoded(str(path), size, stat.st_mtime_ns if stat else 0,
                          stat.st_size if stat else 0).copy()
    except VideoReadError as exc:
        raise InputError(f"Cannot use the uploaded video: {exc}") from None
    return SourceClip(frames, "", f"the uploaded video ({len(frames)} frames)")


def looks_like_world(frames: np.ndarray) -> bool:
    """Whether uint8 frames (T, H, W, 3) look like the bouncing-shapes world: in each of the
    first PROBE_FRAMES frames, at least MIN_BACKGROUND of the pixels are the world's dark
    background and the world's object detector finds a shape."""
    background = np.asarray(BACKGROUND, dtype=np.int16)
    for frame in frames[:PROBE_FRAMES]:
        dark = np.abs(frame.astype(np.int16) - background).max(axis=-1) <= BACKGROUND_TOLERANCE
        if dark.mean() < MIN_BACKGROUND or not detect_objects(frame):
            return False
    return len(frames) > 0


def load_source(kind: str, world_index: object, upload: str | Path | None, last: dict | None,
                num_frames: int, size: int) -> SourceClip:
    """The source clip of kind WORLD, LAST or UPLOAD (world clips get num_frames frames)."""
    if kind == WORLD:
        return world_source(_index(world_index), num_frames, size)
    if kind == LAST:
        return last_source(last)
    if kind == UPLOAD:
        return upload_source(upload, size)
    raise InputError(f"unknown source {kind!r}: choose one of {', '.join(SOURCES)}")


def _index(world_index: object) -> int:
    """A world clip number in [0, len(EVAL_SEEDS)), or an InputError."""
    try:
        index = int(world_index)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"the world clip number must be an integer, got {world_index!r}") from None
    if not 0 <= index < len(EVAL_SEEDS):
        raise InputError(f"the world clip number must be between 0 and {len(EVAL_SEEDS) - 1}, "
                         f"got {index}")
    return index


def upload_caption(upload: str | Path | None, size: int) -> str | None:
    """The caption the object detector reads from an uploaded world-like video
    (`metrics.describe_clip`: colours, shapes, the motion of its last frames), or None when
    there is no readable upload or it does not look like the world. Without a caption every
    upload would be continued by the unconditional model, which keeps objects' colours and
    shapes far less well (docs/recipe.md)."""
    try:
        frames = upload_source(upload, size).frames
    except InputError:
        return None  # the task itself reports the problem when it runs
    return describe_clip(frames) if looks_like_world(frames) else None
