"""Our Table 6: extension of held-out clips, replacement vs reconstruction guidance (eq. 7)."""

import numpy as np
from tqdm import tqdm

from report.common import (
    MOTION_LIMIT,
    Settings,
    Table,
    batch,
    eval_clips,
    run_job,
    seed_range,
    summarise,
    task_config,
)
from report.pictures import mean_curve, save_curves, save_strips
from report.stats import Cell, paired_difference
from vdm_core.compare import score_video
from vdm_core.conditional import extend, plan_blocks
from vdm_core.defaults import DEFAULT_K, DEFAULT_W_R
from vdm_core.metrics import frame_change
from vdm_core.outputs import SamplingConfig
from vdm_core.pipeline import VideoDiffusionPipeline

METRICS = [("seam_jump", "seam jump (1 = seamless)", 2),
           ("trajectory_error_px", "trajectory error px", 2),
           ("missing_frames", "objects missed", 2),
           ("colour_persistence", "colour kept", 2),
           ("shape_persistence", "shape kept", 2),
           ("psnr_vs_truth", "PSNR vs truth dB", 1)]


def runs(s: Settings) -> list[tuple[str, SamplingConfig]]:
    """The rows of the table as (strategy, config): w x {replacement, reconstruction per w_r},
    then (full runs) the other k and the predictor-corrector sampler."""
    base = task_config("extend", s)

    def row(strategy: str, w: float, w_r: float = DEFAULT_W_R, k: int = DEFAULT_K,
            sampler: str = "ancestral", steps: int = base.steps) -> tuple[str, SamplingConfig]:
        return strategy, task_config("extend", s, w=w, w_r=w_r, k=k, sampler=sampler,
                                     steps=steps)

    rows = []
    for w in s.ext_weights:
        grid = s.w_r_grid if w == base.w else (DEFAULT_W_R,)
        rows += [row("replacement", w), *(row("reconstruction", w, w_r) for w_r in grid)]
    if s.tuning_rows:
        w, other_k = base.w, 4 if DEFAULT_K != 4 else 8
        rows += [row("reconstruction", w, k=other_k), row("replacement", w, k=other_k),
                 row("reconstruction", w, sampler="pc", steps=max(1, base.steps // 2))]
    return rows


def jobs(s: Settings) -> int:
    return len(runs(s))


def _is_default(strategy: str, config: SamplingConfig) -> bool:
    return config.k == DEFAULT_K and config.sampler == "ancestral" and (
        strategy == "replacement" or config.w_r == DEFAULT_W_R)


def verdict(diff: Cell, higher_is_better: bool) -> str:
    """Which method a paired difference (reconstruction - replacement) favours, by its interval."""
    if diff.n < 2 or not np.isfinite(diff.lo):
        return "too few samples"
    if diff.lo <= 0 <= diff.hi:
        return "no separable difference"
    recon_better = (diff.lo > 0) == higher_is_better
    return f"{'reconstruction' if recon_better else 'replacement'} better"


def paired_notes(paired: dict[tuple[float, str], list[dict[str, float]]],
                 weights: tuple[float, ...]) -> list[str]:
    """Per-sample differences reconstruction - replacement (same clips, same noise), per w."""
    lines = ["", "Paired differences, reconstruction (default w_r, k) minus replacement, same "
             "clips and noise (negative = reconstruction better, except 'kept'):", ""]
    for w in weights:
        if (w, "replacement") not in paired or (w, "reconstruction") not in paired:
            continue
        seam, error, shape = (
            paired_difference(paired[(w, "replacement")], paired[(w, "reconstruction")], key)
            for key in ("seam_jump", "trajectory_error_px", "shape_persistence"))
        lines.append(f"- w = {w:g}: seam jump {seam.text()} ({verdict(seam, False)}), trajectory "
                     f"error {error.text()} px ({verdict(error, False)}), shape kept "
                     f"{shape.text()} ({verdict(shape, True)})")
    return lines + [""]


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """The model's window of frames of held-out clips -> s.frames frames, prompt = caption."""
    window = pipe.config.num_frames
    clips = eval_clips("extension", s.samples, s.frames, pipe.config.image_size)
    x0 = batch(clips, slice(0, window))
    table = Table(f"Table 6 analogue: extension {window} -> {s.frames} frames",
                  ["w", "method", "w_r", "k", "sampler (steps)", "s / video"], METRICS)
    curves: dict[str, dict[str, np.ndarray]] = {"change": {}, "error": {}}
    strips = [("truth", clips[0].frames)]
    paired: dict[tuple[float, str], list[dict[str, float]]] = {}
    for strategy, config in runs(s):
        name = strategy if strategy == "replacement" else f"recon w_r={config.w_r:g}"
        out = run_job(f"w={config.w:g} {name} k={config.k} {config.sampler}", outer, extend,
                      pipe, x0, s.frames, prompt=[c.caption for c in clips], strategy=strategy,
                      config=config.seeded(s.seed))
        scored = [score_video(v, range(window, s.frames), out.info["block_starts"], truth=c)
                  for v, c in zip(out.videos, clips, strict=True)]
        per = [sc.scores for sc in scored]
        table.rows.append(summarise([f"{config.w:g}", strategy,
                                     "-" if strategy == "replacement" else f"{config.w_r:g}",
                                     str(config.k), f"{config.sampler} ({config.steps})",
                                     f"{out.info['seconds'] / s.samples:.0f}"], per))
        if _is_default(strategy, config):
            paired[(config.w, strategy)] = per
            if config.w == task_config("extend", s).w:
                curves["change"][name] = mean_curve([sc.frame_change for sc in scored])
                curves["error"][name] = mean_curve([sc.error for sc in scored])
                strips.append((f"{name}\nw={config.w:g}", out.videos[0]))
    curves["change"]["truth"] = mean_curve([frame_change(c.frames) for c in clips])
    known = [i < window for i in range(s.frames)]
    starts = [b.first_new for b in plan_blocks(known, window, DEFAULT_K)]
    save_strips(s.pictures / "extension.png", strips)
    save_curves(s.pictures / "extension_curves.png", curves, starts,
                {"change": "mean |frame change| (0-1)", "error": "trajectory error (px)"})
    first, stop = seed_range("extension", s.samples)
    notes = paired_notes(paired, s.ext_weights)
    trajectory = [verdict(paired_difference(paired[(w, "replacement")],
                                            paired[(w, "reconstruction")],
                                            "trajectory_error_px"), False)
                  for w in s.ext_weights
                  if (w, "replacement") in paired and (w, "reconstruction") in paired]
    if "no separable difference" in trajectory:
        notes += [MOTION_LIMIT.replace("the constant-velocity row",
                                       "the constant-velocity row of the prediction table"), ""]
    table.notes = notes + [
        f"Input: the first {window} frames of {s.samples} held-out world clips (EVAL_SEEDS["
        f"{first}:{stop}]), prompt = the clip's caption; the world renders the true continuation. "
        f"Block starts (k = {DEFAULT_K}): {starts}. Metrics over "
        "the generated frames only: seam jump = mean frame change into a block start / mean "
        "change elsewhere; trajectory error = mean distance from each true object centre to "
        "the nearest detection of its colour (frames where it is not found are left out and "
        "counted in 'objects missed'); colour / shape kept = fraction of frames in which each "
        "captioned object is still detected with its colour / colour and shape.",
        "",
        "![extension strips](results/extension.png)",
        "",
        "![per-frame curves](results/extension_curves.png)",
    ]
    return table.markdown()
