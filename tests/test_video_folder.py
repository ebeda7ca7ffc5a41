"""Training on a folder of the user's own videos: discovery, skipping, captions, determinism."""

import json
import warnings

import numpy as np
import pytest
import torch

from vdm_core.batch import Batch
from vdm_core.video_folder import VideoFolderStream, VideoFolderWarning
from vdm_core.video_io import write_gif, write_mp4


def clip(num_frames: int, colour: tuple[int, int, int], size: int = 32) -> np.ndarray:
    """A coloured 8x8 square moving right one pixel per frame, (T, H, W, 3) uint8."""
    frames = np.full((num_frames, size, size, 3), 16, dtype=np.uint8)
    for t in range(num_frames):
        x = t % (size - 8)
        frames[t, 12:20, x : x + 8] = colour
    return frames


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 mp4 (one nested), 1 gif, 1 corrupt file, 1 too-short clip, csv and .txt captions."""
    root = tmp_path_factory.mktemp("videos")
    write_mp4(clip(24, (230, 40, 40)), root / "red.mp4", min_size=32)
    write_mp4(clip(20, (40, 210, 60)), root / "green.mp4", min_size=32)
    write_mp4(clip(30, (40, 70, 255)), root / "nested" / "blue.mp4", min_size=32)
    write_gif(clip(18, (240, 220, 40)), root / "yellow.gif", min_size=32)
    (root / "broken.mp4").write_bytes(b"definitely not an mp4 file" * 20)
    write_mp4(clip(6, (255, 255, 255)), root / "short.mp4", min_size=32)
    (root / "notes.md").write_text("not a video, ignored")
    (root / "captions.csv").write_text(
        "file,caption\nred.mp4,a red square moves right\nnested/blue.mp4, a blue square \n"
        "gone.mp4,a clip that does not exist\n"
    )
    (root / "yellow.txt").write_text("a yellow square\n")
    return root


def make_stream_and_warnings(root, **kwargs) -> tuple[VideoFolderStream, list[str]]:
    """A stream, and the messages of the VideoFolderWarnings raised while building it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = VideoFolderStream(root, **kwargs)
    return stream, [str(w.message) for w in caught if w.category is VideoFolderWarning]


def make_stream(root, **kwargs) -> VideoFolderStream:
    """A stream, its (expected) warnings silenced."""
    return make_stream_and_warnings(root, **kwargs)[0]


def test_skips_bad_files_with_warnings(folder):
    stream, messages = make_stream_and_warnings(folder, batch_size=4, num_frames=8)
    names = [c.name for c in stream.clips]
    assert names == ["green.mp4", "nested/blue.mp4", "red.mp4", "yellow.gif"]
    text = "\n".join(messages)
    assert "skipping broken.mp4: could not decode broken.mp4" in text
    assert "skipping short.mp4: it has 6 frames, fewer than the 8" in text
    assert "gone.mp4" in text
    assert len(messages) == 3


def test_captions(folder):
    stream = make_stream(folder, batch_size=2, num_frames=8)
    captions = {c.name: c.caption for c in stream.clips}
    assert captions == {
        "red.mp4": "a red square moves right",
        "nested/blue.mp4": "a blue square",
        "yellow.gif": "a yellow square",
        "green.mp4": "",
    }


def test_batch_shapes_and_ranges(folder):
    stream = make_stream(folder, batch_size=6, num_frames=8, size=16, frame_skip=2)
    batch = next(stream)
    assert isinstance(batch, Batch)
    assert batch.video.shape == (6, 3, 8, 16, 16) and batch.video.dtype == torch.float32
    assert batch.video.min() >= -1 and batch.video.max() <= 1 and batch.video.std() > 0.1
    assert batch.num_video_frames == 8 and len(batch.captions) == 6
    # windows of 16 source frames: the short green clip (20 frames) still fits
    assert make_stream(folder, batch_size=1, num_frames=10, frame_skip=2).clips[0].name == (
        "green.mp4"
    )


def test_window_content_matches_clip(folder):
    stream = make_stream(folder, batch_size=8, num_frames=4, frame_skip=3)
    batch = stream.batch_at(5)
    for video, caption in zip(batch.video, batch.captions, strict=True):
        frames = ((video.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()  # (T, H, W, 3)
        source = next(c for c in stream.clips if c.caption == caption).frames
        starts = [
            s
            for s in range(source.shape[0] - 12 + 1)
            if np.array_equal(source[s : s + 12 : 3], frames)
        ]
        assert starts, f"window of '{caption}' is not a frame-skip-3 slice of its clip"


def test_determinism_and_resume(folder):
    a = make_stream(folder, batch_size=3, num_frames=8, seed=7)
    b = make_stream(folder, batch_size=3, num_frames=8, seed=7)
    first = [next(a) for _ in range(4)]
    assert all(
        torch.equal(x.video, y.video) and x.captions == y.captions
        for x, y in zip(first, [next(b) for _ in range(4)], strict=True)
    )
    state = json.loads(json.dumps(a.state_dict()))
    assert state["batch_index"] == 4
    expected = next(a)
    resumed = make_stream(folder, batch_size=3, num_frames=8, seed=7)
    resumed.load_state_dict(state)
    got = next(resumed)
    assert torch.equal(got.video, expected.video) and got.captions == expected.captions
    other = make_stream(folder, batch_size=3, num_frames=8, seed=8)
    assert not torch.equal(next(other).video, first[0].video)
    with pytest.raises(ValueError, match="seed 8 != saved seed 7"):
        other.load_state_dict(state)


def test_resume_on_changed_folder_warns(folder):
    stream = make_stream(folder, batch_size=2, num_frames=8)
    state = stream.state_dict() | {"fingerprint": "0" * 16}
    with pytest.warns(VideoFolderWarning, match="changed since this state was saved"):
        stream.load_state_dict(state)


def test_unusable_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="video folder not found"):
        VideoFolderStream(tmp_path / "nope", batch_size=2)
    with pytest.raises(ValueError, match="no video files"):
        VideoFolderStream(tmp_path, batch_size=2)
    (tmp_path / "bad.mp4").write_bytes(b"garbage")
    with pytest.warns(VideoFolderWarning, match="bad.mp4"):
        with pytest.raises(ValueError, match="no usable video clip.*all 1 video files"):
            VideoFolderStream(tmp_path, batch_size=2)
    with pytest.raises(ValueError, match="exceeds max_frames_per_clip = 256"):
        VideoFolderStream(tmp_path, batch_size=2, num_frames=100, frame_skip=3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        VideoFolderStream(tmp_path, batch_size=0)
    (tmp_path / "captions.csv").write_text("name,text\nbad.mp4,x\n")
    write_mp4(clip(20, (200, 0, 0)), tmp_path / "ok.mp4", min_size=32)
    with pytest.raises(ValueError, match="captions.csv must have the header columns"):
        VideoFolderStream(tmp_path, batch_size=2)
