"""Does a model know which way time runs? The probe behind docs/recipe.md, "The direction of time".

    nice -n 5 .venv/bin/python scripts/time_symmetry.py [MODEL] [--clips 64] [--samples 32]

The U-Net's convolutions are space-only (1x3x3) and its temporal attention sees frame order only
through the learned relative position bias (`TemporalAttention.rel_bias`; it started at zero for
the shipped models). With a bias that is symmetric in the distance j - i, the network is exactly
time-reversal equivariant: reversing the frames of z_t reverses x_hat. The world's physics is
reversible too (constant velocity, elastic bounces), so without text the training loss gives
this symmetry no reason to break; only the direction words of the captions ("moving left") do.
The probe measures:

1. the bias of each temporal attention layer, split into its part that is odd in j - i (the
   only part that knows the direction of time) and its even part;
2. the reversal gap: x_hat(z_t) against the reversed x_hat of the reversed z_t (zero for an
   exactly time-symmetric model), beside the model's own denoising error;
3. the use of direction words: the denoising error with each caption's directions mirrored
   (left <-> right, up <-> down) minus with the true caption, paired by clip and noise, beside
   the same for a wrong colour (a word the model is known to use);
4. what a user sees: whether sampled objects move the way the caption says (text-to-video at the
   app's defaults), and whether predicted objects keep the direction of the given frames
   (`pipe.predict` from 4 frames at the library's defaults, empty prompt).

Writes the section "time-symmetry" of docs/recipe.md (`--out` elsewhere).
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from report.common import ROOT, display_path, write_section
from report.denoising import HELD_OUT, LOGSNRS, denoised
from report.stats import num, t_interval
from vdm_core.conditional import predict
from vdm_core.data import EVAL_SEEDS, PALETTE, Scene, caption, world_clip
from vdm_core.defaults import default_config
from vdm_core.metrics import DIRECTION_SPAN as SPAN
from vdm_core.metrics import direction_cosines, direction_shares, mirrored_caption
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.records import training_phases
from vdm_core.temporal_attention import TemporalAttention
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import TextPooling
from vdm_core.video_io import frames_to_tensor

GIVEN = 4  # prediction from 4 given frames (issue #14's protocol, scripts/model_card.py)


def recoloured(scene: Scene) -> str:
    """The scene's caption with every colour replaced by one the scene does not have."""
    spare = [c for c in PALETTE if c not in {o.colour for o in scene.objects}]
    return caption(Scene(tuple(replace(o, colour=spare[i]) for i, o in enumerate(scene.objects)),
                         scene.size))


def bias_parts(model) -> list[tuple[str, float, float]]:
    """(layer, RMS of the odd part, RMS of the even part) of each temporal attention layer's
    bias over the distances 1..T-1 of its training window."""
    d = torch.arange(1, model.config.num_frames)
    rows = []
    for name, layer in model.named_modules():
        if isinstance(layer, TemporalAttention):
            odd, even = layer.odd_even(d)  # (T - 1, heads)
            rows.append((name, odd.pow(2).mean().sqrt().item(), even.pow(2).mean().sqrt().item()))
    return rows


def conditioned_odd_parts(model, captions: list[str], logsnr: float) -> list[tuple[str, ...]]:
    """(layer, RMS of the odd bias that the conditioning adds, RMS of its change when the
    captions' directions are mirrored) at `logsnr`, over the distances 1..T-1, for each temporal
    attention layer with `odd_from_emb` (`--conditioned-odd-bias`)."""
    pos = torch.arange(model.config.num_frames)
    ahead = pos[None, :] > pos[:, None]  # (T, T): each distance d >= 1 once per pair
    embs = []
    for texts in (captions, [mirrored_caption(c) for c in captions]):
        states, mask = get_text_encoder().encode(texts)
        with torch.no_grad():
            emb = model.embed(torch.full((len(texts),), logsnr), states, mask)  # (B, E)
            embs.append(model.odd_embed(emb, states, mask))
    rows = []
    for name, layer in model.named_modules():
        if isinstance(layer, TemporalAttention) and hasattr(layer, "odd_from_emb"):
            buckets = layer.distance_buckets(len(pos))
            with torch.no_grad():
                odd, flipped = (layer.conditioned_odd(buckets, e)[..., ahead] for e in embs)
            rows.append((name, odd.pow(2).mean().sqrt().item(),
                         (odd - flipped).pow(2).mean().sqrt().item()))
    return rows


def held_out_clips(model, n: int) -> list:
    """The first n held-out world clips at the model's frame count and size."""
    return [world_clip(s, model.config.num_frames, model.config.image_size) for s in HELD_OUT[:n]]


