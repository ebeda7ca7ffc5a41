"""Where unconditional samples lose identity: does a model read a clip's colour from all its
frames? Writes the section "Where unconditional samples lose identity" of docs/recipe.md.

    nice -n 5 .venv/bin/python scripts/colour_pooling.py --model assets/model \
        --model assets/heavy_noise_run [--clips 32] [--samplers ancestral:24,pc:24]

A colour is a property of the whole clip, so an ideal video denoiser reads it from every
frame's evidence and gives every frame the same answer. Held-out one-object clips are noised at
fixed log-SNR levels with fixed noise (eq. 1), and each frame's colour is decoded to the palette
colour whose re-rendered clip (same shape, same trajectory) lies nearest:
- "Bayes, one frame" / "Bayes, all frames": the exact posterior decision from z_t when shape
  and trajectory are known (Gaussian likelihood ||z_t - alpha_t x_k||^2 / 2 sigma_t^2, uniform
  prior over the palette): from each frame alone, and from all frames pooled. Their gap is what
  pooling over time is worth at that noise level.
- a model, "images": x_hat from the same z_t denoised as independent images (every frame
  masked off from the others, joint training's mask, sec. 3), decoded per frame; it pools
  nothing.
- a model, "video": x_hat of the clip as a video, decoded per frame; "agree" is the share of
  frames decoded to the clip's most common answer (1 for an ideal denoiser).
With --samplers, each model also samples unconditional clips (empty prompt, w = 0) per
sampler:steps and reports `metrics.identity_kept`, the share of clips that keep it in every
frame, and the mean acceleration (model card columns). With two models, --switch-at L also
samples with each model denoising the inputs from log-SNR L up and the other those below L: if
what a model keeps moves with its low-SNR half, that band is where identity is decided.
"""

import argparse
import dataclasses
import shlex
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from report.common import add_section_args, display_path, one_object_clips, write_section
from report.stats import t_interval
from vdm_core.data import PALETTE, Clip, render_clip
from vdm_core.diffusion import model_denoiser
from vdm_core.metrics import identity_kept, motion_stats
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.samplers import sample
from vdm_core.schedule import alpha_sigma, q_sample
from vdm_core.video_io import frames_to_tensor, tensor_to_frames

LOGSNRS = (-8.0, -6.0, -5.0, -4.0, -3.0, -2.0)
COLOURS = tuple(PALETTE)
SECTION = "colour-pooling"
TITLE = "Where unconditional samples lose identity"


def recoloured(clip: Clip) -> torch.Tensor:
    """The clip re-rendered in each palette colour, shape and trajectory kept.
    # (K, C, T, H, W) in [-1, 1], K = len(COLOURS)"""
    obj = clip.scene.objects[0]
    scenes = [dataclasses.replace(clip.scene, objects=(dataclasses.replace(obj, colour=c),))
              for c in COLOURS]
    return torch.stack([frames_to_tensor(render_clip(s, len(clip.frames))) for s in scenes])


