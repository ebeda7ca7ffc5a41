"""Paired held-out loss of a candidate model against the shipped one: the first half of the rule
"ship only when the paired held-out loss and the quality script both improve".

    nice -n 5 .venv/bin/python scripts/ship_check.py CANDIDATE [--baseline assets/model]

Both models denoise the same held-out clips at the same log-SNR levels with the same noise
(`report.denoising`), with their captions and with the empty prompt (the unconditional model that
guidance and every uploaded video use), so the per-clip differences are paired. Three kinds of
clip: the world clips the shipped model was trained on (frameskip 1, starting at frame 0),
windows that start later in the render (captioned with the motion at their start), and
frameskip-4 windows (a frameskip-conditioned model is told the frameskip; a model without the
input is not). Writes docs/ship_check.md; the second half of the rule is
`scripts/model_card.py` run on both models.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from report.common import display_path
from report.denoising import LOGSNRS, denoising_errors
from report.stats import t_interval
from vdm_core.data import EVAL_SEEDS, world_window
from vdm_core.records import training_phases
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = EVAL_SEEDS[:64]  # the recipe probe's held-out clips (docs/recipe.md) and more
KINDS = {  # name: (start of each window, frameskip)
    "world clips (start 0, frameskip 1)": (lambda i: 0, 1),
    "later windows (start 4..44, frameskip 1)": (lambda i: 4 + (i * 8) % 44, 1),
    "frameskip-4 windows (start 0)": (lambda i: 0, 4),
}


def errors_for(models: dict[str, UNet3D], kind: str, prompts: str,
               n: int) -> dict[str, np.ndarray]:
    """{name: (len(LOGSNRS), clips) denoising errors} of each model on the same n clips of one
    kind, with the clips' captions (prompts == "caption") or the empty prompt."""
    start, frameskip = KINDS[kind]
    cfg = next(iter(models.values())).config
    clips = [world_window(s, cfg.num_frames, cfg.image_size, start(i), frameskip)
             for i, s in enumerate(HELD_OUT[:n])]
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    text = [c.caption if prompts == "caption" else "" for c in clips]
    states, mask = get_text_encoder().encode(text)
    errors = {}
    for name, model in models.items():
        frameskip_arg = frameskip if model.config.frameskip_conditioning else None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            errors[name] = denoising_errors(model.eval(), x, states, mask,
                                            frameskip=frameskip_arg)
    return errors


def steps_of(path: Path) -> int:
    return sum(phase.get("step", 0) for phase in training_phases(path))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--baseline", type=Path, default=ROOT / "assets" / "model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ship_check.md")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, default=len(HELD_OUT), help="held-out clips")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    models = {"baseline": UNet3D.from_pretrained(args.baseline),
              "candidate": UNet3D.from_pretrained(args.candidate)}
    levels = " | ".join(f"logsnr {v:+g}" for v in LOGSNRS)
    lines = [
        "# Ship check: paired held-out loss", "",
        f"Candidate `{display_path(args.candidate)}` ({steps_of(args.candidate):,} training steps "
        f"over all phases) against baseline `{display_path(args.baseline)}` "
        f"({steps_of(args.baseline):,} steps). "
        f"Each cell: the candidate's denoising error minus the baseline's, ||x_hat - x||^2 per "
        f"pixel, mean and 95% t-interval over {args.clips} held-out clips paired by clip "
        "and noise (negative: the candidate is better). The mean column averages the levels; "
        "the baseline's own mean error is beside it.", "",
        f"| clips | prompt | baseline mean | difference, mean | {levels} |",
        "|---|---|---|---|" + "---|" * len(LOGSNRS),
    ]
    verdicts = []
    for kind in KINDS:
        for prompts in ("caption", "empty"):
            errors = errors_for(models, kind, prompts, args.clips)
            base, cand = errors["baseline"], errors["candidate"]
            diff = cand - base  # (L, B)
            mean = t_interval(diff.mean(axis=0))
            verdicts.append(mean.hi < 0)
            lines.append(f"| {kind} | {prompts} | {base.mean():.4f} | {mean.text(4)} | "
                         + " | ".join(t_interval(d).text(4) for d in diff) + " |")
            print(lines[-1], flush=True)
    lines += ["", f"Lower with a separated interval in {sum(verdicts)} of {len(verdicts)} rows.",
              "", f"Generated in {(time.time() - t0) / 60:.0f} min by `nice -n 5 .venv/bin/python "
              f"scripts/ship_check.py {args.candidate}`.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