def text_direction_lines(model, clips: list) -> list[str]:
    """How much of the captions' directions reaches the conditioning: RMS of the pooled text
    vector (`UNet3D.text_pool`) on the clips' captions and RMS of its change when their
    directions are mirrored or their colours changed; beside the same for the odd bias's own
    pooling where the model has one, a freshly initialised pooling (seed 0) and the encoder's own
    mean-pooled sentence embedding."""
    captions = [c.caption for c in clips]
    variants = (captions, [mirrored_caption(c) for c in captions],
                [recoloured(c.scene) for c in clips])
    encoder = get_text_encoder()
    encoded = [encoder.encode(texts) for texts in variants]  # (states, mask) each
    cfg = model.config
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = TextPooling(cfg.text_dim, cfg.text_heads, cfg.emb_dim)
    vectors = {"this model's pooling": model.text_pool, "the same pooling, untrained": fresh}
    if cfg.odd_bias_text_pool:
        vectors["this model's odd-bias pooling (`--odd-bias-text-pool`)"] = model.odd_text_pool
    rows = []
    for name, pool in vectors.items():
        with torch.no_grad():
            rows.append((name, [pool(states, mask.bool()) for states, mask in encoded]))
    rows.append(("the encoder's mean-pooled sentence embedding",
                 [encoder.embed_pooled(texts) for texts in variants]))
    lines = [f"How much of a caption's direction reaches the U-Net ({len(clips)} held-out "
             "captions; RMS of the vector and of its change):", "",
             "| text vector | RMS | directions mirrored | colours wrong | mirrored / wrong |",
             "|---|---|---|---|---|"]
    for name, (base, flipped, other) in rows:
        rms = [v.pow(2).mean().sqrt().item() for v in (base, flipped - base, other - base)]
        ratio = f"{rms[1] / rms[2]:.2f}" if rms[2] > 0 else "-"  # an untrained zero output
        lines.append(f"| {name} | {rms[0]:.4f} | {rms[1]:.4f} | {rms[2]:.4f} | {ratio} |")
    return [*lines, ""]


def x_hats(model, x: torch.Tensor, texts: list[str], reverse: bool = False) -> torch.Tensor:
    """`report.denoising.denoised` with the prompts `texts`, run in float32 so that a
    time-symmetric model's reversal gap is rounding only, (levels, B, C, T, H, W)."""
    states, mask = get_text_encoder().encode(texts)
    return denoised(model, x, states, mask, reverse=reverse)