def frame_distances(x: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """||x_f - template_{k, f}||^2 summed over each frame f's pixels and channels, for x
    (B, C, T, H, W) and templates (B, K, C, T, H, W).  # (B, K, T)"""
    return (x[:, None] - templates).pow(2).sum(dim=(2, 4, 5))


def decode_frames(x_hat: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Each frame's colour: the index of the nearest template frame.  # (B, T)"""
    return frame_distances(x_hat, templates).argmin(dim=1)


def bayes_decisions(z: torch.Tensor, logsnr: float,
                    templates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior's most probable colour from z_t = alpha x + sigma eps when the clip is
    one of `templates` (uniform prior): from each frame alone (B, T) and from all frames (B,).
    The log-likelihood of colour k is -||z - alpha x_k||^2 / (2 sigma^2) (eq. 1)."""
    alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    log_lik = -frame_distances(z.double(), alpha * templates.double()) / (2 * sigma ** 2)
    return log_lik.argmax(dim=1), log_lik.sum(dim=2).argmax(dim=1)


def agreement(decisions: torch.Tensor) -> torch.Tensor:
    """Per clip, the share of frames that take the clip's most common decision.  # (B,)"""
    counts = torch.stack([torch.bincount(d, minlength=len(COLOURS)) for d in decisions])
    return counts.max(dim=1).values.double() / decisions.shape[1]


@torch.no_grad()
def pooling_table(models: dict[str, torch.nn.Module], clips: list[Clip],
                  logsnrs=LOGSNRS) -> list[dict]:
    """One row per level: Bayes per-frame and pooled accuracy, and per model the per-frame
    accuracy of x_hat as independent images and as a video, with the video's agreement."""
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    templates = torch.stack([recoloured(c) for c in clips])  # (B, K, C, T, H, W)
    truth = torch.tensor([COLOURS.index(c.scene.objects[0].colour) for c in clips])  # (B,)
    b = x.shape[0]
    rows = []
    for i, logsnr in enumerate(logsnrs):
        eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        level = torch.full((b,), logsnr)
        z = q_sample(x, level, eps)
        per_frame, pooled = bayes_decisions(z, logsnr, templates)
        row = {"logsnr": logsnr,
               "bayes_frame": (per_frame == truth[:, None]).double().mean().item(),
               "bayes_all": (pooled == truth).double().mean().item()}
        for name, model in models.items():
            for mode, n_video in (("images", torch.zeros(b, dtype=torch.long)), ("video", None)):
                denoise = model_denoiser(model.eval(), num_video_frames=n_video)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    x_hat = denoise(z, level).float()
                decisions = decode_frames(x_hat, templates)  # (B, T)
                row[f"{name}/{mode}"] = (decisions == truth[:, None]).double().mean().item()
                if mode == "video":
                    row[f"{name}/agree"] = agreement(decisions).mean().item()
        rows.append(row)
    return rows


def switched(high, low, logsnr_switch: float):
    """A denoiser that is `low` for inputs below log-SNR `logsnr_switch` and `high` from it up:
    which noise levels decide what a sample keeps (a sampler step's levels are one per batch)."""

    def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        level = float(torch.as_tensor(logsnr).reshape(-1)[0])
        return (low if level < logsnr_switch else high)(z, logsnr)

    return denoise


def unconditional_videos(high: VideoDiffusionPipeline, low: VideoDiffusionPipeline | None,
                         logsnr_switch: float, sampler: str, steps: int, n: int,
                         batch: int = 16) -> list[np.ndarray]:
    """n unconditional 16-frame samples (empty prompt, w = 0), seeded per batch of `batch` as
    `pipe(...)` seeds them (the same videos when low is None); with `low`, that model denoises
    the inputs below log-SNR logsnr_switch."""
    videos = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        g = torch.Generator().manual_seed(i)
        z = high.initial_noise(b, high.config.num_frames, g)  # (B, C, T, H, W)
        denoise = high.denoiser([""] * b)
        if low is not None:
            denoise = switched(denoise, low.denoiser([""] * b), logsnr_switch)
        x = sample(sampler, denoise, z, steps, generator=g).clamp(-1, 1).cpu()
        videos += [tensor_to_frames(v) for v in x]
    return videos


def sampling_row(videos: list[np.ndarray], sampler: str, steps: int) -> dict:
    """Identity kept per clip (nan where no object is tracked), the share of clips kept in every
    frame, mean acceleration and the share of clips with an object tracked."""
    kept = np.array([identity_kept(v) for v in videos])
    found = np.isfinite(kept)
    return {"sampler": sampler, "steps": steps, "identity": kept,
            "whole": float(np.mean(kept[found] == 1.0)),
            "acceleration": float(np.nanmean([motion_stats(v)["acceleration"] for v in videos])),
            "found": float(found.mean())}


def sampling_table(pipes: dict[str, VideoDiffusionPipeline], settings: list[tuple[str, int]],
                   n: int, logsnr_switch: float | None) -> dict[str, list[dict]]:
    """{label: one sampling_row per setting}: each model alone and, with logsnr_switch and two
    models, each of the two above the switch with the other below it."""
    runs = {name: (pipe, None) for name, pipe in pipes.items()}
    if logsnr_switch is not None:
        (a, pa), (b, pb) = pipes.items()
        runs[f"{a} above {logsnr_switch:g}, {b} below"] = (pa, pb)
        runs[f"{b} above {logsnr_switch:g}, {a} below"] = (pb, pa)
    return {label: [sampling_row(unconditional_videos(high, low, logsnr_switch or 0.0, sampler,
                                                      steps, n), sampler, steps)
                    for sampler, steps in settings]
            for label, (high, low) in tqdm(runs.items(), desc="unconditional samples")}


def parse_samplers(text: str) -> list[tuple[str, int]]:
    """"ancestral:24,pc:24" -> [("ancestral", 24), ("pc", 24)]."""
    settings = []
    for item in filter(None, text.split(",")):
        name, _, steps = item.partition(":")
        if not steps.isdigit() or int(steps) < 1:
            raise SystemExit(f"--samplers: {item!r} is not sampler:steps (e.g. ancestral:24)")
        settings.append((name, int(steps)))
    return settings


def markdown(names: list[str], rows: list[dict], samples: dict[str, list[dict]],
             n_clips: int, n_samples: int, command: str, minutes: float) -> str:
    head = ("| log-SNR | Bayes, one frame | Bayes, all frames | "
            + " | ".join(f"{n}: images | {n}: video | {n}: agree" for n in names) + " |")
    lines = [f"`{command}`: {n_clips} held-out one-object clips, fixed noise, empty prompt, "
             "bf16. Cells: the share of frames whose colour is decoded right (agree: decoded "
             "alike within the clip).", "", head,
             "|" + "---|" * (3 + 3 * len(names))]
    for r in rows:
        cells = [f"{r['logsnr']:+.0f}", f"{r['bayes_frame']:.2f}", f"{r['bayes_all']:.2f}"]
        for n in names:
            cells += [f"{r[f'{n}/images']:.2f}", f"{r[f'{n}/video']:.2f}",
                      f"{r[f'{n}/agree']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if samples:
        lines += ["", f"Unconditional samples ({n_samples} per row, empty prompt, w = 0, one "
                  "seed per batch of 16): identity kept (model card column), the share of "
                  "clips that keep it in every frame, mean acceleration (px/frame^2) and the "
                  "share of clips in which any object was tracked. Every model samples from the "
                  "same initial noise, so the last column pairs its identity kept with the first "
                  "model's clip by clip (mean and 95% t-interval).", "",
                  "| model | sampler | steps | identity kept [95%] | whole clip kept | accel. | "
                  "objects found | identity kept minus the first model's |",
                  "|---|---|---|---|---|---|---|---|"]
        first = next(iter(samples.values()))
        for n, srows in samples.items():
            lines += [f"| {n} | {s['sampler']} | {s['steps']} | "
                      f"{t_interval(s['identity']).text(2)} | {s['whole']:.2f} | "
                      f"{s['acceleration']:.2f} | {s['found']:.2f} | "
                      f"{t_interval(s['identity'] - f['identity']).text(2)} |"
                      for s, f in zip(srows, first, strict=True)]
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder; repeat to compare models on the same z_t")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--samplers", default="",
                        help="sampler:steps list for the unconditional sampling table")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--switch-at", type=float, default=None,
                        help="with two models and --samplers: also sample with each model above "
                             "this log-SNR and the other below it")
    parser.add_argument("--threads", type=int, default=2)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    settings = parse_samplers(args.samplers)
    if args.switch_at is not None and (len(args.model) != 2 or not settings):
        raise SystemExit("--switch-at needs exactly two --model folders and --samplers")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipes = {display_path(Path(m)): VideoDiffusionPipeline.from_pretrained(m)
             for m in args.model}
    size = {p.config.image_size for p in pipes.values()}
    if len(size) != 1:
        raise SystemExit(f"--model: the models differ in frame size ({sorted(size)})")
    clips = one_object_clips(args.clips, 16, size.pop())
    rows = pooling_table({n: p.model for n, p in pipes.items()}, clips)
    samples = sampling_table(pipes, settings, args.samples, args.switch_at) if settings else {}
    command = ("scripts/colour_pooling.py " + " ".join(f"--model {m}" for m in args.model)
               + f" --clips {args.clips}"
               + (f" --samplers {args.samplers} --samples {args.samples}" if settings else "")
               + (f" --switch-at {args.switch_at:g}" if args.switch_at is not None else "")
               + (f" --section {args.section}" if args.section != SECTION else "")
               + (f" --title {shlex.quote(args.title)}" if args.title != TITLE else ""))
    section = f"## {args.title}\n\n" + markdown(
        list(pipes), rows, samples, args.clips, args.samples, command, (time.time() - t0) / 60)
    write_section(Path(args.out), section, args.section)
    print(section)


if __name__ == "__main__":
    main()
