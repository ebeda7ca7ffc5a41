"""Our analogue of the paper's Table 4: joint video-image training at equal compute.

    nice -n 5 .venv/bin/python scripts/table4_probe.py [--steps 1000] [--samples 32] [--seeds 0,1]

The paper (sec. 4.2, Table 4) trains on each video plus 0, 4 or 8 independent image frames and
finds that the images improve per-frame quality (FID, IS) and the video metric (FVD). Here one
small U-Net per arm is trained from scratch with `vdm_core.train` on the bouncing-shapes world:
the same video batches (the world stream draws the same clips for the same seed), the same
number of steps, learning rate and seed, so that the image frames are the extra, as in the
paper. `--seeds 0,1` trains every arm once per training seed, so that the table shows whether an
ordering between arms repeats across training runs, not only across held-out captions. Each
arm's run lives in --work and resumes where it stopped when the script is rerun.

Each arm's EMA weights are then measured on held-out captions (EVAL_SEEDS[224:], a block no other
report uses), one sample per caption at guidance weight w, the same sampling seed for every arm:

- per-frame quality: caption match (every captioned object in its colour and shape in at least
  half the frames, no other colour; Wilson interval) and shape kept (the fraction of frames in
  which each captioned object is detected in its colour and shape);
- motion quality: mean centroid acceleration away from the walls (true clips: about 0.16);
- held-out denoising error ||x_hat - x||^2 per pixel at log-SNR -3, 0, +3 on the held-out clips
  with their captions (fixed noise), paired with the no-image arm clip by clip.

Writes docs/results/table4.md, which `python -m report` puts into docs/results.md.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from report.common import SEED_BLOCKS
from report.denoising import LOGSNRS, denoising_errors
from report.stats import t_interval, wilson
from vdm_core.data import EVAL_SEEDS, world_clip
from vdm_core.detect import caption_match
from vdm_core.metrics import motion_stats, persistence
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.records import STATE_NAME
from vdm_core.train import TrainConfig, train
from vdm_core.unet3d import UNet3D, UNetConfig
from vdm_core.video_io import frames_to_tensor

ARMS = (0, 4, 8)  # independent image frames per video, as in the paper's Table 4
HELD_OUT = EVAL_SEEDS[SEED_BLOCKS["table4"]:]
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "table4.md"
BANDS = (-3.0, 0.0, 3.0)  # the log-SNR columns shown (all of LOGSNRS are measured)
SAMPLE_SEED = 0  # the sampler's noise, the same for every arm and training seed


def run_dir(work: str, images: int, seed: int) -> Path:
    """The arm's training folder: images{n} for training seed 0, images{n}-seed{s} else."""
    return Path(work).expanduser() / (f"images{images}" + (f"-seed{seed}" if seed else ""))


def train_arm(images: int, seed: int, args: argparse.Namespace) -> tuple[Path, bool]:
    """Train (or resume) the arm with `images` image frames per video and training seed `seed`;
    return its export and whether it trained now (False: an earlier call had finished it)."""
    out = run_dir(args.work, images, seed)
    cfg = TrainConfig(out_dir=str(out), steps=args.steps, image_frames=images, seed=seed,
                      sample_every=0, threads=args.threads, export_dir=str(out / "export"))
    if (out / "export" / STATE_NAME).exists() and _state(out / "export")["step"] >= args.steps:
        return out / "export", False
    train(cfg, arm_model(args))
    return out / "export", True


def arm_model(args: argparse.Namespace) -> UNetConfig:
    """The shipped architecture at --base-channels (one attention head per level's base)."""
    return UNetConfig(base_channels=args.base_channels, head_dim=args.base_channels)


def _state(export: Path) -> dict:
    return json.loads((export / STATE_NAME).read_text())


def measure(export: Path, args: argparse.Namespace) -> dict:
    """Per-caption samples and denoising errors of one arm (see the module docstring)."""
    pipe = VideoDiffusionPipeline.from_pretrained(export)
    clips = [world_clip(seed, 16) for seed in HELD_OUT[:args.samples]]
    captions = [c.caption for c in clips]
    videos = []
    for i in range(0, len(captions), args.batch):
        g = torch.Generator().manual_seed(SAMPLE_SEED + i)
        videos += pipe(captions[i:i + args.batch], num_inference_steps=args.sample_steps,
                       guidance_weight=args.w, generator=g).videos
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    states, mask = pipe.text_encoder.encode(captions)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        errors = denoising_errors(pipe.model.eval(), x, states, mask)  # (L, B)
    return {
        "match": [caption_match(v, c) for v, c in zip(videos, captions, strict=True)],
        "shape": [persistence(v, c)["shape"] for v, c in zip(videos, captions, strict=True)],
        "acceleration": [motion_stats(v)["acceleration"] for v in videos],
        "errors": {f"{v:+g}": errors[i].tolist() for i, v in enumerate(LOGSNRS)},
        "train_s": _state(export)["wall_time_s"],
    }


