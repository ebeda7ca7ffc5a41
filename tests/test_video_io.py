"""Video files: H.264 mp4 and GIF writing, decoding with limits and errors, previews."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from vdm_core.video_io import (
    VideoReadError,
    frame_strip,
    frames_to_tensor,
    read_video,
    tensor_to_frames,
    upscale_nearest,
    write_gif,
    write_mp4,
)


def moving_square(num_frames: int = 16, size: int = 32) -> np.ndarray:
    """A red 8x8 square moving one pixel right per frame on a dark background, (T, H, W, 3)."""
    frames = np.full((num_frames, size, size, 3), 20, dtype=np.uint8)
    for t in range(num_frames):
        frames[t, 12:20, t : t + 8] = (230, 40, 40)
    return frames


def ffmpeg_info(path) -> str:
    """ffmpeg's description of a media file (its stderr for `ffmpeg -i path`)."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    result = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return result.stderr


def test_tensor_round_trip():
    frames = moving_square()
    video = frames_to_tensor(frames)
    assert video.shape == (3, 16, 32, 32) and video.min() >= -1 and video.max() <= 1
    assert np.array_equal(tensor_to_frames(video), frames)


def test_upscale_nearest():
    frames = moving_square(2, 32)
    big = upscale_nearest(frames, 256)
    assert big.shape == (2, 256, 256, 3)
    assert np.array_equal(big[:, ::8, ::8], frames)
    assert upscale_nearest(frames, 100).shape == (2, 128, 128, 3)  # factor ceil(100 / 32) = 4
    assert upscale_nearest(frames, 16) is frames
    wide = np.zeros((1, 30, 50, 3), dtype=np.uint8)
    assert upscale_nearest(wide, 64).shape == (1, 90, 150, 3)
    with pytest.raises(TypeError, match="uint8"):
        upscale_nearest(frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        upscale_nearest(frames[0])


def test_mp4_is_h264_yuv420p_and_round_trips(tmp_path):
    frames = moving_square()
    path = write_mp4(frames, tmp_path / "sub" / "square.mp4", fps=8)
    assert path.is_file() and path.stat().st_size > 0
    info = ffmpeg_info(path)
    assert "h264" in info and "yuv420p" in info and "256x256" in info and "8 fps" in info
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: the index comes first
    back = read_video(path, size=32)
    assert back.shape == frames.shape and back.dtype == np.uint8
    error = np.abs(back.astype(int) - frames.astype(int))
    assert error.mean() < 3 and np.percentile(error, 99) < 40
    # the square is where it should be in every frame
    red = back[..., 0].astype(int) - back[..., 2].astype(int)  # (T, H, W)
    centres = (red[:, 12:20] > 100).mean(axis=1).argmax(axis=1)
    assert np.abs(centres - (np.arange(16) + 3.5)).max() <= 4
    assert not list(tmp_path.glob("sub/.*"))  # no temporary file left behind


def test_mp4_odd_size_is_padded_even(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 15, 21, 3), dtype=np.uint8)
    path = write_mp4(frames, tmp_path / "odd.mp4", min_size=15)
    assert "22x16" in ffmpeg_info(path)  # ffmpeg prints W x H


def test_gif_round_trip(tmp_path):
    frames = moving_square()
    path = write_gif(frames, tmp_path / "square.gif", fps=10, min_size=64)
    back = read_video(path, size=32)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames.astype(int)).max() <= 8


def test_read_options(tmp_path):
    path = write_mp4(moving_square(16), tmp_path / "square.mp4", fps=8)
    assert read_video(path, size=16).shape == (16, 16, 16, 3)
    assert read_video(path, frame_skip=2).shape == (8, 32, 32, 3)
    assert read_video(path, frame_skip=3).shape == (6, 32, 32, 3)
    assert read_video(path, max_frames=5, truncate=True).shape == (5, 32, 32, 3)
    assert read_video(path, max_seconds=1.0, truncate=True).shape == (8, 32, 32, 3)
    with pytest.raises(VideoReadError, match=r"more than the 5 frame limit"):
        read_video(path, max_frames=5)
    with pytest.raises(VideoReadError, match=r"longer than the 1 s limit"):
        read_video(path, max_seconds=1.0)


