"""Interpolation: every 4th frame of held-out clips given, the frames between generated."""

import numpy as np
from tqdm import tqdm

from report.common import (
    Settings,
    Table,
    batch,
    eval_clips,
    run_job,
    seed_range,
    summarise,
    task_config,
)
from report.pictures import save_strips
from vdm_core.baselines import linear_blend
from vdm_core.compare import score_video
from vdm_core.conditional import interpolate
from vdm_core.data import Clip
from vdm_core.pipeline import VideoDiffusionPipeline

EVERY, FRAMES = 4, 25
NEW = [i for i in range(FRAMES) if i % EVERY]  # the generated frames
STRATEGIES = ("replacement", "reconstruction")
SEED_OFFSET = 400


def jobs(s: Settings) -> int:
    return len(STRATEGIES)


def _scores(videos: list[np.ndarray], clips: list[Clip]) -> list[dict[str, float]]:
    return [score_video(v, NEW, truth=c).scores for v, c in zip(videos, clips, strict=True)]


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """The linear blend baseline, then each strategy, scored on the generated frames."""
    clips = eval_clips("interpolation", s.samples, FRAMES, pipe.config.image_size)
    table = Table(f"Interpolation: every {EVERY}th frame given, {FRAMES} frames",
                  ["method"], [("psnr_vs_truth", "PSNR vs truth dB (new frames)", 1),
                               ("trajectory_error_px", "trajectory error px", 2),
                               ("shape_persistence", "shape kept", 2)])
    given = list(range(0, FRAMES, EVERY))
    blend = [linear_blend(c.frames[given], given, FRAMES) for c in clips]
    table.rows.append(summarise(["linear blend of the given frames (no model)"],
                                _scores(blend, clips)))
    strips = [("truth", clips[0].frames), ("linear blend", blend[0])]
    sparse = batch(clips, slice(0, FRAMES, EVERY))
    config = task_config("interpolate", s)
    for strategy in STRATEGIES:
        out = run_job(f"interp {strategy}", outer, interpolate, pipe, sparse, EVERY,
                      prompt=[c.caption for c in clips], strategy=strategy,
                      config=config.seeded(s.seed + SEED_OFFSET))
        table.rows.append(summarise([strategy], _scores(out.videos, clips)))
        strips.append((strategy, out.videos[0]))
    save_strips(s.pictures / "interpolation.png", strips, max_frames=FRAMES, scale=3,
                columns=FRAMES)
    first, stop = seed_range("interpolation", s.samples)
    table.notes = [
        f"{s.samples} held-out world clips (EVAL_SEEDS[{first}:{stop}]), prompt = "
        f"caption, {config.steps} {config.sampler} steps, w = {config.w:g}, w_r = "
        f"{config.w_r:g}, k = {config.k}; PSNR and "
        "trajectory error over the generated frames only (the given ones are kept exactly), "
        "shape kept over every frame from the first generated one on.",
        "",
        "![interpolation strips](results/interpolation.png)",
    ]
    return table.markdown()
