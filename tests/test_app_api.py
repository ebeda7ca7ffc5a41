"""The Gradio app end to end: every endpoint through `gradio_client`, bad inputs, load, cancel.

The app runs in-process on a free port with the real pipeline: a copy of the shipped model
(assets/model), or a small random model when none is shipped yet, served via VDM_MODEL_DIR.
Sampling uses 1-2 steps so the module stays fast on 2 CPU cores. The pure input rules of
`demo.validation` and the cancellable worker are unit-tested at the top.
"""

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demo import guidance_handlers, handlers, images, info, plots, sources, tasks, validation
from demo.runtime import get_pipeline
from demo.worker import BackgroundJob, Cancelled
from vdm_core.conditional import shift_progress
from vdm_core.data import world_clip
from vdm_core.defaults import TASK_DEFAULTS
from vdm_core.detect import caption_objects
from vdm_core.outputs import PipelineStep
from vdm_core.pipeline import DEFAULT_MODEL
from vdm_core.unet3d import CONFIG_NAME, WEIGHTS_NAME, UNetConfig
from vdm_core.video_io import MAX_BYTES, MAX_READ_FRAMES, read_video, write_mp4

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8)
FAST = dict(guidance_weight=2.0, sampler="DDIM", steps=1)
WORLD_ARGS = ("World clip", 3, None)


# --- pure rules ------------------------------------------------------------------------------

def test_clamp_number_clamps_with_a_warning_and_rejects_nan():
    notes = validation.Notes()
    assert validation.clamp_number("Steps", 500, 1, 256, notes, integer=True) == 256
    assert validation.clamp_number("w", 1.5, 0, 8, notes) == 1.5
    assert notes.warnings == ["Steps must be between 1 and 256; 500 was changed to 256"]
    for bad in (float("nan"), float("inf"), "abc", None, True):
        with pytest.raises(validation.InputError, match="Steps"):
            validation.clamp_number("Steps", bad, 1, 256, notes)


def test_check_prompt_empty_overlong_and_non_text():
    notes = validation.Notes()
    assert validation.check_prompt("  ", lambda p: False, notes) == ""
    assert "unconditionally" in notes.infos[0]
    notes = validation.Notes()
    assert validation.check_prompt(" a  red\ncircle ", lambda p: True, notes) == "a red circle"
    assert "only its beginning is used" in notes.warnings[0]
    notes = validation.Notes()
    long = validation.check_prompt("x" * 10_000, lambda p: False, notes)
    assert len(long) == validation.MAX_PROMPT_CHARS and "characters" in notes.warnings[0]
    with pytest.raises(validation.InputError, match="text"):
        validation.check_prompt(42, lambda p: False, notes)


def test_check_sampler_seed_and_conditioning_frames():
    assert validation.check_sampler("DDIM") == validation.check_sampler("ddim") == "ddim"
    assert validation.check_sampler("Predictor-corrector") == "pc"
    with pytest.raises(validation.InputError, match="unknown sampler 'euler'"):
        validation.check_sampler("euler")
    notes = validation.Notes()
    assert validation.resolve_seed(-3, False, notes) == 0 and notes.warnings
    assert 0 <= validation.resolve_seed(None, True, notes) <= validation.MAX_SEED
    assert validation.check_conditioning_frames(40, 64, notes, 16) == 15
    with pytest.raises(validation.InputError, match="at least 2 frames"):
        validation.check_conditioning_frames(1, 1, notes, 16)
    assert handlers.check_factor("4x (8x8 -> 32x32)") == handlers.check_factor(4) == 4
    with pytest.raises(validation.InputError, match="factor"):
        handlers.check_factor(3)


def test_sources_need_their_input():
    with pytest.raises(validation.InputError, match="no generated clip yet"):
        sources.load_source(sources.LAST, 0, None, None, 16, 32)
    with pytest.raises(validation.InputError, match="No video uploaded"):
        sources.load_source(sources.UPLOAD, 0, None, None, 16, 32)
    with pytest.raises(validation.InputError, match="between 0 and 255"):
        sources.load_source(sources.WORLD, 999, None, None, 16, 32)
    clip = sources.load_source(sources.WORLD, 2, None, None, 20, 32)
    assert clip.frames.shape == (20, 32, 32, 3) and clip.clip is not None and clip.caption


