"""What a caption's direction word is worth to the ideal denoiser, at each noise level.

    nice -n 5 .venv/bin/python scripts/direction_value.py [--draws 256] [--out docs/recipe.md]

A trained model's use of direction words (scripts/time_symmetry.py) means little without the
ceiling: how much the denoising loss could gain from them at all. This computes it exactly for a
finite one-object world drawn from the bouncing-shapes world: clips of one object of the
caption's shape and colour, each placed, sized and sped as the world does it and moving in one of
the captions' 8 directions, rendered by the world's own `data.render_at` (bounces included).
Every clip h is equally likely, so for z_t = alpha x + sigma eps the posterior over them is
softmax_h(-||z_t - alpha x_h||^2 / (2 sigma^2)) and x_hat = sum_h w_h x_h is E[x | z_t] exactly
(the Bayes-optimal denoiser of eq. 2's loss). Restricting the hypotheses to the caption's
direction gives E[x | z_t, c]; to the opposite direction, what a mirrored caption asks for.

Per log-SNR, over test draws of x (hypotheses drawn uniformly) and noise: the ideal error without
the direction word, the gain from it, and the error rise when the direction is mirrored, the
ideal counterpart of time_symmetry's "error rise, directions mirrored". Writes the section
"direction-value" of docs/recipe.md (`--out` elsewhere).

`--pure-noise --model A B ...` instead compares what the models draw at pure noise with the
ideal prior mean E[x | c] (section "pure-noise"): its spatial structure, its change from "moving
left" to "moving right", and how much each model's x_hat moves with noise that says nothing.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from report.common import ROOT, command_line, display_path, write_section
from report.stats import t_interval
from vdm_core.data import DIRECTIONS, Scene, place_object, render_at, sample_radius
from vdm_core.diffusion import model_denoiser
from vdm_core.metrics import mirrored_caption
from vdm_core.schedule import alpha_sigma
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

LOGSNRS = (-12.0, -9.0, -6.0, -4.5, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0)
MODEL_MAX_LOGSNR = -3.0  # models are run up to here: above it the word is worth nothing
PURE_NOISE_LOGSNR = -12.0  # z_t says next to nothing about x: the ideal x_hat is E[x | c]
OPPOSITE = {name: mirrored_caption(name) for name in DIRECTIONS}


def hypotheses(shape: str, colour: str, count: int, num_frames: int, size: int,
               seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """`count` clips of one object of the caption's shape and colour, each drawn as the world
    draws it (`data.sample_radius`, then `data.place_object`: a uniform start in frame and a
    uniform speed) in a uniformly drawn direction, as flattened videos in [-1, 1], and the index
    into DIRECTIONS of each.  # (H, D), (H,)"""
    rng = np.random.default_rng(seed)
    names = list(DIRECTIONS)
    times = np.arange(num_frames, dtype=np.float64)
    videos, directions = [], rng.integers(len(names), size=count)
    for k in directions:
        obj = place_object(rng, shape, colour, sample_radius(rng, size), names[k], size)
        videos.append(frames_to_tensor(render_at(Scene((obj,), size), times)).flatten())
    return torch.stack(videos), directions


def log_likelihoods(z: torch.Tensor, videos: torch.Tensor, logsnr: float) -> torch.Tensor:
    """log p(z | x_h) = -||z - alpha x_h||^2 / (2 sigma^2) up to a per-row constant, for z (N, D)
    and equally likely `videos` (H, D) at `logsnr`.  # (N, H)"""
    alpha, sigma = (v.item() for v in alpha_sigma(torch.tensor(logsnr, dtype=torch.float64)))
    return (alpha * z @ videos.T - alpha**2 / 2 * videos.pow(2).sum(1)) / sigma**2


def posterior_means(logits: torch.Tensor, videos: torch.Tensor,
                    allowed: torch.Tensor | None = None) -> torch.Tensor:
    """E[x | z] from `log_likelihoods` (N, H), each row's hypotheses restricted to allowed[n]
    (N, H) where given.  # (N, D)"""
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=1) @ videos


