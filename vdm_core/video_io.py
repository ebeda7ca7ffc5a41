"""Video tensors <-> uint8 frames, and reading / writing video files.

Writing: H.264 mp4 (libx264, yuv420p, even dimensions, faststart) through imageio's ffmpeg plugin,
which browsers play inline, and animated GIF through Pillow. Small videos (32x32) are first
upscaled by an integer nearest-neighbour factor so that previews stay crisp.

Reading: mp4 / m4v / webm / avi / mov / mkv through imageio's ffmpeg plugin and GIF through
Pillow, frame by frame, each frame centre-cropped to a square and resized with antialiasing, so
memory stays small even for long high-resolution files. Every problem is a `VideoReadError`
(a ValueError) whose message names the file and, where one applies, the limit.
"""

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image, ImageSequence

MAX_BYTES = 50 * 1024 * 1024  # default file-size limit of read_video (50 MB)
MAX_READ_FRAMES = 256  # frames read_video keeps at most, by default (uploads, folders, clips)
FFMPEG_EXTENSIONS = (".mp4", ".m4v", ".webm", ".avi", ".mov", ".mkv")
PILLOW_EXTENSIONS = (".gif",)
VIDEO_EXTENSIONS = FFMPEG_EXTENSIONS + PILLOW_EXTENSIONS


class VideoReadError(ValueError):
    """A video file could not be used: missing, too large, not a video, corrupt, or too long."""


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> float video (3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()  # (T, H, W, 3)
    return (x / 127.5 - 1.0).permute(3, 0, 1, 2).contiguous()


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float video (3, T, H, W) in [-1, 1] -> uint8 frames (T, H, W, 3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def _check_frames(frames: object) -> np.ndarray:
    """Validate uint8 RGB frames (T, H, W, 3) with T, H, W >= 1 and return them."""
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy uint8 array (T, H, W, 3), got {type(frames)}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"frames must have at least one frame, row and column, got {frames.shape}")
    return frames


def check_positive_int(name: str, value: object) -> int:
    """Return value if it is an int >= 1, else raise a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def upscale_nearest(frames: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by the smallest integer factor giving a short side >= min_size.

    (T, H, W, 3) uint8 -> (T, k H, k W, 3) uint8; k = 1 (a copy-free return) when already large.
    """
    frames = _check_frames(frames)
    min_size = check_positive_int("min_size", min_size)
    factor = max(1, math.ceil(min_size / min(frames.shape[1:3])))
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)  # (T, kH, kW, 3)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """Replicate the last row / column where needed so H and W are even (yuv420p needs it)."""
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _check_fps(fps: float) -> float:
    """Return fps as a float if it is a finite number in (0, 240], else raise a ValueError."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 240:
        raise ValueError(f"fps must be a number in (0, 240], got {fps!r}")
    return float(fps)


def _temp_path(path: Path, suffix: str) -> Path:
    """A temporary sibling of path, unique per process and thread, ending with suffix."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp{suffix}")