def test_how_it_works_texts(tmp_path, randomized_unet):
    model = randomized_unet(TINY)
    model.save_pretrained(tmp_path)
    table = info.architecture_markdown(tmp_path)
    count = sum(p.numel() for p in model.parameters())
    assert f"{count / 1e6:.2f} M" in table and "16, 32" in table
    assert "not available yet" in info.model_card_markdown(tmp_path)
    (tmp_path / info.CARD_NAME).write_text("# Card")
    assert info.model_card_markdown(tmp_path) == "# Card"
    assert "No model found" in info.architecture_markdown(tmp_path / "missing")


def _steps(callback, count: int, delay: float = 0.0) -> str:
    """A fake sampling job: report `count` steps through callback, then return "done"."""
    for i in range(count):
        time.sleep(delay)
        callback(PipelineStep(i, count, 0, 1, torch.zeros(1, 3, 2, 4, 4)))
    return "done"


def test_background_job_streams_steps_and_result():
    job = BackgroundJob(lambda cb: _steps(cb, 3))
    steps = [s.step for s in job.events() if s is not None]
    assert steps == [0, 1, 2] and job.result == "done"


def test_background_job_stops_when_closed_and_reraises_errors():
    stopped = threading.Event()

    def long_job(callback):
        try:
            return _steps(callback, 10_000, delay=0.001)
        except Cancelled:
            stopped.set()
            raise

    job = BackgroundJob(long_job)
    events = job.events()
    next(events)
    events.close()
    assert job.join(timeout=5) and stopped.is_set()

    def failing(callback):
        raise ValueError("bad frame count")

    with pytest.raises(ValueError, match="bad frame count"):
        list(BackgroundJob(failing).events())


# --- the running app -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, randomized_unet) -> Path:
    """A copy of the shipped model (stable while a training run rewrites it), else a tiny
    random one."""
    target = tmp_path_factory.mktemp("model")
    if (DEFAULT_MODEL / WEIGHTS_NAME).is_file() and (DEFAULT_MODEL / CONFIG_NAME).is_file():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copy2(DEFAULT_MODEL / name, target / name)
    else:
        randomized_unet(TINY).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def app_url(model_dir):
    """The app (app.py's launch) running in this process on a free port; closed afterwards."""
    with running_app(model_dir) as url:
        get_pipeline()
        yield url


@pytest.fixture()
def client(app_url) -> Client:
    """A fresh client (its own session, so no last generated clip)."""
    return Client(app_url, verbose=False)


def generate(client, prompt="a red circle moving right", seed=7, randomize=False, frames=16,
             api_name="/generate", **overrides):
    """Call a Generate endpoint with fast settings (1 DDIM step) unless overridden."""
    args = {**FAST, **overrides}
    return client.predict(prompt, args["guidance_weight"], args["sampler"], args["steps"], seed,
                          randomize, frames, api_name=api_name)


def test_api_lists_every_endpoint(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/generate", "/generate_stream", "/compare", "/super_resolve",
            "/interpolate", "/long_video", "/source_caption", "/upload_caption",
            "/guidance_sweep", "/guidance_field"} <= names


def test_generate_returns_a_playable_video_strip_and_seed(client):
    video, strip, seed, status = generate(client, seed=11, steps=2)
    frames = read_video(video, size=32)
    assert frames.shape == (16, 32, 32, 3)
    assert Path(strip).is_file() and seed == 11
    assert "Seed **11**" in status and "16 frames" in status


def test_generate_longer_than_the_window_extends_in_blocks(client):
    video, _, _, status = generate(client, frames=24)
    assert read_video(video, size=32).shape[0] == 24 and "24 frames in 2 block(s)" in status