def direction_errors(videos: torch.Tensor, directions: np.ndarray, draws: int, seed: int,
                     models: dict | None = None, shape: str = "", colour: str = "",
                     ) -> dict[float, dict[str, np.ndarray]]:
    """Per log-SNR: the ideal per-pixel error of each test draw without the direction word
    ("none"), with it ("caption") and with the opposite one ("mirrored"); for each of the
    {name: model} `models`, up to MODEL_MAX_LOGSNR, also its error on the same z_t given the
    caption "a <colour> <shape> moving <direction>" ((name, "caption")) and the mirrored one
    ((name, "mirrored")).  # (draws,) each"""
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(videos), (draws,), generator=generator)
    x = videos[pick]  # (N, D)
    own = torch.as_tensor(directions)[pick]  # (N,)
    names = list(DIRECTIONS)
    opposite = torch.tensor([names.index(OPPOSITE[n]) for n in names])[own]
    hyp = torch.as_tensor(directions)[None]  # (1, H)
    allowed = {"none": None, "caption": hyp == own[:, None], "mirrored": hyp == opposite[:, None]}
    captions = [f"a {colour} {shape} moving {names[k]}" for k in own.tolist()]
    prompts = {kind: get_text_encoder().encode(texts)
               for kind, texts in (("caption", captions),
                                   ("mirrored", [mirrored_caption(c) for c in captions]))
               } if models else {}
    out = {}
    for logsnr in tqdm(LOGSNRS, desc="log-SNR levels"):
        alpha, sigma = alpha_sigma(torch.tensor(logsnr))
        z = alpha * x + sigma * torch.randn(x.shape, generator=generator)
        logits = log_likelihoods(z, videos, logsnr)
        out[logsnr] = {name: (posterior_means(logits, videos, mask) - x).pow(2).mean(1).numpy()
                       for name, mask in allowed.items()}
        for name, model in (models or {}).items():
            if logsnr > MODEL_MAX_LOGSNR:
                continue
            cfg = model.config  # its frame count and size are the clips' (main checks)
            video = z.view(draws, 3, cfg.num_frames, cfg.image_size, cfg.image_size)
            for kind, (states, mask) in prompts.items():
                x_hat = model_x_hat(model, video, logsnr, states, mask)
                out[logsnr][name, kind] = (x_hat.flatten(1) - x).pow(2).mean(1).numpy()
    return out


