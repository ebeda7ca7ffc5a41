"""Event handlers: check the inputs, run the pipeline in a cancellable worker, format outputs.

Every long handler is a generator: it yields after each sampling step (a preview or
`gr.skip()`), so Gradio can cancel it between steps (the Stop button), and it reports
"block b/B · step i/N" through `gr.Progress`. Problems reach the user as `gr.Error` messages,
never as tracebacks. The model math lives in `vdm_core`; the input rules in `validation`.
"""

import contextlib
import functools
import html
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import gradio as gr
import numpy as np

from demo import plots, sources, tasks
from demo.runtime import get_pipeline, output_path
from demo.validation import (
    SAMPLER_LABELS,
    InputError,
    Notes,
    check_conditioning_frames,
    check_num_frames,
    check_prompt,
    check_sampling,
    clamp_number,
)
from demo.worker import BackgroundJob
from vdm_core.compare import Comparison
from vdm_core.conditional import KEYFRAME_SKIP
from vdm_core.defaults import default_config, lowres_w_r
from vdm_core.outputs import PipelineStep, SamplingConfig
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.video_io import frame_strip, tensor_to_frames, write_mp4

log = logging.getLogger(__name__)
PROGRESS = gr.Progress()  # Gradio injects a per-event tracker where a handler defaults to it

EXTEND = "Extend: continue the first k frames"
SUPER_RESOLVE = "Super-resolution: a low-res clip"
INTERPOLATE = "Interpolation: every m-th frame"
LONG_VIDEO = "Long video: autoregressive vs keyframe cascade"
MODES = (EXTEND, SUPER_RESOLVE, INTERPOLATE, LONG_VIDEO)
LONG_VIDEO_FRAMES = 64  # the Frames slider's value in the long-video mode
INTERPOLATE_FRAMES = 17  # every 4th of 17 frames given: two windows at the 48 tuned steps
MODE_TASKS = {EXTEND: "extend", SUPER_RESOLVE: "super_resolve", INTERPOLATE: "interpolate",
              LONG_VIDEO: "cascade"}  # each mode's preset is its task's row of TASK_DEFAULTS
FACTORS = {"2x (16x16 -> 32x32)": 2, "4x (8x8 -> 32x32)": 4}
PREVIEWS_PER_RUN = 8
FPS = 8
METHOD_TITLES = {"replacement": "Replacement", "lowpass": "Low-pass replacement",
                 "reconstruction": "Reconstruction guidance",
                 "autoregressive": "Autoregressive extension", "cascade": "Keyframe cascade"}
MODE_TITLES = {SUPER_RESOLVE: ("lowpass", "reconstruction"),
               LONG_VIDEO: ("autoregressive", "cascade")}  # the others: replacement, eq. 7
FRAMESKIP_NOTE = (f"The keyframe model was not trained with the frameskip input, so it samples "
                  f"the keyframes as if they were consecutive frames and they move "
                  f"{KEYFRAME_SKIP}x too slowly: the cascade is shown for the method, not for "
                  f"its quality.")
SCORE_LABELS = {
    "seam_jump": "Seam jump (change at block starts / within blocks; 1 = seamless)",
    "psnr_vs_truth": "PSNR vs ground truth, generated frames (dB, higher is better)",
    "trajectory_error_px": "Trajectory error, generated frames with sharp objects (px, lower "
                           "is better)",
    "pixel_rmse": "Pixel RMSE vs ground truth, generated frames (lower is better)",
    "missing_frames": "Frames without a sharp object (blurred, ghosted or missing)",
    "ghost_rate": "Frames with a doubled object (ghosts)",
    "colour_persistence": "Colour persistence (fraction of frames)",
    "shape_persistence": "Shape persistence (fraction of frames)",
    "lowres_mse": "MSE of the downsampled result vs the low-res input",
}
SCORE_NOTE = ("*Scores come from a pixel-level object detector; \"–\" means it found none of "
              "the captioned objects (common with few sampling steps or an early checkpoint).*")


def _escape(text: str) -> str:
    """text made safe for Gradio's HTML toasts (quotes kept readable)."""
    return html.escape(text, quote=False)