def test_generate_randomizes_the_seed_and_says_unconditional(client):
    _, _, seed, status = generate(client, prompt="", randomize=True)
    assert 0 <= seed <= validation.MAX_SEED
    assert f"Seed **{seed}**" in status and "unconditionally" in status


def test_generate_warns_about_an_overlong_prompt(client):
    prompt = " and ".join(["a red circle moving up and left"] * 8)
    *_, status = generate(client, prompt=prompt)
    assert "only its beginning is used" in status


def test_generate_stream_yields_previews_before_the_video(client):
    job = client.submit("a blue square moving down", 2.0, "Ancestral", 3, 1, False, 16,
                        api_name="/generate_stream")
    video, strip, seed, status = job.result(timeout=120)
    outputs = job.outputs()
    assert len(outputs) >= 2, "expected at least one live preview before the final video"
    previews = [out for out in outputs[:-1] if str(out[3]).startswith("Denoising")]
    assert previews and all(Path(out[1]).is_file() for out in previews)
    assert "step 3/3" in previews[-1][3]
    assert Path(video).is_file() and seed == 1 and "3** steps" in status


def _raw_call(app_url: str, api_name: str, data_json: str) -> str:
    """POST raw JSON (e.g. with NaN, which gradio_client cannot send); the event's SSE text."""
    base = app_url.rstrip("/") + "/gradio_api/call/" + api_name
    response = httpx.post(base, content='{"data": ' + data_json + "}",
                          headers={"content-type": "application/json"}, timeout=30)
    response.raise_for_status()
    event = response.json()["event_id"]
    return httpx.get(f"{base}/{event}", timeout=120).text


@pytest.mark.parametrize("position, name", [(1, "Guidance weight w"), (3, "Steps"),
                                            (4, "Seed"), (6, "Frame count")])
def test_generate_rejects_nan(app_url, position, name):
    data = ['"a red circle"', "2.0", '"DDIM"', "1", "0", "false", "16"]
    data[position] = "NaN"
    text = _raw_call(app_url, "generate", "[" + ", ".join(data) + "]")
    assert "event: error" in text and f"{name} must be a finite number" in text


@pytest.mark.parametrize("args, message", [
    (dict(steps=10_000), "greater than maximum value 256"),
    (dict(guidance_weight=-1), "less than minimum value 0"),
    (dict(sampler="euler"), "not in the list of choices"),
])
def test_generate_rejects_bad_numbers_and_choices(client, args, message):
    with pytest.raises(AppError, match=message):
        generate(client, **args)


def compare(client, api_name="/compare", source=WORLD_ARGS, frames=16, task_args=(8,),
            prompt="", w_r=5.0, seed=0):
    """Call an Extend & compare endpoint (default: /compare on world clip 3) with 1 step."""
    return client.predict(*source, frames, *task_args, prompt, FAST["guidance_weight"], w_r,
                          FAST["steps"], FAST["sampler"], seed, api_name=api_name)


def _check_task_outputs(outputs, frames: int, with_truth: bool = True):
    """Assert the six outputs of a comparison are complete; return its status text."""
    given, left, right, truth, plot, status = outputs
    for path in (given, left, right):
        assert Path(path).is_file()
    for path in (left, right):
        assert read_video(path, size=32).shape[0] == frames
    assert (truth is not None) == with_truth
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png")
    assert "same seed" in status
    return status


def test_compare_world_clip_with_truth_and_scores(client):
    status = _check_task_outputs(compare(client, frames=16, task_args=(8,)), 16)
    assert "Seam jump" in status and "Trajectory error" in status


def test_super_resolve_world_clip(client):
    outputs = compare(client, "/super_resolve", task_args=("4x (8x8 -> 32x32)",), w_r=16.0)
    status = _check_task_outputs(outputs, 16)
    assert "Low-pass replacement" in status and "MSE of the downsampled" in status


def test_interpolate_world_clip(client):
    outputs = compare(client, "/interpolate", frames=16, task_args=(4, 8))
    status = _check_task_outputs(outputs, 13)
    assert "PSNR vs ground truth" in status