def test_read_crops_and_converts(tmp_path):
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    gray = tmp_path / "gray.avi"
    subprocess.run(
        [exe, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "1"]
        + ["-vf", "format=gray", "-c:v", "ffv1", str(gray)],
        check=True,
    )
    frames = read_video(gray, size=24)
    assert frames.shape == (10, 24, 24, 3)
    assert np.array_equal(frames[..., 0], frames[..., 1])  # gray -> equal RGB channels
    webm = tmp_path / "clip.webm"
    subprocess.run(
        [exe, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1"]
        + ["-c:v", "libvpx", str(webm)],
        check=True,
    )
    assert read_video(webm).shape == (10, 32, 32, 3)


def test_read_gray_and_transparent_gif(tmp_path):
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # (48, 64) gray ramp
    gray = [Image.fromarray(np.roll(ramp, 4 * t, axis=1), mode="L") for t in range(3)]
    gray[0].save(tmp_path / "gray.gif", save_all=True, append_images=gray[1:], duration=100)
    frames = read_video(tmp_path / "gray.gif", size=16)
    assert frames.shape == (3, 16, 16, 3)
    assert np.array_equal(frames[..., 0], frames[..., 2])
    rgba = np.zeros((2, 8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (255, 255, 255, 255)  # opaque white top half, transparent bottom half
    images = [Image.fromarray(f, mode="RGBA") for f in rgba]
    images[0].save(tmp_path / "alpha.gif", save_all=True, append_images=images[1:])
    frames = read_video(tmp_path / "alpha.gif", size=8)
    assert np.all(frames[:, :4] == 255) and np.all(frames[:, 4:] == 0)


def test_read_errors(tmp_path):
    with pytest.raises(VideoReadError, match="not found.*missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(VideoReadError, match=r"notes.txt is not a supported video file.*\.mp4"):
        read_video(text)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoReadError, match="could not decode corrupt.mp4: not a video or a"):
        read_video(corrupt)
    corrupt_gif = tmp_path / "corrupt.gif"
    corrupt_gif.write_bytes(b"GIF89a garbage")
    with pytest.raises(VideoReadError, match="could not decode corrupt.gif"):
        read_video(corrupt_gif)
    good = write_mp4(moving_square(), tmp_path / "good.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoReadError, match="truncated.mp4"):
        read_video(truncated)
    with pytest.raises(VideoReadError, match=r"good.mp4 is .* over the 100 bytes limit"):
        read_video(good, max_bytes=100)
    with pytest.raises(VideoReadError, match=r"over the 50.0 MB limit"):
        big = tmp_path / "big.mp4"
        with big.open("wb") as handle:
            handle.truncate(50 * 1024 * 1024 + 1)  # sparse file: no disk use
        read_video(big)
    audio = tmp_path / "audio.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc"]
        + ["-t", "0.5", "-c:a", "aac", str(audio)],
        check=True,
    )
    with pytest.raises(VideoReadError, match="audio.mp4 contains no frames"):
        read_video(audio)
    with pytest.raises(ValueError, match="frame_skip must be a positive int"):
        read_video(good, frame_skip=0)
    assert issubclass(VideoReadError, ValueError)


def test_write_errors(tmp_path):
    frames = moving_square(2)
    with pytest.raises(ValueError, match=r"fps must be a number in \(0, 240\]"):
        write_mp4(frames, tmp_path / "a.mp4", fps=0)
    with pytest.raises(TypeError, match="uint8"):
        write_gif(torch.zeros(2, 8, 8, 3), tmp_path / "a.gif")


def test_frame_strip():
    frames = moving_square(16)
    strip = frame_strip(frames, max_frames=16, scale=4, gap=2)
    assert strip.dtype == np.uint8
    assert strip.shape == (2 * 128 + 3 * 2, 8 * 128 + 9 * 2, 3)  # 2 rows of 8
    assert np.array_equal(strip[2:130, 2:130], upscale_nearest(frames[:1], 128)[0])
    assert np.all(strip[:2] == 255)
    few = frame_strip(frames, max_frames=4, scale=1, gap=0)
    assert few.shape == (32, 128, 3)
    assert np.array_equal(few[:, 96:], frames[15])  # evenly spaced, last frame included
    single = frame_strip(frames[:1], scale=2, gap=1)
    assert single.shape == (66, 66, 3)
    with pytest.raises(ValueError, match="gap must be an int >= 0"):
        frame_strip(frames, gap=-1)