def table(results: dict[tuple[int, int], dict], args: argparse.Namespace,
          minutes: float) -> str:
    """The markdown of docs/results/table4.md from {(images, training seed): measurements}."""
    truth = [motion_stats(world_clip(s, 16).frames)["acceleration"]
             for s in HELD_OUT[:args.samples]]
    band_cols = " | ".join(f"error logsnr {v:+g}" for v in BANDS)
    seeds = sorted({seed for _, seed in results})
    lines = [
        "## Joint video-image training (our analogue of the paper's Table 4)", "",
        f"One U-Net per row ({args.base_channels} base channels, multipliers [1, 2, 4], "
        f"{args.params / 1e6:.2f}M parameters), trained from scratch for {args.steps} steps "
        "on batches of 8 videos of 16 "
        "frames, the same videos in every row of a training seed, plus the row's number of "
        "independent image frames of the same scenes per video (temporal attention masked for "
        f"them, sec. 3.2); {len(seeds)} training seed(s). "
        f"Measured on {args.samples} held-out captions (one sample each, {args.sample_steps} "
        f"ancestral steps, w = {args.w:g}, the same sampling seeds in every row). Denoising "
        "error: ||x_hat - x||^2 per pixel on the held-out clips with fixed noise; the bracket "
        "under it is the paired difference to the row without images of the same training seed "
        "(negative: better).", "",
        f"| image frames | training seed | train min | caption match | shape kept per frame | "
        f"accel. px/frame^2 | {band_cols} |",
        "|---|---|---|---|---|---|" + "---|" * len(BANDS),
    ]
    for (images, seed), r in results.items():
        base = results[(ARMS[0], seed)]
        cells = []
        for v in BANDS:
            err = np.asarray(r["errors"][f"{v:+g}"])
            cell = t_interval(err).text(4)
            if images != ARMS[0]:
                diff = t_interval(err - np.asarray(base["errors"][f"{v:+g}"]))
                cell += f"<br>{diff.text(4)}"
            cells.append(cell)
        match = wilson(r["match"])
        lines.append(
            f"| {images} | {seed} | {r['train_s'] / 60:.0f} | {match.mean:.0%} [{match.lo:.0%}, "
            f"{match.hi:.0%}] | {t_interval(r['shape']).text()} | "
            f"{t_interval(r['acceleration']).text()} | " + " | ".join(cells) + " |")
    lines.append(f"| true clips | | | | | {t_interval(truth).text()} |" + " |" * len(BANDS))
    lines += ["", *reading(results), "",
              f"Generated in {minutes:.0f} min ("
              + ("training included" if args.trained_now else "the arms were trained by an "
                 "earlier call: see train min") + ") by `nice -n 5 "
              f".venv/bin/python scripts/table4_probe.py --steps {args.steps} --samples "
              f"{args.samples} --seeds {args.seeds}` on {args.threads} CPU thread(s); runs in "
              f"`{args.work}`.", ""]
    return "\n".join(lines)


def reading(results: dict[tuple[int, int], dict]) -> list[str]:
    """How this setting differs from the paper's, and what the intervals say per arm and seed."""
    seeds = sorted({seed for _, seed in results})
    lines = [
        "**Reading.** In the paper the image frames are drawn from other videos of a limited "
        "dataset, so they add content that the videos alone do not show. Here they are frames of "
        "the same procedural scenes from a world that renders unlimited videos: they carry no "
        "content the videos lack. What they do add is a share of the loss (it is averaged over "
        "all frames, so the video frames' share falls to 16/20 and 16/24) and spatial-layer "
        "compute per step. The intervals cover the held-out captions; the training seeds show "
        "the spread between training runs."]
    for seed in seeds:
        base = wilson(results[(ARMS[0], seed)]["match"])
        for images in ARMS[1:]:
            match = wilson(results[(images, seed)]["match"])
            separate = match.hi < base.lo or match.lo > base.hi
            lines.append(f"- training seed {seed}, {images} image frames: caption match "
                         f"{match.mean:.0%} against {base.mean:.0%} without images ("
                         + ("the intervals separate" if separate else "the intervals overlap")
                         + ").")
    if len(seeds) > 1:
        for images in ARMS[1:]:
            below = sum(np.mean(results[(images, s)]["match"])
                        < np.mean(results[(ARMS[0], s)]["match"]) for s in seeds)
            lines.append(f"- {images} image frames match fewer captions than none in {below} "
                         f"of {len(seeds)} training seeds.")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per arm")
    parser.add_argument("--samples", type=int, default=32, help="held-out captions")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--sample-steps", type=int, default=24)
    parser.add_argument("--w", type=float, default=2.0, help="guidance weight of the samples")
    parser.add_argument("--batch", type=int, default=16, help="samples per sampler call")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="~/.cache/vdm/table4")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.samples > len(HELD_OUT):
        parser.error(f"--samples is at most {len(HELD_OUT)} (the held-out block)")
    t0 = time.time()
    args.params = sum(p.numel() for p in UNet3D(arm_model(args)).parameters())
    results, args.trained_now = {}, False
    runs = [(images, int(seed)) for seed in args.seeds.split(",") for images in ARMS]
    for images, seed in tqdm(runs, desc="table 4 arms"):
        export, trained = train_arm(images, seed, args)
        args.trained_now |= trained
        torch.set_num_threads(args.threads)
        results[(images, seed)] = measure(export, args)
        print(images, seed, {k: np.nanmean(v) for k, v in results[(images, seed)].items()
                             if k in ("match", "shape", "acceleration")}, flush=True)
    text = table(results, args, (time.time() - t0) / 60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