def test_compare_last_generated_clip_in_the_same_session(client):
    with pytest.raises(AppError, match="no generated clip yet"):
        compare(client, source=("Last generated clip", 0, None))
    generate(client, frames=16)
    outputs = compare(client, source=("Last generated clip", 0, None), frames=16)
    _check_task_outputs(outputs, 16, with_truth=True)


def test_compare_uploaded_video(client, tmp_path):
    path = write_mp4(world_clip(5, 12).frames, tmp_path / "clip.mp4")
    outputs = compare(client, source=("Uploaded video", 0, handle_file(str(path))),
                      frames=16, task_args=(4,))
    status = _check_task_outputs(outputs, 16, with_truth=False)
    assert "uploaded video (12 frames)" in status and "no ground truth" in status
    assert sources.OFF_WORLD_NOTE not in status  # a world clip looks like the world


def _upload(client, path: Path):
    """/compare on an uploaded file."""
    return compare(client, source=("Uploaded video", 0, handle_file(str(path))))


def test_upload_errors_name_the_problem(client, tmp_path):
    with pytest.raises(AppError, match="No video uploaded"):
        compare(client, source=("Uploaded video", 0, None))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video" * 100)
    with pytest.raises(AppError, match="could not decode corrupt.mp4"):
        _upload(client, corrupt)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(AppError, match="not a supported video file"):
        _upload(client, text)
    long = write_mp4(np.zeros((MAX_READ_FRAMES + 1, 8, 8, 3), np.uint8),
                     tmp_path / "long.mp4", min_size=8)
    with pytest.raises(AppError, match="256 frame limit"):
        _upload(client, long)


def test_upload_over_the_size_limit_is_refused(client, tmp_path):
    big = tmp_path / "big.mp4"
    with open(big, "wb") as handle:
        handle.truncate(MAX_BYTES + 1)
    with pytest.raises((AppError, ValueError), match="maximum file size of 52428800 bytes"):
        _upload(client, big)


def test_interpolate_needs_two_given_frames(client, tmp_path):
    path = write_mp4(world_clip(5, 3).frames, tmp_path / "short.mp4")
    upload = ("Uploaded video", 0, handle_file(str(path)))
    with pytest.raises(AppError, match="needs two given frames"):
        compare(client, "/interpolate", source=upload, task_args=(4, 8))


# --- the long-video mode ---------------------------------------------------------------------

def test_long_video_progress_names_the_method_and_stage_on_one_block_counter():
    step = PipelineStep(3, 4, 0, 1, torch.zeros(1), stage="keyframes")
    assert handlers.step_text(step) == "keyframes · block 1/1 · step 4/4"
    stages = tasks.long_video_stages(32, 4, 16, 4)
    assert [(s.label, s.blocks) for s in stages] == [
        ("autoregressive", 3), ("cascade · keyframes", 1), ("cascade · interpolation", 3)]
    seen: list[PipelineStep] = []
    report = tasks.long_video_progress(seen.append, stages)
    # compare_long_video's two runs share one shifted block counter: autoregressive, cascade
    shift_progress(report, 0, 2)(PipelineStep(0, 24, 2, 3, torch.zeros(1)))
    shift_progress(report, 1, 2)(PipelineStep(6, 24, 0, 1, torch.zeros(1), stage="keyframes"))
    shift_progress(report, 1, 2)(PipelineStep(23, 24, 2, 3, torch.zeros(1),
                                              stage="interpolation"))
    assert [handlers.step_text(s) for s in seen] == [
        "autoregressive · block 3/7 · step 1/24",
        "cascade · keyframes · block 4/7 · step 7/24",
        "cascade · interpolation · block 7/7 · step 24/24"]
    assert seen[-1].fraction == 1.0


def test_comparison_figure_marks_the_keyframes():
    changes = {"autoregressive": np.zeros(15), "cascade": np.ones(15)}
    figure = plots.comparison_figure(changes, None, [4, 16], [0, 1, 2, 3], keyframes=[0, 4, 8],
                                     block_label="autoregressive extension block start")
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"keyframes", "autoregressive extension block start", "cascade"} <= set(labels)