def per_clip(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Mean squared difference per pixel, (levels, B)."""
    return (a - b).pow(2).mean(dim=(2, 3, 4, 5)).numpy()


def denoising_rows(model, clips: list) -> list[str]:
    """Table rows: per log-SNR level, the reversal gap (empty prompt, caption), the model's own
    error, and the error rise with mirrored directions and with wrong colours."""
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    captions = [c.caption for c in clips]
    true = x_hats(model, x, captions)
    cells = {
        "reversal gap, empty prompt": per_clip(x_hats(model, x, [""] * len(clips)),
                                               x_hats(model, x, [""] * len(clips), reverse=True)),
        "reversal gap, caption": per_clip(true, x_hats(model, x, captions, reverse=True)),
        "own error, caption": per_clip(true, x[None]),
    }
    for name, texts in (("directions mirrored", [mirrored_caption(t) for t in captions]),
                        ("colours wrong", [recoloured(c.scene) for c in clips])):
        cells[f"error rise, {name}"] = (per_clip(x_hats(model, x, texts), x[None])
                                        - cells["own error, caption"])
    rows = []
    for name, v in cells.items():
        mean = t_interval(v.mean(axis=0))
        rows.append(f"| {name} | {num(mean.mean)} [{num(mean.lo)}, {num(mean.hi)}] | "
                    + " | ".join(num(m) for m in v.mean(axis=1)) + " |")
    return rows


def share(cosines: np.ndarray) -> str:
    """Mean cosine and the shares of objects moving the right way, the opposite way, or not
    measurable."""
    d = direction_shares(cosines)
    return (f"mean cosine {d['mean']:+.2f}; {d['right']:.0%} the right way, "
            f"{d['opposite']:.0%} the opposite way (of {np.isfinite(cosines).sum()} objects "
            f"measured, {1 - d['measured']:.0%} not found or not moving)")


def sampled_lines(pipe: VideoDiffusionPipeline, n: int, seed: int = 0) -> list[str]:
    """Direction of sampled motion: text-to-video against the caption's directions, prediction
    against the given frames' motion, and the true clips' own score (the detector's ceiling)."""
    clips = [world_clip(s, pipe.config.num_frames, pipe.config.image_size) for s in EVAL_SEEDS[-n:]]
    config = default_config("generate").seeded(seed)
    made = pipe([c.caption for c in clips], config=config)
    generated = np.concatenate([direction_cosines(v, c.scene, 0, SPAN)
                                for v, c in zip(made.videos, clips, strict=True)])
    truth = np.concatenate([direction_cosines(c.frames, c.scene, 0, SPAN) for c in clips])
    given = torch.stack([frames_to_tensor(c.frames[:GIVEN]) for c in clips])  # (B, C, k, H, W)
    out = predict(pipe, given, GIVEN, pipe.config.num_frames,
                  config=default_config("predict").seeded(seed))
    predicted = np.concatenate([direction_cosines(v, c.scene, GIVEN - 1, GIVEN - 1 + SPAN)
                                for v, c in zip(out.videos, clips, strict=True)])
    return [
        f"- Text-to-video at the app's defaults ({config.steps} {config.sampler} steps, "
        f"w = {config.w:g}), direction over frames 0-{SPAN} against the caption: "
        f"{share(generated)}.",
        f"- The true clips, same measure: {share(truth)}.",
        f"- Prediction from {GIVEN} given frames (library defaults, empty prompt), direction over "
        f"frames {GIVEN - 1}-{GIVEN - 1 + SPAN} against the true motion at frame {GIVEN - 1}: "
        f"{share(predicted)}.",
    ]


def conditioned_lines(model, clips: list) -> list[str]:
    """The table of `conditioned_odd_parts` on the clips' captions at log-SNR -6 and 0, or
    nothing for a model without `--conditioned-odd-bias`."""
    if not model.config.conditioned_odd_bias:
        return []
    captions = [c.caption for c in clips]
    low, zero = (conditioned_odd_parts(model, captions, v) for v in (-6.0, 0.0))
    return [
        "The odd bias the conditioning adds (`--conditioned-odd-bias`), RMS over "
        f"{len(clips)} held-out captions, and RMS of its change when their directions are "
        "mirrored:", "",
        "| layer | logsnr -6 | mirrored change | logsnr 0 | mirrored change |",
        "|---|---|---|---|---|",
        *[f"| {a[0]} | {a[1]:.4f} | {a[2]:.4f} | {b[1]:.4f} | {b[2]:.4f} |"
          for a, b in zip(low, zero, strict=True)], "",
    ]


def section(model_dir: Path, clips: int, samples: int, threads: int) -> str:
    torch.set_num_threads(threads)
    t0 = time.time()
    pipe = VideoDiffusionPipeline.from_pretrained(model_dir, bf16=False)
    model = pipe.model
    steps = sum(p.get("step", 0) for p in training_phases(model_dir))
    layers = bias_parts(model)
    held_out = held_out_clips(model, clips)
    lines = [
        "## The direction of time", "",
        f"`{display_path(model_dir)}` ({steps:,} training steps over all phases). The U-Net's "
        "convolutions are space-only and its temporal attention knows frame order only through "
        "its relative position bias: with a bias even in j - i the network is exactly "
        "time-reversal equivariant. Until this probe the bias started at zero, i.e. exactly "
        "there (new models now start from a random bias). The world's physics is reversible, "
        "so only the captions' direction words reward leaving that point.", "",
        "Relative position bias of each temporal attention layer over distances 1-"
        f"{model.config.num_frames - 1}: RMS of its odd part (bias(d) - bias(-d))/2, the only "
        "part that tells forward from backward, and of its even part.", "",
        "| layer | odd part (direction of time) | even part (distance) |", "|---|---|---|",
        *[f"| {name} | {odd:.3f} | {even:.3f} |" for name, odd, even in layers], "",
        *conditioned_lines(model, held_out),
        *text_direction_lines(model, held_out),
        f"Denoising on {clips} held-out world clips with fixed noise (||.||^2 per pixel; mean and "
        "95% t-interval over clips, then the mean per log-SNR). Reversal gap: x_hat(z_t) "
        "against the reversed x_hat of the reversed z_t (0 for a time-symmetric model). Error "
        "rise: the denoising error with the changed caption minus with the true one, same clips "
        "and noise.", "",
        "| measure | mean over levels | " + " | ".join(f"logsnr {v:+g}" for v in LOGSNRS) + " |",
        "|---|---|" + "---|" * len(LOGSNRS),
        *denoising_rows(model, held_out), "",
        f"Sampled motion ({samples} held-out clips, the last of EVAL_SEEDS; a direction is the "
        f"cosine between an object's detected displacement over {SPAN} frames and its true "
        "velocity):", "",
        *(sampled_lines(pipe, samples) if samples else ["- not run (--samples 0)"]), "",
        f"Generated in {(time.time() - t0) / 60:.0f} min by `nice -n 5 .venv/bin/python "
        f"scripts/time_symmetry.py {display_path(model_dir)} --clips {clips} --samples "
        f"{samples}`.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, nargs="?", default=ROOT / "assets" / "model")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips for denoising")
    parser.add_argument("--samples", type=int, default=32, help="clips to sample (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recipe.md")
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.error(f"--out: folder {args.out.parent} does not exist")
    text = section(args.model, args.clips, args.samples, args.threads)
    if not args.out.exists():
        args.out.write_text("")
    write_section(args.out, text, "time-symmetry")
    print(text)


if __name__ == "__main__":
    main()