def user_errors(handler: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """Wrap a generator handler so every failure becomes a readable `gr.Error`."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            yield from handler(*args, **kwargs)
        except gr.Error:
            raise
        except (InputError, ValueError, FileNotFoundError) as exc:
            raise gr.Error(_escape(str(exc))) from None
        except Exception as exc:
            log.exception("handler %s failed", handler.__name__)
            message = f"Something went wrong ({type(exc).__name__}): {exc}"
            raise gr.Error(_escape(message)) from None

    return wrapper


def notify(notes: Notes) -> None:
    """Show the notes as Gradio warnings and infos (toasts in the browser)."""
    for message in notes.warnings:
        gr.Warning(_escape(message))
    for message in notes.infos:
        gr.Info(_escape(message))


def step_text(step: PipelineStep) -> str:
    """Progress text of a sampling step, e.g. "block 2/4 · step 7/32", led by its stage when it
    has one ("cascade · keyframes · block 5/9 · step 7/32")."""
    stage = f"{step.stage} · " if step.stage else ""
    return (f"{stage}block {step.block + 1}/{step.num_blocks} · "
            f"step {step.step + 1}/{step.num_steps}")


def preview_strip(step: PipelineStep) -> np.ndarray:
    """The model's current estimate x_hat of the block being sampled, as a frame strip."""
    return frame_strip(tensor_to_frames(step.x_hat[0]), max_frames=16, scale=4, columns=8)


def _preview_due(step: PipelineStep) -> bool:
    """True for about PREVIEWS_PER_RUN evenly spaced steps per block, and its last step."""
    every = max(1, step.num_steps // PREVIEWS_PER_RUN)
    return (step.step + 1) % every == 0 or step.step + 1 == step.num_steps


def run_job(fn: Callable, progress: gr.Progress,
            on_step: Callable[[PipelineStep], tuple | None] | None = None,
            describe: Callable[[PipelineStep], str] = step_text):
    """Run fn(callback) in a worker; yield on every step (on_step's outputs or gr.skip()).

    The progress text of a step is describe(step). Returns fn's result (use with
    `result = yield from run_job(...)`).
    """
    job = BackgroundJob(fn)
    with contextlib.closing(job.events()) as events:  # closing it cancels the job
        for step in events:
            update = None
            if step is not None:
                progress(step.fraction, desc=describe(step))
                update = on_step(step) if on_step is not None else None
            yield gr.skip() if update is None else update
    return job.result


def _write_video(frames: np.ndarray | None, stem: str) -> str | None:
    """frames as an H.264 mp4 file for gr.Video (None stays None)."""
    if frames is None:
        return None
    return str(write_mp4(frames, output_path(stem, ".mp4"), fps=FPS))


def _sampler_label(name: str) -> str:
    """The UI label of a sampler name ("ddim" -> "DDIM")."""
    return next(label for label, key in SAMPLER_LABELS.items() if key == name)


def _settings_text(config: SamplingConfig, seed: int, extra: str = "") -> str:
    """One line describing the sampling settings of a result."""
    return (f"Seed **{seed}** · {_sampler_label(config.sampler)} sampler · "
            f"**{config.steps}** steps · w = **{config.w:g}**{extra}")


def _notes_text(notes: Notes) -> str:
    """The notes as markdown quote lines for a status text."""
    return "".join(f"\n\n> {_escape(message)}" for message in notes.all())


def check_generate(pipe: VideoDiffusionPipeline, prompt: object, guidance_weight: object,
                   sampler: object, steps: object, seed: object, randomize: object,
                   num_frames: object) -> tuple[str, SamplingConfig, int, int, Notes]:
    """Checked Generate inputs: (prompt, seeded config, seed, frame count, notes)."""
    notes = Notes()
    encoder = pipe.text_encoder
    prompt = check_prompt(prompt, encoder.was_truncated, notes, encoder.max_tokens)
    config, seed = check_sampling(guidance_weight, sampler, steps, seed, bool(randomize), notes)
    return prompt, config, seed, check_num_frames(num_frames, notes), notes


def _generate(prompt, guidance_weight, sampler, steps, seed, randomize, num_frames,
              progress: gr.Progress, live: bool):
    """Text-to-video; with live=True the strip shows x_hat while sampling."""
    pipe = get_pipeline()
    prompt, config, seed, num_frames, notes = check_generate(
        pipe, prompt, guidance_weight, sampler, steps, seed, randomize, num_frames)
    notify(notes)

    def sample(callback):
        return pipe(prompt, num_frames=num_frames, config=config.with_callback(callback))

    def show(step: PipelineStep) -> tuple | None:
        if not (live and _preview_due(step)):
            return None
        text = f"Denoising… {step_text(step)} (showing the current estimate x̂)"
        return gr.skip(), preview_strip(step), gr.skip(), text, gr.skip()

    start = time.perf_counter()
    out = yield from run_job(sample, progress, show)
    seconds = time.perf_counter() - start
    blocks = len(out.info.get("block_starts", [0]))
    extra = f" · {len(out.frames)} frames in {blocks} block(s) · {seconds:.1f} s"
    status = _settings_text(config, seed, extra) + _notes_text(notes)
    strip = frame_strip(out.frames, max_frames=16, scale=4, columns=8)
    yield (_write_video(out.frames, "generated"), strip, seed, status,
           {"frames": out.frames, "prompt": prompt})


@user_errors
def generate(prompt: str, guidance_weight: float, sampler: str, steps: int, seed: int,
             randomize: bool, num_frames: int, progress=PROGRESS):
    """Text-to-video: an H.264 mp4, a frame strip, the seed used and a status line."""
    yield from _generate(prompt, guidance_weight, sampler, steps, seed, randomize, num_frames,
                         progress, live=False)


@user_errors
def generate_stream(prompt: str, guidance_weight: float, sampler: str, steps: int, seed: int,
                    randomize: bool, num_frames: int, progress=PROGRESS):
    """Text-to-video that streams the model's current estimate x_hat as a frame strip."""
    yield from _generate(prompt, guidance_weight, sampler, steps, seed, randomize, num_frames,
                         progress, live=True)


def _number(value: float) -> str:
    """A score for the table: 3 significant digits, "–" when undefined."""
    return "–" if value is None or math.isnan(value) else f"{value:.3g}"


def _score_table(result: Comparison) -> str:
    """The scores of both strategies as a markdown table (metrics as rows)."""
    names = list(result.videos)
    keys = [key for key in SCORE_LABELS if any(key in result.scores.get(n, {}) for n in names)]
    if not keys:
        return ""
    header = "| | " + " | ".join(METHOD_TITLES[n] for n in names) + " |\n"
    header += "|---" * (len(names) + 1) + "|\n"
    rows = []
    for key in keys:
        values = [result.scores.get(n, {}).get(key, float("nan")) for n in names]
        rows.append(f"| {SCORE_LABELS[key]} | " + " | ".join(map(_number, values)) + " |")
    return "\n\n" + header + "\n".join(rows) + "\n\n" + SCORE_NOTE


def _task_outputs(task: tasks.TaskResult, config: SamplingConfig, seed: int, notes: Notes,
                  source: sources.SourceClip) -> tuple:
    """(given, first strategy, second strategy, truth) videos, the plot and the status."""
    result = task.comparison
    first, second = list(result.videos)
    keyframes = next((out.info["keyframes"] for out in result.outputs.values()
                      if "keyframes" in out.info), [])
    figure = plots.comparison_figure(
        result.frame_changes, result.errors, result.block_starts, result.given,
        result.error_label, keyframes,
        f"{METHOD_TITLES[first].lower()} block start" if keyframes else "block start")
    truth_note = "" if result.truth is not None else " · no ground truth for this source"
    keyframe_note = (f" · keyframes every {KEYFRAME_SKIP}th frame ({len(keyframes)})"
                     if keyframes else "")
    status = (f"**{METHOD_TITLES[first]}** (left) vs **{METHOD_TITLES[second]}** (right) on "
              f"{_escape(source.label)}, same seed · {len(result.videos[first])} frames"
              f"{keyframe_note} · {result.seconds:.1f} s{truth_note}\n\n"
              f"{_settings_text(config, seed)}" + _score_table(result) + _notes_text(notes))
    return (_write_video(task.given_preview, "given"),
            _write_video(result.videos[first], first),
            _write_video(result.videos[second], second),
            _write_video(result.truth, "truth"), figure, status)


def _prepare(source_kind, world_index, upload, last_clip, num_frames, prompt, guidance_weight,
             w_r, steps, sampler, seed):
    """Checks shared by the four tasks: (pipe, source, frame count, prompt, config, seed,
    notes); the config carries the checked w_r."""
    pipe = get_pipeline()
    notes = Notes()
    num_frames = check_num_frames(num_frames, notes, low=2)
    encoder = pipe.text_encoder
    prompt = check_prompt(prompt, encoder.was_truncated, notes, encoder.max_tokens)
    config, seed = check_sampling(guidance_weight, sampler, steps, seed, False, notes)
    config = replace(config, w_r=clamp_number("Reconstruction weight w_r", w_r, 0.0, 64.0, notes))
    size = pipe.config.image_size
    source = sources.load_source(source_kind, world_index, upload, last_clip, num_frames, size)
    if source_kind == sources.UPLOAD and not sources.looks_like_world(source.frames):
        notes.infos.append(sources.OFF_WORLD_NOTE)
    return pipe, source, num_frames, prompt, config, seed, notes


def _run_task(task: Callable[[SamplingConfig], tasks.TaskResult], config: SamplingConfig,
              seed: int, notes: Notes, source: sources.SourceClip, progress: gr.Progress):
    """Run task(config with a progress callback) in a worker, then yield the tab's outputs."""
    notify(notes)
    result = yield from run_job(lambda cb: task(config.with_callback(cb)), progress)
    yield _task_outputs(result, config, seed, notes, source)


@user_errors
def compare(source: str, world_index: int, upload: str | None, last_clip: dict | None,
            num_frames: int, k: int, prompt: str, guidance_weight: float, w_r: float, steps: int,
            sampler: str, seed: int, progress=PROGRESS):
    """Extend the first k frames of a clip with replacement and with reconstruction guidance."""
    pipe, src, num_frames, prompt, config, seed, notes = _prepare(
        source, world_index, upload, last_clip, num_frames, prompt, guidance_weight, w_r, steps,
        sampler, seed)
    k = check_conditioning_frames(k, num_frames, notes, pipe.config.num_frames)
    yield from _run_task(lambda c: tasks.extend_task(pipe, src, num_frames, prompt, c, seed),
                         replace(config, k=k), seed, notes, src, progress)


@user_errors
def long_video(source: str, world_index: int, upload: str | None, last_clip: dict | None,
               num_frames: int, k: int, prompt: str, guidance_weight: float, w_r: float,
               steps: int, sampler: str, seed: int, progress=PROGRESS):
    """Extend the first k frames of a clip block by block and by the keyframe cascade (Fig. 2),
    both with reconstruction guidance."""
    pipe, src, num_frames, prompt, config, seed, notes = _prepare(
        source, world_index, upload, last_clip, num_frames, prompt, guidance_weight, w_r, steps,
        sampler, seed)
    k = check_conditioning_frames(k, num_frames, notes, pipe.config.num_frames)
    if not (pipe.keyframe_pipe or pipe).config.frameskip_conditioning:
        notes.infos.append(FRAMESKIP_NOTE)
    yield from _run_task(lambda c: tasks.long_video_task(pipe, src, num_frames, prompt, c, seed),
                         replace(config, k=k), seed, notes, src, progress)


@user_errors
def super_resolve(source: str, world_index: int, upload: str | None, last_clip: dict | None,
                  num_frames: int, factor: str, prompt: str, guidance_weight: float, w_r: float,
                  steps: int, sampler: str, seed: int, progress=PROGRESS):
    """Super-resolve a downsampled clip with low-pass replacement and with eq. 8."""
    pipe, src, num_frames, prompt, config, seed, notes = _prepare(
        source, world_index, upload, last_clip, num_frames, prompt, guidance_weight, w_r, steps,
        sampler, seed)
    scale = check_factor(factor)
    yield from _run_task(
        lambda c: tasks.super_resolve_task(pipe, src, num_frames, scale, prompt, c, seed),
        config, seed, notes, src, progress)


@user_errors
def interpolate(source: str, world_index: int, upload: str | None, last_clip: dict | None,
                num_frames: int, every: int, k: int, prompt: str, guidance_weight: float,
                w_r: float, steps: int, sampler: str, seed: int, progress=PROGRESS):
    """Keep every m-th frame of a clip and fill the rest with replacement and with eq. 7."""
    pipe, src, num_frames, prompt, config, seed, notes = _prepare(
        source, world_index, upload, last_clip, num_frames, prompt, guidance_weight, w_r, steps,
        sampler, seed)
    window = pipe.config.num_frames
    every = clamp_number("Keep every m-th frame", every, 2, window - 1, notes, integer=True)
    k = check_conditioning_frames(k, num_frames, notes, window)
    yield from _run_task(
        lambda c: tasks.interpolate_task(pipe, src, num_frames, every, prompt, c, seed),
        replace(config, k=k), seed, notes, src, progress)


def check_factor(factor: object) -> int:
    """The downsampling factor of a FACTORS label or a number (2 or 4)."""
    if isinstance(factor, str) and factor in FACTORS:
        return FACTORS[factor]
    try:
        value = int(factor)
    except (TypeError, ValueError, OverflowError):
        value = 0
    if value not in FACTORS.values():
        raise InputError(f"the super-resolution factor must be one of "
                         f"{', '.join(FACTORS)}, got {factor!r}")
    return value


def source_caption(source: str, world_index: int, last_clip: dict | None):
    """The prompt to show for a source: a world clip's caption, the last generated prompt."""
    if source == sources.WORLD:
        try:
            return sources.world_caption(int(world_index))
        except (TypeError, ValueError, OverflowError):
            return gr.skip()
    if source == sources.LAST and last_clip:
        return last_clip.get("prompt", "")
    return gr.skip()


def upload_caption(upload: str | None):
    """Fill the prompt with the caption read from an uploaded world-like video; leave it as it
    is for other footage."""
    caption = sources.upload_caption(upload, get_pipeline().config.image_size)
    return gr.skip() if caption is None else caption


def source_controls(source: str):
    """Show the world clip number or the upload box, whichever the source needs."""
    return (gr.update(visible=source == sources.WORLD),
            gr.update(visible=source == sources.UPLOAD))


def mode_preset(mode: str, factor: str) -> SamplingConfig:
    """The tuned settings a mode starts from: its task's row of defaults.TASK_DEFAULTS, with
    eq. 8's w_r for the chosen super-resolution factor."""
    config = default_config(MODE_TASKS.get(mode, "extend"))
    if mode == SUPER_RESOLVE:
        config = replace(config, w_r=lowres_w_r(FACTORS.get(factor, 2)))
    return config


def mode_controls(mode: str, factor: str):
    """Visibility of the task-specific controls and buttons (k, factor, m, then the run buttons:
    extend, super-resolve, interpolate, long video, guidance field), the mode's preset w_r, w
    and steps (`mode_preset`) and the titles of the two result videos."""
    extend, sr, interp, long = (mode == m for m in MODES)
    preset = mode_preset(mode, factor)
    left, right = (METHOD_TITLES[name]
                   for name in MODE_TITLES.get(mode, ("replacement", "reconstruction")))
    return (gr.update(visible=extend or interp or long), gr.update(visible=sr),
            gr.update(visible=interp), gr.update(value=preset.w_r), gr.update(visible=extend),
            gr.update(visible=sr), gr.update(visible=interp), gr.update(visible=long),
            gr.update(visible=extend or sr), gr.update(label=left), gr.update(label=right),
            gr.update(value=preset.w), gr.update(value=preset.steps))


def mode_frames(mode: str, default: int):
    """The Frames slider's value for a mode: LONG_VIDEO_FRAMES for a long video,
    INTERPOLATE_FRAMES for interpolation, else default."""
    frames = {LONG_VIDEO: LONG_VIDEO_FRAMES, INTERPOLATE: INTERPOLATE_FRAMES}.get(mode, default)
    return gr.update(value=frames)