def long_video(client, source=WORLD_ARGS, frames=24, k=4, w_r=5.0):
    """/long_video with 1 DDIM step and w = 0 (one pass per step)."""
    return client.predict(*source, frames, k, "", 0.0, w_r, 1, "DDIM", 0,
                          api_name="/long_video")


def test_long_video_world_clip_compares_both_methods(client):
    status = _check_task_outputs(long_video(client), 24)
    assert "**Autoregressive extension** (left) vs **Keyframe cascade** (right)" in status
    assert "| | Autoregressive extension | Keyframe cascade |" in status
    assert "Seam jump" in status and "Trajectory error" in status
    assert f"keyframes every 4th frame ({len(range(0, 24, 4))})" in status
    if not (get_pipeline().keyframe_pipe or get_pipeline()).config.frameskip_conditioning:
        assert handlers.FRAMESKIP_NOTE in status and "4x too slowly" in status


def test_long_video_bad_inputs(client, app_url, tmp_path):
    path = write_mp4(world_clip(5, 3).frames, tmp_path / "short.mp4")
    with pytest.raises(AppError, match="has 3 frames, fewer than the k = 8"):
        long_video(client, source=("Uploaded video", 0, handle_file(str(path))), k=8)
    with pytest.raises(AppError, match="no generated clip yet"):
        long_video(client, source=("Last generated clip", 0, None))
    data = ['"World clip"', "0", "null", "24", "4", '""', "0.0", "NaN", "1", '"DDIM"', "0"]
    text = _raw_call(app_url, "long_video", "[" + ", ".join(data) + "]")
    assert "event: error" in text and "Reconstruction weight w_r must be a finite number" in text


def test_mode_controls_show_the_long_video_button_and_titles():
    updates = handlers.mode_controls(handlers.LONG_VIDEO, "2x (16x16 -> 32x32)")
    k, _, _, _, extend, _, _, long, field_run, left, right, _, _ = updates
    assert k["visible"] and long["visible"] and not extend["visible"]
    assert not field_run["visible"]
    assert (left["label"], right["label"]) == ("Autoregressive extension", "Keyframe cascade")
    assert handlers.mode_frames(handlers.LONG_VIDEO, 32)["value"] == handlers.LONG_VIDEO_FRAMES
    assert handlers.mode_frames(handlers.EXTEND, 32)["value"] == 32


def test_each_mode_starts_at_its_tuned_preset():
    """The Extend & compare controls follow defaults.TASK_DEFAULTS per mode."""
    for mode, task in handlers.MODE_TASKS.items():
        updates = handlers.mode_controls(mode, "4x (8x8 -> 32x32)")
        w_r, weight, steps = updates[3]["value"], updates[-2]["value"], updates[-1]["value"]
        row = TASK_DEFAULTS[task]
        assert (weight, steps) == (row.w, row.steps)
        assert w_r == (64.0 if mode == handlers.SUPER_RESOLVE else row.w_r)
    assert handlers.mode_frames(handlers.INTERPOLATE, 32)["value"] == handlers.INTERPOLATE_FRAMES


def test_source_caption_fills_the_prompt(client):
    caption = client.predict("World clip", 4, api_name="/source_caption")
    assert caption == sources.world_caption(4)


def test_an_uploaded_world_clip_gets_the_caption_the_detector_reads(client, tmp_path):
    clip = world_clip(5, 12)
    path = write_mp4(clip.frames, tmp_path / "clip.mp4")
    caption = client.predict(handle_file(str(path)), api_name="/upload_caption")
    assert sorted(caption_objects(caption)) == sorted(caption_objects(clip.caption))
    assert " moving " in caption
    footage = np.random.default_rng(1).integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)
    assert sources.upload_caption(write_mp4(footage, tmp_path / "noise.mp4"), 32) is None
    assert sources.upload_caption(None, 32) is None  # nothing uploaded yet: the prompt stays