def write_mp4(
    frames: np.ndarray, path: str | Path, fps: float = 8, min_size: int = 256, quality: float = 8
) -> Path:
    """Write uint8 frames (T, H, W, 3) as a browser-playable H.264 mp4 and return its path.

    Frames are upscaled (`upscale_nearest`) to a short side >= min_size and padded to even sizes;
    the stream is libx264 / yuv420p with the moov atom first (+faststart). quality is imageio's
    1..10 scale (8 = crf 10). The file is written to a temporary name and then moved into place,
    so a reader never sees half a file. Parent folders are created.
    """
    frames = _pad_even(upscale_nearest(frames, min_size))  # (T, H', W', 3), H', W' even
    fps = _check_fps(fps)
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 1 <= quality <= 10:
        raise ValueError(f"quality must be a number in [1, 10], got {quality!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path, ".mp4")
    try:
        with imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=float(quality),
            macro_block_size=2,
            output_params=["-movflags", "+faststart"],
            ffmpeg_log_level="error",
        ) as writer:
            for frame in frames:
                writer.append_data(frame)  # (H', W', 3)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_gif(frames: np.ndarray, path: str | Path, fps: float = 8, min_size: int = 256) -> Path:
    """Write uint8 frames (T, H, W, 3) as a looping animated GIF and return its path.

    Frames are upscaled (`upscale_nearest`) to a short side >= min_size; each frame gets its own
    adaptive 256-colour palette. GIF stores delays in 1/100 s, so fps is rounded to that grid, and
    Pillow merges consecutive identical frames into one longer frame. Written atomically.
    """
    frames = upscale_nearest(frames, min_size)  # (T, H', W', 3)
    fps = _check_fps(fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    tmp = _temp_path(path, ".gif")
    try:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000.0 / fps),
            loop=0,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def frame_strip(
    frames: np.ndarray,
    max_frames: int = 16,
    scale: int = 4,
    gap: int = 2,
    columns: int = 8,
    background: int = 255,
) -> np.ndarray:
    """Tile frames side by side into one preview image (H, W, 3) uint8.

    At most max_frames frames are shown, evenly spaced in time (first and last included). Each is
    upscaled by the integer `scale` (nearest neighbour) and they are laid out left to right in rows
    of at most `columns`, separated and framed by `gap` pixels of the grey level `background`.
    """
    frames = _check_frames(frames)
    max_frames = check_positive_int("max_frames", max_frames)
    scale = check_positive_int("scale", scale)
    columns = check_positive_int("columns", columns)
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
        raise ValueError(f"gap must be an int >= 0, got {gap!r}")
    if not 0 <= background <= 255:
        raise ValueError(f"background must be a grey level in [0, 255], got {background!r}")
    count = min(max_frames, frames.shape[0])
    picks = np.round(np.linspace(0, frames.shape[0] - 1, count)).astype(int)
    tiles = frames[picks].repeat(scale, axis=1).repeat(scale, axis=2)  # (n, sH, sW, 3)
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    tile_h, tile_w = tiles.shape[1:3]
    out = np.full(
        (rows * tile_h + (rows + 1) * gap, cols * tile_w + (cols + 1) * gap, 3),
        background,
        dtype=np.uint8,
    )  # (H, W, 3)
    for i, tile in enumerate(tiles):
        top = gap + (i // cols) * (tile_h + gap)
        left = gap + (i % cols) * (tile_w + gap)
        out[top : top + tile_h, left : left + tile_w] = tile
    return out


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """Gray (H, W) / (H, W, 1), RGB or RGBA (alpha composited over black) -> uint8 (H, W, 3)."""
    if frame.dtype != np.uint8:
        raise ValueError(f"decoded frames must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise ValueError(f"decoded frame has an unsupported shape {frame.shape}")
    if frame.shape[-1] == 1:
        return np.repeat(frame, 3, axis=-1)
    if frame.shape[-1] == 4:
        alpha = frame[:, :, 3:].astype(np.uint16)  # (H, W, 1)
        return ((frame[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return frame


def _square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an RGB frame (H, W, 3) to a square and resize it to (size, size, 3).

    Downscaling uses a box filter (the exact area average), upscaling bicubic.
    """
    height, width = frame.shape[:2]
    side = min(height, width)
    top = (height - side) // 2
    left = (width - side) // 2
    crop = frame[top : top + side, left : left + side]  # (side, side, 3)
    if side == size:
        return np.ascontiguousarray(crop)
    resample = Image.Resampling.BOX if side > size else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(crop).resize((size, size), resample))  # (size, size, 3)


def _ffmpeg_frames(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    """Decode a video with imageio's ffmpeg plugin: (RGB frame (H, W, 3), start time in s)."""
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        fps = float(reader.get_meta_data().get("fps") or 0.0)
        for index, frame in enumerate(reader):
            yield frame, index / fps if fps > 0 else 0.0
    finally:
        reader.close()


def _pillow_frames(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    """Decode an animated GIF with Pillow: (RGB frame (H, W, 3), start time in s)."""
    with Image.open(path) as image:
        start_ms = 0.0
        for frame in ImageSequence.Iterator(image):
            yield _to_rgb(np.asarray(frame.convert("RGBA"))), start_ms / 1000.0
            start_ms += float(frame.info.get("duration") or 0.0)


def _size_text(num_bytes: int) -> str:
    """A readable byte count: '50.0 MB' (2**20 bytes), '3.5 KB' (2**10 bytes) or '100 bytes'."""
    if num_bytes >= 2**20:
        return f"{num_bytes / 2**20:.1f} MB"
    if num_bytes >= 2**10:
        return f"{num_bytes / 2**10:.1f} KB"
    return f"{num_bytes} bytes"


def _decode_error(path: Path, exc: Exception) -> VideoReadError:
    """A short VideoReadError for a decoder failure; ffmpeg's long log is cut to its last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines)
    if "does not contain any stream" in text or "does not contain a video stream" in text:
        return VideoReadError(f"video {path.name} contains no frames (it has no video stream)")
    reason = lines[-1][:200] if lines else "no details"
    return VideoReadError(
        f"could not decode {path.name}: not a video or a corrupt file "
        f"({type(exc).__name__}: {reason})"
    )


def read_video(
    path: str | Path,
    size: int = 32,
    max_frames: int = MAX_READ_FRAMES,
    max_bytes: int = MAX_BYTES,
    max_seconds: float | None = None,
    frame_skip: int = 1,
    truncate: bool = False,
) -> np.ndarray:
    """Decode a video file to uint8 frames (T, size, size, 3).

    Every frame_skip-th frame is kept (frame 0 first); each is converted to RGB, centre-cropped
    to a square and resized to size x size. A file with more than max_frames kept frames, or
    (if max_seconds is given) longer than max_seconds, raises a VideoReadError, or with
    truncate=True is cut to its start. Decoding stops as soon as a limit is reached.

    Raises VideoReadError (a ValueError) naming the file for: a missing file, a file over
    max_bytes, an unsupported extension, a file that is not a video or is corrupt, a video with
    zero frames, and a video over a frame / duration limit.
    """
    path = Path(path)
    size = check_positive_int("size", size)
    max_frames = check_positive_int("max_frames", max_frames)
    max_bytes = check_positive_int("max_bytes", max_bytes)
    frame_skip = check_positive_int("frame_skip", frame_skip)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
    if not path.exists():
        raise VideoReadError(f"video file not found: {path}")
    if not path.is_file():
        raise VideoReadError(f"not a file: {path}")
    num_bytes = path.stat().st_size
    if num_bytes > max_bytes:
        raise VideoReadError(
            f"video file {path.name} is {_size_text(num_bytes)}, over the "
            f"{_size_text(max_bytes)} limit (max_bytes={max_bytes})"
        )
    suffix = path.suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise VideoReadError(
            f"{path.name} is not a supported video file: expected one of "
            f"{', '.join(VIDEO_EXTENSIONS)}, got '{path.suffix or '(no extension)'}'"
        )
    decode = _pillow_frames if suffix in PILLOW_EXTENSIONS else _ffmpeg_frames
    kept: list[np.ndarray] = []
    try:
        with contextlib.closing(decode(path)) as stream:
            for index, (frame, start) in enumerate(stream):
                if max_seconds is not None and start >= max_seconds:
                    if truncate:
                        break
                    raise VideoReadError(
                        f"video {path.name} is longer than the {max_seconds:g} s limit "
                        f"(max_seconds={max_seconds:g}); pass truncate=True to keep its start"
                    )
                if index % frame_skip:
                    continue
                if len(kept) == max_frames:
                    if truncate:
                        break
                    raise VideoReadError(
                        f"video {path.name} has more than the {max_frames} frame limit "
                        f"(max_frames={max_frames}, frame_skip={frame_skip}); pass truncate=True "
                        "to keep its first frames"
                    )
                kept.append(_square_resize(_to_rgb(np.asarray(frame)), size))  # (size, size, 3)
    except VideoReadError:
        raise
    except Exception as exc:  # decoders raise many types (OSError, RuntimeError, ...) on bad data
        raise _decode_error(path, exc) from exc
    if not kept:
        raise VideoReadError(f"video {path.name} contains no frames")
    return np.stack(kept)  # (T, size, size, 3)
