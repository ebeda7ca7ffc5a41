"""Handlers of the two guidance views: the guidance sweep (Generate tab) and the guidance field
(Extend & compare tab). Thin, like `handlers`: check the inputs, run the task in a cancellable
worker with progress, format the image and its caption. The math is in
`vdm_core.guidance_field`, the tasks in `tasks`, the images in `images`.
"""

import time
from dataclasses import replace

from demo import images, tasks
from demo.handlers import (
    EXTEND,
    PROGRESS,
    SUPER_RESOLVE,
    _escape,
    _notes_text,
    _prepare,
    _sampler_label,
    _settings_text,
    check_factor,
    notify,
    run_job,
    user_errors,
)
from demo.runtime import get_pipeline
from demo.validation import (
    InputError,
    Notes,
    check_conditioning_frames,
    check_prompt,
    check_sampling,
)
from vdm_core.outputs import PipelineStep

FIELD_MODES = {EXTEND: "extend", SUPER_RESOLVE: "super_resolve"}
SWEEP_NEEDS_PROMPT = ("The guidance sweep needs a prompt: classifier-free guidance (eq. 6) "
                      "pushes the sample toward the prompt, so without one all four videos "
                      "would be the same. Type a caption such as the examples.")
SWEEP_NOTE = ("Every row starts from the same seed, so the same initial noise: only w differs "
              "(the paper's Table 5 and Fig. 3: more guidance follows the prompt more closely, "
              "with less variety). Verdicts come from the world's object detector: every "
              "captioned colour and shape in at least half of the frames and no other colour.")


def sweep_progress(weights: tuple[float, ...]):
    """Progress text of the sweep: "w = 2 (3/4) · step i/N"."""

    def describe(step: PipelineStep) -> str:
        return (f"w = {weights[step.block]:g} ({step.block + 1}/{len(weights)}) · "
                f"step {step.step + 1}/{step.num_steps}")

    return describe


def _sweep_table(result: tasks.SweepResult) -> str:
    """The verdicts as a markdown table, one row per w."""
    rows = [f"| {w:g} | {images.verdict(match)} |"
            for w, match in zip(result.weights, result.matches, strict=True)]
    return "| Guidance weight w | Detector's verdict |\n|---|---|\n" + "\n".join(rows)


@user_errors
def guidance_sweep(prompt: str, sampler: str, steps: int, seed: int, randomize: bool,
                   progress=PROGRESS):
    """One prompt and seed sampled at w = 0, 1, 2, 4: an image with a row per w, a verdict
    table and the seed used."""
    pipe = get_pipeline()
    notes = Notes()
    encoder = pipe.text_encoder
    prompt = check_prompt(prompt, encoder.was_truncated, notes, encoder.max_tokens)
    if not prompt:
        raise InputError(SWEEP_NEEDS_PROMPT)
    config, seed = check_sampling(0.0, sampler, steps, seed, bool(randomize), notes)
    notify(notes)
    weights = tasks.SWEEP_WEIGHTS
    result = yield from run_job(
        lambda cb: tasks.guidance_sweep_task(pipe, prompt, config.with_callback(cb), seed,
                                             weights),
        progress, describe=sweep_progress(weights))
    image = images.sweep_image(list(result.weights), result.videos, result.matches)
    frames = len(result.videos[0])
    settings = (f"Seed **{seed}** · {_sampler_label(config.sampler)} sampler · "
                f"**{config.steps}** steps")
    status = (f"{_sweep_table(result)}\n\n{settings} · {frames} frames per row · "
              f"{result.seconds:.1f} s\n\n{SWEEP_NOTE}" + _notes_text(notes))
    yield image, status, seed


def check_field_mode(mode: object) -> str:
    """The task of a conditioning mode that has a guidance field ("extend", "super_resolve")."""
    if mode not in FIELD_MODES:
        raise InputError("The guidance field is shown for extension and super-resolution; "
                         f"choose {EXTEND!r} or {SUPER_RESOLVE!r} (got {mode!r}).")
    return FIELD_MODES[mode]


def _field_caption(result: tasks.FieldResult, task: str) -> str:
    """What the field image shows, with each row's noise level and colour scale."""
    field = result.field
    if task == "extend":
        what = (f"Frames {result.given_at[0]}-{result.given_at[-1]} are known (x^a) in a "
                f"window of {field.info['frames']}; the correction is eq. 7's, "
                "−(w_r α_t / 2) ∇_{z^b} ‖x^a − x̂^a(z_t)‖², on the frames to generate. "
                "Grey tiles are the known frames: their estimate is x^a itself.")
    else:
        what = ("The low-res clip x^a = D(x) is known (D: block means); the correction is eq. "
                "8's, −(w_r α_t / 2) ∇_z ‖x^a − D(x̂(z_t))‖², on every frame.")
    rows = []
    for shot, vmax in zip(field.snapshots, images.row_scales(result.field), strict=True):
        magnitude = shot.magnitude()[0]
        moved = [t for t in range(magnitude.shape[0]) if t not in field.known]
        mean = float(magnitude[moved].mean()) if moved else 0.0
        rows.append(f"| {shot.step + 1}/{shot.num_steps} | {shot.t:.2f} | {shot.logsnr:.2f} | "
                    f"{shot.alpha:.3f} | 0 → {vmax:.3g} | {mean:.3g} |")
    table = ("| Step | t | log-SNR | α_t | Colour scale (black → yellow) | Mean push |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows))
    return (f"**Where is the model pushed, and how hard, to agree with what it is given?** "
            f"{what} For each noise level: the model's estimate x̂ (upper row) and, under each "
            f"frame, the size of the correction at each pixel (L2 norm over RGB, in pixel "
            f"values scaled to [−1, 1]), on that row's own colour scale. w_r = "
            f"**{field.w_r:g}**.\n\n{table}")


@user_errors
def guidance_field(mode: str, source: str, world_index: int, upload: str | None,
                   last_clip: dict | None, k: int, factor: str, prompt: str,
                   guidance_weight: float, w_r: float, steps: int, sampler: str, seed: int,
                   progress=PROGRESS):
    """One window of reconstruction guidance on the source: an image of x_hat and the
    correction's size at 4 noise levels, and its caption."""
    task = check_field_mode(mode)
    window = get_pipeline().config.num_frames
    pipe, src, _, prompt, config, seed, notes = _prepare(
        source, world_index, upload, last_clip, window, prompt, guidance_weight, w_r, steps,
        sampler, seed)
    scale = 2
    if task == "extend":
        k = check_conditioning_frames(k, window, notes, window)
        config = replace(config, k=k)
    else:
        scale = check_factor(factor)
    notify(notes)
    start = time.perf_counter()
    result = yield from run_job(
        lambda cb: tasks.guidance_field_task(pipe, src, task, prompt, config.with_callback(cb),
                                             scale),
        progress, describe=lambda s: f"guidance field · step {s.step + 1}/{s.num_steps}")
    seconds = time.perf_counter() - start
    image = images.field_image(result.field, result.given, result.given_at)
    caption = (_field_caption(result, task) + f"\n\nOn {_escape(src.label)} · "
               f"{_settings_text(config, seed)} · {seconds:.1f} s" + _notes_text(notes))
    yield image, caption
