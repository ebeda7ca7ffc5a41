"""vdm-sample (vdm_core/sample_cli.py): the shipped model, real files written and read back."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vdm_core.data import world_clip
from vdm_core.sample_cli import main
from vdm_core.video_io import read_video, write_mp4

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a red circle moving right"


def downsample(frames: np.ndarray, factor: int) -> np.ndarray:
    """Area-downsample uint8 frames (T, H, W, 3) by an integer factor (block means)."""
    t, h, w, c = frames.shape
    blocks = frames.reshape(t, h // factor, factor, w // factor, factor, c).astype(np.float64)
    return blocks.mean(axis=(2, 4)).round().astype(np.uint8)  # (T, H / f, W / f, 3)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Real input videos: an 8-frame world clip (32x32, stored upscaled as mp4s do), its 2x
    area-downsampled 16x16 version stored at 16x16, and a text file named like a video."""
    folder = tmp_path_factory.mktemp("clips")
    clip = world_clip(3, 8)
    write_mp4(clip.frames, folder / "clip.mp4")
    write_mp4(downsample(clip.frames, 2), folder / "low16.mp4", min_size=16)
    (folder / "bad.mp4").write_text("not a video")
    return {"clip": folder / "clip.mp4", "low16": folder / "low16.mp4",
            "bad": folder / "bad.mp4", "frames": clip.frames, "caption": clip.caption}


def test_entry_point_writes_a_16_frame_mp4(tmp_path):
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "vdm_core.sample_cli", PROMPT, "--frames", "16", "--steps", "2",
         "--seed", "0", "-o", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(f"wrote {out}: 16 frames, seed 0, ")
    assert "block 1/1" in result.stderr and "2/2" in result.stderr  # the tqdm bar
    assert read_video(out, size=32).shape == (16, 32, 32, 3)


def test_gif_output_and_same_seed_same_video(tmp_path, capsys):
    paths = [tmp_path / f"{name}.gif" for name in ("a", "b", "c")]
    for path, seed in zip(paths, ("5", "5", "6"), strict=True):
        assert main([PROMPT, "--frames", "8", "--steps", "2", "--seed", seed, "-o",
                     str(path)]) == 0
    a, b, c = (read_video(path, size=32) for path in paths)
    assert a.shape == (8, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert "seed 6" in capsys.readouterr().out


def test_extend_keeps_the_clip_and_reaches_the_frame_count(clips, tmp_path, capsys):
    out = tmp_path / "long.mp4"
    code = main([clips["caption"], "--extend", str(clips["clip"]), "--frames", "20", "--steps",
                 "2", "--seed", "0", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    frames = read_video(out, size=32)
    assert frames.shape == (20, 32, 32, 3)
    given = clips["frames"].astype(float)
    assert np.abs(frames[:8].astype(float) - given).mean() < 8  # H.264 twice: lossy


def test_extend_by_the_keyframe_cascade(clips, tmp_path, capsys):
    out = tmp_path / "cascade.mp4"
    code = main([clips["caption"], "--extend", str(clips["clip"]), "--frames", "24", "--method",
                 "cascade", "--steps", "1", "--seed", "0", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert read_video(out, size=32).shape == (24, 32, 32, 3)


def test_super_resolve_a_16x16_clip_matches_it_when_downsampled(clips, tmp_path, capsys):
    out = tmp_path / "sharp.mp4"
    code = main(["--super-resolve", str(clips["low16"]), "--strategy", "lowpass", "--steps", "2",
                 "--seed", "0", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    frames = read_video(out, size=32)
    assert frames.shape == (8, 32, 32, 3)
    lowres = read_video(clips["low16"], size=16).astype(float)
    assert np.abs(downsample(frames, 2).astype(float) - lowres).mean() < 8


@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "0"], "argument --frames: expected an integer >= 1, got '0'"),
    (["--frames", "500"], "num_frames must be between 1 and"),
    (["-w", "-1"], "argument -w/--guidance-weight: expected a finite number >= 0, got '-1'"),
    (["-w", "nan"], "expected a finite number >= 0, got 'nan'"),
    (["--fps", "0"], "argument --fps: expected a number in (0, 240], got '0'"),
    (["-o", "{tmp}/out.avi"], "expected a file ending in .mp4 or .gif, got"),
    (["--extend", "{tmp}/missing.mp4", "--frames", "20"], "video file not found:"),
    (["--extend", "{bad}", "--frames", "20"], "could not decode bad.mp4"),
    (["--extend", "{clip}"], "--extend needs --frames N"),
    (["--extend", "{clip}", "--frames", "4"], "clip.mp4 has more than 4 frames"),
    (["--extend", "{clip}", "--super-resolve", "{low16}"], "not allowed with argument"),
    (["--strategy", "replacement"], "--strategy applies only with --extend or --super-resolve"),
    (["--super-resolve", "{low16}", "--k", "2"], "--k applies only with --extend"),
    (["--super-resolve", "{clip}"], "lowres frames must be square and divide"),
    (["--extend", "{clip}", "--frames", "20", "--strategy", "lowpass"], "unknown strategy"),
    (["--model", "{tmp}"], "config.json not found"),
    (["--method", "keyframes"], "argument --method: invalid choice: 'keyframes'"),
    (["--super-resolve", "{low16}", "--method", "cascade"], "--method applies to"),
    (["--device", "nonsense"], "unknown device 'nonsense'"),
])
def test_bad_input_exits_2_with_a_specific_message(clips, tmp_path, capsys, args, message):
    paths = {"tmp": tmp_path, "bad": clips["bad"], "clip": clips["clip"], "low16": clips["low16"]}
    argv = [PROMPT, "--steps", "1", "-o", str(tmp_path / "out.mp4")]
    assert main(argv + [arg.format(**paths) for arg in args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.mp4").exists()
