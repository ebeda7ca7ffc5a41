"""Which change to the recipe helps the model we ship? Equal-compute fine-tuning arms from it.

    nice -n 5 .venv/bin/python scripts/finetune_arms.py [--steps 320] [--threads 1]
        [--seed 8 --arms cond-drop-0-2,...]   # repeat some arms at another training seed

Every arm continues `assets/model` with `vdm_core.train` for the same number of steps on the same
data stream (batch 8 world clips, the same seed, so the same clips, noise and dropout draws in
every arm) and changes one thing against the control arm: the learning rate, the conditioning
dropout, the loss weighting, or temporal attention at full resolution (32x32, added with its
output at zero, so every arm starts from exactly the shipped function; once at the control's
learning rate, once with the added layers at 10x it, `vdm-train --added-lr-mult`). Each arm's
EMA weights are then scored by the paired held-out denoising error of `scripts/ship_check.py`
(`report.denoising.window_errors`): against the shipped model (is the continuation better than
where it started?) and against the control arm (is the change better than the plain
continuation at equal compute?). Writes the section between the `arms` markers of
docs/recipe.md.

Arms train in --work (default ~/.cache/vdm/arms), one folder each, and resume: an arm whose
checkpoint has reached --steps is not trained again, so a killed run loses at most one arm's
last 10 minutes. About 12 minutes per arm on one CPU thread at the default 320 steps.
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from report.common import ROOT, display_path, write_section
from report.denoising import window_errors
from report.stats import t_interval
from vdm_core.temporal_attention import TemporalAttention
from vdm_core.train import TrainConfig, train
from vdm_core.unet3d import UNet3D, UNetConfig

CONTROL = "control: lr 4e-5"
ARMS = {  # name: (TrainConfig changes, UNetConfig changes); the control first
    CONTROL: ({}, {}),
    "lr 3e-4 (the GPU phases' rate)": ({"lr": 3e-4}, {}),
    "cond-drop 0.2": ({"cond_drop": 0.2}, {}),
    "v_mse weighting": ({"weighting": "v_mse"}, {}),
    "temporal attention at 32x32": ({}, {"temporal_resolutions": (32,)}),
    "temporal attention at 32x32, added layers at 10x lr": (
        {"added_lr_mult": 10.0}, {"temporal_resolutions": (32,)}),
    "odd temporal bias 0.3 (a direction of time)": ({"break_time_symmetry": 0.3}, {}),
}
SCORED = ("world clips (start 0, frameskip 1)", "later windows (start 4..44, frameskip 1)")
SLUG = {name: "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
        for name in ARMS}
SEED = 7  # the training seed of the first set of arms (docs/recipe.md, section "arms")


def arm_configs(name: str, steps: int, work: Path, init: Path, model_base: UNetConfig,
                threads: int, seed: int = SEED) -> tuple[TrainConfig, UNetConfig]:
    """The training and model configs of one arm: the control's, with the arm's changes;
    model_base is the config of the weights in `init`, seed the training seed (clips, noise
    and dropout draws)."""
    out = work / (SLUG[name] if seed == SEED else f"{SLUG[name]}-seed{seed}")
    base = TrainConfig(out_dir=str(out), steps=steps, lr=4e-5, warmup_steps=20,
                       ema_decay=0.995, seed=seed, sample_every=0, threads=threads,
                       num_frames=model_base.num_frames, init_from=str(init),
                       export_dir=str(out / "export"))
    train_changes, model_changes = ARMS[name]
    return replace(base, **train_changes), replace(model_base, **model_changes)


def run_arm(name: str, steps: int, work: Path, init: Path, model_base: UNetConfig,
            threads: int, seed: int = SEED) -> tuple[UNet3D, float]:
    """Train (or resume, or skip when done) one arm; its EMA weights and training minutes."""
    cfg, model_cfg = arm_configs(name, steps, work, init, model_base, threads, seed)
    timing = Path(cfg.out_dir) / "train_minutes.txt"
    export = Path(cfg.export_dir)
    if not (timing.exists() and (export / "model.safetensors").exists()):
        started = time.time()
        train(cfg, model_cfg)
        timing.write_text(f"{(time.time() - started) / 60:.1f}\n")
    return UNet3D.from_pretrained(export), float(timing.read_text())


def added_layer_scale(arm: UNet3D, init: UNet3D) -> tuple[float, float] | None:
    """RMS of the output weights of the temporal attention layers an arm added to `init`, and of
    the temporal layers it already had (None when the arm added none): how far the zero-started
    layers have grown relative to trained ones."""
    had = {name for name, _ in init.named_modules()}
    new, old = [], []
    for name, module in arm.named_modules():
        if isinstance(module, TemporalAttention):
            (old if name in had else new).append(module.out.weight.detach().flatten())
    if not new:
        return None
    return tuple(float(torch.cat(w).pow(2).mean().sqrt()) for w in (new, old))


def verdict(means: list) -> str:
    """'better' when some interval lies below 0 and none above, 'worse' when one lies above,
    'no separated difference' otherwise."""
    if any(m.lo > 0 for m in means):
        return "worse"
    return "better" if any(m.hi < 0 for m in means) else "no separated difference"


def cell(diff: np.ndarray) -> str:
    """Mean over levels of a (levels, clips) paired difference, with its 95% interval."""
    return t_interval(diff.mean(axis=0)).text(4)


def section(errors: dict, minutes: dict, models: dict[str, UNet3D], steps: int, clips: int,
            init: Path, took: float, command: str, seed: int = SEED) -> str:
    """The markdown of the arms section from {(kind, prompt): {model: (L, B) errors}}; its
    arms are the models other than "shipped", the control first."""
    names = [name for name in models if name != "shipped"]
    columns = [(kind, prompt) for kind in SCORED for prompt in ("caption", "empty")]
    heads = " | ".join(f"{kind.split(' (')[0]}, {prompt}" for kind, prompt in columns)
    title = "## Recipe arms at equal compute, from the shipped model"
    if seed != SEED:
        title += f" (training seed {seed}: other clips, noise and dropout draws)"
    lines = [
        title, "",
        f"Each arm continued `{display_path(init)}` "
        f"for {steps} steps of batch {TrainConfig().batch_size} (the same clips, noise and "
        "dropout draws in every arm; warmup 20 steps; EMA decay 0.995) and changed one thing "
        f"against the control arm (lr 4e-5, cond-drop {TrainConfig().cond_drop}, "
        f"{TrainConfig().weighting} weighting). Cells: the arm's held-out denoising error minus "
        "the reference's, ||x_hat - x||^2 per pixel averaged over log-SNR -6, -3, 0, 3, 6, mean "
        f"and 95% t-interval over {clips} held-out clips paired by clip and noise (negative: the "
        "arm is better). 'caption' denoises with the clip's caption, 'empty' with the empty "
        "prompt (the unconditional model).", "",
        "Against the shipped model (did the continuation improve on where it started?):", "",
        f"| arm | train min | {heads} |", "|---|---|" + "---|" * len(columns)]
    for name in names:
        lines.append(f"| {name} | {minutes[name]:.0f} | " + " | ".join(
            cell(errors[c][name] - errors[c]["shipped"]) for c in columns) + " |")
    lines += ["", "Against the control arm (is the change better than the plain continuation at "
              "equal compute?); the low-SNR columns are log-SNR -3, where the diagnosis above "
              "found the unconditional model weak:", "",
              f"| arm | {heads} | world clips, empty, log-SNR -3 | verdict |",
              "|---|" + "---|" * (len(columns) + 2)]
    low = ("world clips (start 0, frameskip 1)", "empty")
    for name in names[1:]:
        diff = errors[low][name] - errors[low][CONTROL]
        means = [t_interval((errors[c][name] - errors[c][CONTROL]).mean(axis=0))
                 for c in columns]
        lines.append(f"| {name} | " + " | ".join(m.text(4) for m in means)
                     + f" | {t_interval(diff[1]).text(4)} | {verdict(means)} |")
    for name in names:
        scale = added_layer_scale(models[name], models["shipped"])
        if scale is not None:
            lines += ["", f"{name}: the added layers' output weights reached an RMS of "
                      f"{scale[0]:.5f}, against {scale[1]:.5f} for the model's trained temporal "
                      "layers. They start at zero; where this ratio is small, the arm has not yet "
                      "trained its new layers and its row cannot tell whether they help."]
    lines += ["", f"Generated in {took:.0f} min by `{command}`."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--clips", type=int, default=64, help="held-out clips per kind")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", type=Path, default=ROOT / "assets" / "model")
    parser.add_argument("--work", type=Path, default=Path("~/.cache/vdm/arms").expanduser())
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recipe.md")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"training seed; other than {SEED}, the arms train in their own "
                             "folders and write their own section (a repeat of the comparison)")
    parser.add_argument("--arms", default="",
                        help="comma-separated arm slugs to run beside the control (default: "
                             "all): " + ", ".join(SLUG[name] for name in list(ARMS)[1:]))
    args = parser.parse_args(argv)
    chosen = [v.strip() for v in args.arms.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(SLUG.values()))
    if unknown:
        parser.error(f"unknown arm {', '.join(unknown)}; the arms are "
                     + ", ".join(SLUG.values()))
    names = [name for name in ARMS if name == CONTROL or not chosen or SLUG[name] in chosen]
    t0 = time.time()
    models, minutes = {"shipped": UNet3D.from_pretrained(args.init)}, {}
    for name in names:
        print(f"arm: {name}", flush=True)
        models[name], minutes[name] = run_arm(name, args.steps, args.work, args.init,
                                              models["shipped"].config, args.threads, args.seed)
    torch.set_num_threads(args.threads)
    errors = {(kind, prompt): window_errors(models, kind, prompt, args.clips)
              for kind in SCORED for prompt in ("caption", "empty")}
    command = "nice -n 5 .venv/bin/python scripts/finetune_arms.py --steps " + str(args.steps)
    if args.seed != SEED:
        command += f" --seed {args.seed}"
    if chosen:
        command += f" --arms {args.arms}"
    text = section(errors, minutes, models, args.steps, args.clips, args.init.resolve(),
                   (time.time() - t0) / 60, command, args.seed)
    write_section(args.out, text, "arms" if args.seed == SEED else f"arms-seed{args.seed}")
    print(text)


if __name__ == "__main__":
    main()
