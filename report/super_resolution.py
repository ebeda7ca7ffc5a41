"""Super-resolution by a factor 2: eq. 8 vs low-pass replacement vs model-free upsampling."""

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from report.common import (
    Settings,
    Table,
    eval_clips,
    run_job,
    seed_range,
    summarise,
    task_config,
)
from report.pictures import save_strips
from vdm_core.compare import score_video
from vdm_core.conditional import super_resolve
from vdm_core.data import Clip
from vdm_core.metrics import downsample
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.video_io import frames_to_tensor

MODE = "area"  # the downsampler D of eq. 8
LABELS = {"reconstruction": "eq. 8 reconstruction guidance", "lowpass": "low-pass"}
SEED_OFFSET = 300


def jobs(s: Settings) -> int:
    return len(LABELS)


def upsample(low: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Model-free upsampling of uint8 frames (T, h, w, 3) to (T, size, size, 3)."""
    x = torch.from_numpy(low).permute(0, 3, 1, 2).float()  # (T, 3, h, w)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    y = F.interpolate(x, size=(size, size), mode=mode, **kwargs)
    return y.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _scores(videos: list[np.ndarray], clips: list[Clip],
            lows: list[np.ndarray]) -> list[dict[str, float]]:
    return [score_video(v, range(len(v)), truth=c, lowres=lo, mode=MODE).scores
            for v, c, lo in zip(videos, clips, lows, strict=True)]


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """Held-out clips reduced by 2x2 block means, then brought back to the model's size."""
    window, size = pipe.config.num_frames, pipe.config.image_size
    clips = eval_clips("super", s.samples, window, size)
    lows = [np.rint(downsample(c.frames, size // 2, MODE) * 255).astype(np.uint8)
            for c in clips]
    table = Table(f"Super-resolution {size // 2}x{size // 2} -> {size}x{size} ({window} frames)",
                  ["method", "w_r"],
                  [("psnr_vs_truth", "PSNR vs truth dB", 1),
                   ("lowres_mse", "MSE of D(output) vs input", 5),
                   ("shape_persistence", "shape kept", 2)])
    strips = [("truth", clips[0].frames), ("input (nearest)", upsample(lows[0], size, "nearest"))]
    for mode in ("nearest", "bicubic"):
        upsampled = [upsample(lo, size, mode) for lo in lows]
        table.rows.append(summarise([f"{mode} upsampling (no model)", "-"],
                                    _scores(upsampled, clips, lows)))
    low_batch = torch.stack([frames_to_tensor(lo) for lo in lows])  # (B, 3, T, h, w)
    config = task_config("super_resolve", s)
    for strategy, label in LABELS.items():
        out = run_job(f"sr {strategy}", outer, super_resolve, pipe, low_batch, strategy=strategy,
                      mode=MODE, prompt=[c.caption for c in clips],
                      config=config.seeded(s.seed + SEED_OFFSET))
        w_r = f"{out.info['w_r']:g}" if strategy == "reconstruction" else "-"
        table.rows.append(summarise([label, w_r], _scores(out.videos, clips, lows)))
        strips.append((label[:14], out.videos[0]))
    save_strips(s.pictures / "super_resolution.png", strips, max_frames=window, scale=3,
                columns=window)
    first, stop = seed_range("super", s.samples)
    table.notes = [
        f"{s.samples} held-out world clips (EVAL_SEEDS[{first}:{stop}]) reduced by "
        f"2x2 block means (D = area), prompt = caption, {config.steps} {config.sampler} steps, "
        f"w = {config.w:g}. The MSE column is on the [0, 1] scale (uint8 rounding alone "
        "gives about 1e-6).",
        "",
        "![super-resolution strips](results/super_resolution.png)",
    ]
    return table.markdown()