def test_an_upload_is_decoded_once_for_its_caption_and_its_task(tmp_path):
    path = write_mp4(world_clip(6, 12).frames, tmp_path / "clip.mp4")
    misses = sources._decoded.cache_info().misses
    caption = sources.upload_caption(str(path), 32)  # on upload: the prompt is read from it
    first = sources.upload_source(str(path), 32).frames  # the task: no second decode
    assert caption and sources._decoded.cache_info().misses == misses + 1
    first[0] = 0  # each caller owns its frames: the kept decode is not changed
    np.testing.assert_array_equal(sources.upload_source(str(path), 32).frames,
                                  read_video(path, size=32))
    time.sleep(0.01)
    write_mp4(world_clip(7, 12).frames, path)  # the same name rewritten: decoded anew
    np.testing.assert_array_equal(sources.upload_source(str(path), 32).frames,
                                  read_video(path, size=32))
    assert sources._decoded.cache_info().misses == misses + 2
    with pytest.raises(validation.InputError, match="not found"):
        sources.upload_source(str(tmp_path / "gone.mp4"), 32)

# --- the guidance views ----------------------------------------------------------------------

def test_looks_like_world_tells_world_clips_from_other_footage():
    assert sources.looks_like_world(world_clip(5, 6).frames)
    rng = np.random.default_rng(0)
    assert not sources.looks_like_world(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    assert not sources.looks_like_world(np.zeros((6, 32, 32, 3), np.uint8))  # dark, no shape
    assert not sources.looks_like_world(np.zeros((0, 32, 32, 3), np.uint8))


def test_sweep_progress_names_the_weight_and_the_step():
    step = PipelineStep(6, 24, 2, 4, torch.zeros(1))
    assert guidance_handlers.sweep_progress((0, 1, 2, 4))(step) == "w = 2 (3/4) · step 7/24"


def _image_shape(path) -> tuple[int, int]:
    """(height, width) of an image file returned by the app."""
    with Image.open(path) as image:
        return image.height, image.width


def sweep(client, prompt="a red circle moving right", seed=5, steps=2, randomize=False):
    """/guidance_sweep with fast settings."""
    return client.predict(prompt, FAST["sampler"], steps, seed, randomize,
                          api_name="/guidance_sweep")


def test_guidance_sweep_returns_four_rows_with_verdicts(client):
    image, status, seed = sweep(client)
    assert seed == 5 and "Seed **5**" in status and "**2** steps" in status
    assert _image_shape(image) == (4 * images.section_height(1, 32), images.image_width(8, 32))
    for w in ("0", "1", "2", "4"):
        assert f"| {w} | matches the caption |" in status or \
            f"| {w} | does not match the caption |" in status
    assert "same initial noise" in status


def test_guidance_sweep_refuses_an_empty_prompt(client):
    with pytest.raises(AppError, match="guidance sweep needs a prompt"):
        sweep(client, prompt="   ")


def field(client, mode=handlers.EXTEND, source=WORLD_ARGS, k=4, factor="2x (16x16 -> 32x32)",
          prompt="", w_r=5.0, steps=4):
    """/guidance_field with fast settings (4 DDIM steps: one snapshot per step)."""
    return client.predict(mode, *source, k, factor, prompt, FAST["guidance_weight"], w_r, steps,
                          FAST["sampler"], 0, api_name="/guidance_field")


FIELD_SHAPE = (images.section_height(1, 32) + 4 * images.section_height(2, 32),
               images.image_width(16, 32))


def test_guidance_field_extension(client):
    image, caption = field(client, k=4)
    assert _image_shape(image) == FIELD_SHAPE  # given row, then x_hat + field rows per level
    assert "eq. 7" in caption and "Frames 0-3 are known" in caption
    assert caption.count("/4 |") == 4 and "Colour scale" in caption and "w_r = **5**" in caption


def test_guidance_field_super_resolution(client):
    image, caption = field(client, mode=handlers.SUPER_RESOLVE, factor="4x (8x8 -> 32x32)",
                           w_r=16.0)
    assert _image_shape(image) == FIELD_SHAPE
    assert "eq. 8" in caption and caption.count("/4 |") == 4 and "w_r = **16**" in caption


def test_guidance_field_bad_inputs(client, app_url):
    with pytest.raises(AppError, match="shown for extension and super-resolution"):
        field(client, mode=handlers.INTERPOLATE)
    with pytest.raises(AppError, match="No video uploaded"):
        field(client, source=("Uploaded video", 0, None))
    data = [f'"{handlers.EXTEND}"', '"World clip"', "0", "null", "4", '"2x (16x16 -> 32x32)"',
            '""', "2.0", "NaN", "1", '"DDIM"', "0"]
    text = _raw_call(app_url, "guidance_field", "[" + ", ".join(data) + "]")
    assert "event: error" in text and "Reconstruction weight w_r must be a finite number" in text


def test_uploads_far_from_the_world_get_a_plain_note(client, tmp_path):
    rng = np.random.default_rng(1)
    footage = rng.integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)  # not the world
    upload = ("Uploaded video", 0, handle_file(str(write_mp4(footage, tmp_path / "noise.mp4"))))
    status = _check_task_outputs(compare(client, source=upload, frames=16, task_args=(4,)), 16,
                                 with_truth=False)
    assert sources.OFF_WORLD_NOTE in status
    _, caption = field(client, mode=handlers.SUPER_RESOLVE, source=upload, steps=1)
    assert sources.OFF_WORLD_NOTE in caption


