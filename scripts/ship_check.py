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

from report.common import ROOT, command_line, display_path
from report.denoising import HELD_OUT, KINDS, LOGSNRS, window_errors
from report.stats import t_interval
from vdm_core.records import training_phases
from vdm_core.unet3d import UNet3D


def frameskip_use(model: UNet3D, n: int, right: dict[str, np.ndarray]) -> str:
    """Does a frameskip-conditioned model use its input? Its error on frameskip-1 and -4 windows
    (with captions) when told the other frameskip, minus `right[kind]`, its error on the same
    clips and noise when told the true one."""
    cells = []
    for kind, wrong in (("world clips (start 0, frameskip 1)", 4),
                        ("frameskip-4 windows (start 0)", 1)):
        told = window_errors({"m": model}, kind, "caption", n, told_frameskip=wrong)["m"]
        diff = told - right[kind]  # (levels, clips)
        levels = "/".join(f"{v:.4f}" for v in diff.mean(axis=1))
        cells.append(f"{kind}: {t_interval(diff.mean(axis=0)).text(4)} (by log-SNR "
                     f"{'/'.join(f'{v:g}' for v in LOGSNRS)}: {levels})")
    return ("Frameskip input: the candidate's error when told the other frameskip (1 <-> 4) "
            "minus when told the true one, same clips and noise (near zero: the model ignores "
            "the input): " + "; ".join(cells) + ".")


DEFAULT_BASELINE = ROOT / "assets" / "model"
DEFAULT_OUT = ROOT / "docs" / "ship_check.md"


def steps_of(path: Path) -> int:
    return sum(phase.get("step", 0) for phase in training_phases(path))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
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
    verdicts, captioned = [], {}
    for kind in KINDS:
        for prompts in ("caption", "empty"):
            errors = window_errors(models, kind, prompts, args.clips)
            base, cand = errors["baseline"], errors["candidate"]
            if prompts == "caption":
                captioned[kind] = cand
            diff = cand - base  # (L, B)
            mean = t_interval(diff.mean(axis=0))
            verdicts.append(mean.hi < 0)
            lines.append(f"| {kind} | {prompts} | {base.mean():.4f} | {mean.text(4)} | "
                         + " | ".join(t_interval(d).text(4) for d in diff) + " |")
            print(lines[-1], flush=True)
    lines += ["", f"Lower with a separated interval in {sum(verdicts)} of {len(verdicts)} rows."]
    if models["candidate"].config.frameskip_conditioning:
        lines += ["", frameskip_use(models["candidate"], args.clips, captioned)]
    command = command_line("scripts/ship_check.py", argv)
    lines += ["", f"Generated in {(time.time() - t0) / 60:.0f} min by `.venv/bin/python "
              f"{command}`.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