@torch.no_grad()
def model_x_hat(model, z: torch.Tensor, logsnr: float, states: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """The model's x_hat of z (N, C, T, H, W) at `logsnr` given the encoded prompts (states,
    mask), 8 at a time."""
    parts = []
    for j in range(0, len(z), 8):
        denoise = model_denoiser(model, states[j:j + 8], mask[j:j + 8])
        parts.append(denoise(z[j:j + 8], torch.tensor(logsnr)).float())
    return torch.cat(parts)


def prior_mean_gap(videos: torch.Tensor, directions: np.ndarray,
                   num_frames: int) -> tuple[float, float, float]:
    """What the direction word changes in the ideal x_hat at pure noise: the RMS per pixel of
    E[x | direction] - E[x] over the clips, the RMS that sampling alone would give it, and the
    share of its square that is odd in time (shift(t) = -shift(T - 1 - t)), which a
    time-reversal equivariant network cannot output: at pure noise its x_hat is time-symmetric,
    and the mean squared error splits into the even and odd parts' squares."""
    mean = videos.mean(0)
    groups = [videos[torch.as_tensor(directions == k)] for k in range(len(DIRECTIONS))]
    shifts = torch.stack([g.mean(0) - mean for g in groups]).view(len(groups), 3, num_frames, -1)
    odd = (shifts - shifts.flip(2)) / 2  # (directions, C, T, H W)
    noise = np.sqrt(np.mean([g.var(0).mean().item() * (1 / len(g) - 1 / len(videos))
                             for g in groups]))
    return (shifts.pow(2).mean().sqrt().item(), float(noise),
            (odd.pow(2).sum() / shifts.pow(2).sum()).item())


def structure(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """A flattened video less each frame's and channel's mean over the image: where in the
    frame it is brighter or darker.  # (D,) -> (D,)"""
    v = video.reshape(3, num_frames, -1)
    return (v - v.mean(2, keepdim=True)).flatten()


def _rms(v: torch.Tensor) -> float:
    return v.pow(2).mean().sqrt().item()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a @ b / (a.norm() * b.norm()).clamp(min=1e-12)).item()


def pure_noise_rows(videos: torch.Tensor, directions: np.ndarray, num_frames: int, size: int,
                    models: dict, shape: str, colour: str, draws: int,
                    seed: int) -> list[tuple[str, float, float, float, float, float]]:
    """The ideal prior mean against what each of {name: model} draws at PURE_NOISE_LOGSNR, per
    row (name, RMS of the structure of E[x], its cosine with the ideal one, RMS of the
    right-minus-left change of that structure, its cosine with the ideal one, RMS spread of x_hat
    over `draws` noise draws). A model's E[x | c] is its x_hat averaged over the draws for
    "a <colour> <shape> moving right" and "... left"; the ideal one averages the clips."""
    names = list(DIRECTIONS)
    ideal = {d: structure(videos[torch.as_tensor(directions == names.index(d))].mean(0),
                          num_frames) for d in ("right", "left")}
    s_ideal = structure(videos.mean(0), num_frames)
    d_ideal = ideal["right"] - ideal["left"]
    rows = [("ideal", _rms(s_ideal), 1.0, _rms(d_ideal), 1.0, 0.0)]
    z = torch.randn(draws, 3, num_frames, size, size,
                    generator=torch.Generator().manual_seed(seed))  # (N, C, T, H, W)
    encoder = get_text_encoder()
    prompts = {d: encoder.encode([f"a {colour} {shape} moving {d}"] * draws)
               for d in ("right", "left")}
    for name, model in models.items():
        x_hats = {d: model_x_hat(model, z, PURE_NOISE_LOGSNR, *prompts[d]) for d in prompts}
        means = {d: x.mean(0).flatten() for d, x in x_hats.items()}
        s_model = structure((means["right"] + means["left"]) / 2, num_frames)
        d_model = structure(means["right"], num_frames) - structure(means["left"], num_frames)
        spread = np.sqrt(np.mean([x.var(0, correction=0).mean().item() for x in x_hats.values()]))
        rows.append((name, _rms(s_model), _cosine(s_model, s_ideal), _rms(d_model),
                     _cosine(d_model, d_ideal), float(spread)))
    return rows


def pure_noise_section(rows: list, setup: str, command: str, minutes: float) -> str:
    lines = ["| | structure of E[x]: RMS (cosine with the ideal) | right-minus-left change: RMS "
             "(cosine with the ideal) | x_hat's spread over the noise draws: RMS |",
             "|---|---|---|---|"]
    for name, s, s_cos, d, d_cos, spread in rows:
        label = name if name == "ideal" else f"`{name}`"
        lines.append(f"| {label} | {s:.4f} ({s_cos:+.2f}) | {d:.4f} ({d_cos:+.2f}) | "
                     f"{spread:.4f} |")
    return "\n".join([
        f"{setup} Each model's x_hat at log-SNR {PURE_NOISE_LOGSNR:g} for fixed noise draws, "
        "given the caption moving right and moving left, averaged over the draws, beside the "
        "ideal E[x | c] (the mean of the clips); \"structure\" is what is left of a mean "
        "video after subtracting each frame's and channel's mean over the image "
        "(`scripts/direction_value.py --pure-noise`).", "",
        *lines, "",
        f"Generated in {minutes:.0f} min by `{command}`.",
    ])


def section(errors: dict, names: list[str], gap: tuple[float, float, float], setup: str,
            command: str, minutes: float) -> str:
    head = ["log-SNR", "ideal error, no direction word", "gain from the direction word",
            "error rise, direction mirrored"]
    for name in names:
        head += [f"`{name}`: error, caption", f"`{name}`: error rise, mirrored"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for logsnr, e in errors.items():
        cells = [f"{logsnr:+g}", f"{e['none'].mean():.4f}",
                 t_interval(e["none"] - e["caption"]).text(6),
                 t_interval(e["mirrored"] - e["caption"]).text(6)]
        for name in names:
            if (name, "caption") in e:
                cells += [f"{e[name, 'caption'].mean():.4f}",
                          t_interval(e[name, "mirrored"] - e[name, "caption"]).text(6)]
            else:
                cells += ["", ""]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([
        "### What a direction word is worth to the ideal denoiser", "",
        f"{setup} Exact posterior means over every hypothesis (`scripts/direction_value.py`); "
        "per-pixel ||x_hat - x||^2, mean and 95% t-interval over test draws paired by draw and "
        "noise.", "",
        *rows, "",
        "At pure noise the ideal x_hat is the prior mean E[x | c]. The direction word changes "
        f"it by an RMS of {gap[0]:.4f} per pixel over these clips, against {gap[1]:.4f} that "
        "sampling alone gives: objects that start moving right leave the side of the left "
        "wall and crowd the right one after bouncing, so the caption's direction moves where "
        "the object is expected in the later frames even before z_t shows anything. "
        f"{gap[2]:.0%} of the square of that change is odd in time (it is the opposite at the "
        "last frame of what it is at the first), the part that a time-reversal equivariant "
        "network cannot output.", "",
        f"Generated in {minutes:.0f} min by `{command}`.",
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="circle")
    parser.add_argument("--colour", default="red")
    parser.add_argument("--clips", type=int, default=12000, help="equally likely clips")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--draws", type=int, default=256, help="test draws of x and noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, nargs="*", default=[],
                        help="also measure these models on the same z_t")
    parser.add_argument("--pure-noise", action="store_true",
                        help="compare what the models draw at pure noise with E[x | c] instead")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recipe.md")
    args = parser.parse_args(argv)
    if args.pure_noise and not args.model:
        raise SystemExit("--pure-noise compares models with the ideal prior mean: give --model")
    if args.draws < 2 or args.clips < 8 * args.draws:
        raise SystemExit("--draws must be at least 2 (an interval needs two) and --clips at "
                         "least 8 times --draws")
    models = {}
    for path in args.model:
        model = UNet3D.from_pretrained(path)
        if (model.config.num_frames, model.config.image_size) != (args.num_frames, args.size):
            raise SystemExit(f"{path} makes {model.config.num_frames} frames of "
                             f"{model.config.image_size} px: pass them as --num-frames/--size")
        models[display_path(path)] = model
    torch.set_num_threads(args.threads)
    start = time.time()
    videos, directions = hypotheses(args.shape, args.colour, args.clips, args.num_frames,
                                    args.size, args.seed)
    command = command_line("nice -n 5 .venv/bin/python scripts/direction_value.py", argv)
    setup = (f"The world's one-object clips of \"a {args.colour} {args.shape} moving ...\" "
             f"({args.num_frames} frames of {args.size}x{args.size}; start, speed and radius "
             f"drawn as the world draws them, 8 directions): {len(videos):,} equally likely "
             "clips")
    if args.pure_noise:
        setup += f"; {args.draws} noise draws."
        rows = pure_noise_rows(videos, directions, args.num_frames, args.size, models,
                               args.shape, args.colour, args.draws, args.seed)
        write_section(args.out, pure_noise_section(rows, setup, command,
                                                   (time.time() - start) / 60), "pure-noise")
        print(f"wrote {display_path(args.out)}")
        return
    errors = direction_errors(videos, directions, args.draws, args.seed, models, args.shape,
                              args.colour)
    setup += f", {args.draws} test draws among them."
    if models:
        setup += (" The model columns: each model on the same z_t, given the caption and the "
                  f"mirrored caption (up to log-SNR {MODEL_MAX_LOGSNR:g}).")
    gap = prior_mean_gap(videos, directions, args.num_frames)
    write_section(args.out, section(errors, list(models), gap, setup, command,
                                    (time.time() - start) / 60), "direction-value")
    print(f"wrote {display_path(args.out)}")


if __name__ == "__main__":
    main()
