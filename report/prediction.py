"""BAIR-like prediction: the first c frames of held-out clips given, the rest of a window made."""

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
from report.extension import verdict
from report.pictures import save_strips
from report.stats import paired_difference
from vdm_core.baselines import constant_velocity, hold_nearest
from vdm_core.compare import score_video
from vdm_core.conditional import predict
from vdm_core.pipeline import VideoDiffusionPipeline

GIVEN = (1, 4)
STRATEGIES = ("replacement", "reconstruction")
SEED_OFFSET = 200


def baselines(clips, given: int, window: int) -> dict:
    """The no-model predictions from the first `given` frames of each clip."""
    out = {"hold last frame (no model)": [hold_nearest(c.frames[:given], range(given), window)
                                          for c in clips]}
    if given >= 2:
        out["constant velocity (no model)"] = [constant_velocity(c.frames[:given], window)
                                               for c in clips]
    return out


def jobs(s: Settings) -> int:
    return len(GIVEN) * len(STRATEGIES)


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """Condition on c in GIVEN frames with each strategy; score the generated frames."""
    window = pipe.config.num_frames
    clips = eval_clips("prediction", s.samples, window, pipe.config.image_size)
    x = batch(clips, slice(None))
    table = Table(f"Prediction (BAIR-like): first c frames given, {window} frames in all",
                  ["given c", "method"],
                  [("trajectory_error_px", "trajectory error px", 2),
                   ("missing_frames", "objects missed", 2),
                   ("shape_persistence", "shape kept", 2),
                   ("psnr_vs_truth", "PSNR vs truth dB", 1)])
    strips = [("truth", clips[0].frames)]
    paired = []
    for c in GIVEN:
        config = task_config("predict", s)
        per_method = {}
        for strategy in STRATEGIES:
            out = run_job(f"predict {c} {strategy}", outer, predict, pipe, x, c, window,
                          prompt=[cl.caption for cl in clips], strategy=strategy,
                          config=config.seeded(s.seed + SEED_OFFSET + c))
            per_method[strategy] = [
                score_video(v, range(c, window), out.info["block_starts"], truth=cl).scores
                for v, cl in zip(out.videos, clips, strict=True)]
            table.rows.append(summarise([str(c), strategy], per_method[strategy]))
            strips.append((f"{c} given\n{strategy}", out.videos[0]))
        for name, videos in baselines(clips, c, window).items():
            table.rows.append(summarise([str(c), name], [
                score_video(v, range(c, window), [c], truth=cl).scores
                for v, cl in zip(videos, clips, strict=True)]))
        error = paired_difference(per_method["replacement"], per_method["reconstruction"],
                                  "trajectory_error_px")
        paired.append((f"{c} given: {error.text()} px", verdict(error, False)))
    save_strips(s.pictures / "prediction.png", strips, max_frames=window, scale=3,
                columns=window)
    first, stop = seed_range("prediction", s.samples)
    table.notes = [
        "Paired difference reconstruction minus replacement, trajectory error (same clips and "
        "noise; negative = reconstruction better): "
        + "; ".join(f"{text} ({v})" for text, v in paired) + ".",
        "",
        f"{s.samples} held-out world clips (EVAL_SEEDS[{first}:{stop}]), prompt = "
        f"caption, {config.steps} {config.sampler} steps, w = {config.w:g}, w_r = "
        f"{config.w_r:g}; metrics over the generated "
        "frames. The paper's BAIR setting is 1 frame given, reconstruction guidance (w_r = 50). "
        "No-model baselines: hold the last given frame; carry the objects detected in the last "
        "two given frames on at constant velocity with wall bounces (the world's own physics, "
        "so it bounds what a model that has learned the motion could reach).",
        "",
        *([MOTION_LIMIT, ""] if any(v == "no separable difference" for _, v in paired) else []),
        "![prediction strips](results/prediction.png)",
    ]
    return table.markdown()