def _sampling_threads() -> list[threading.Thread]:
    """The app's sampling worker threads still running (the app runs in this process)."""
    return [t for t in threading.enumerate() if t.name == "vdm-job" and t.is_alive()]


def test_stop_cancels_the_guidance_sweep(client):
    job = client.submit("a red square moving up", "DDIM", 256, 0, False,
                        api_name="/guidance_sweep")
    deadline, progress = time.time() + 60, []
    while not progress and time.time() < deadline:  # Stop acts once the handler has yielded
        time.sleep(0.1)
        progress = job.status().progress_data or []
    assert progress and progress[0].desc.startswith("w = 0 (1/4) · step "), progress
    job.cancel()
    deadline = time.time() + 30
    while _sampling_threads() and time.time() < deadline:
        time.sleep(0.2)
    assert not _sampling_threads(), "the cancelled sweep is still sampling"


def _rss_bytes() -> int:
    """Resident memory of this process (which runs the app), in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_eight_concurrent_calls_complete_with_bounded_memory(app_url):
    before = _rss_bytes()
    clients = [Client(app_url, verbose=False) for _ in range(8)]
    jobs = [c.submit("a green triangle moving left", 2.0, "DDIM", 1, i, False, 16,
                     api_name="/generate") for i, c in enumerate(clients)]
    finished = 0
    for job in jobs:
        try:
            assert Path(job.result(timeout=180)[0]).is_file()
            finished += 1
        except AppError as exc:  # a full queue refuses cleanly, with a message
            assert "queue" in str(exc).lower()
    assert finished >= 1
    assert _rss_bytes() - before < 2**30


def test_cancel_frees_the_queue(client, app_url):
    job = client.submit("a red square moving up", 2.0, "DDIM", 256, 0, False, 128,
                        api_name="/generate_stream")
    deadline = time.time() + 60
    while len(job.outputs()) < 1 and time.time() < deadline:
        time.sleep(0.2)
    job.cancel()
    other = Client(app_url, verbose=False).submit("a red square moving up", 2.0, "DDIM", 1, 0,
                                                   False, 16, api_name="/generate")
    assert Path(other.result(timeout=60)[0]).is_file(), "the cancelled job kept the queue busy"
    time.sleep(1.0)
    workers = [t for t in threading.enumerate() if t.name == "vdm-job" and t.is_alive()]
    assert not workers, "the cancelled sampling job is still running"
