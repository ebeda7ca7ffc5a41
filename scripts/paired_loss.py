"""Two training runs on the same batches, their logged losses paired step by step. Writes a
section of docs/recipe.md.

    .venv/bin/python scripts/paired_loss.py --run "lr 4e-5=~/.cache/vdm/pair_minsnr" \
        --run "lr 3e-4=~/.cache/vdm/pair_lr3e4" [--bin 100] [--until 1000] \
        --section NAME --title TITLE

`vdm_core.train` draws the clips of step s from (`--seed`, s) and the log-SNR levels, noise and
conditioning dropout from one generator seeded by `--seed` that every step advances alike (and a
checkpoint restores), so two runs with the same seed and batch shape log their loss at step s on
the very same batch: what differs is only the weights, that is, the recipe change between them.

Each bin of --bin steps gives both runs' mean training loss (raw weights, one batch per logged
step), the second run's loss minus the first's with its 95% t-interval over the bin's logged
steps, and both runs' mean gradient norms. Reads `log.jsonl` of each run folder (the trainer
appends to it on resume); only steps that both runs logged are paired.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from report.common import ROOT, command_line, write_section
from report.stats import t_interval


def read_log(run: Path) -> dict[int, dict]:
    """{step: record} from a run folder's log.jsonl (a later record of a step wins)."""
    path = run.expanduser() / "log.jsonl"
    if not path.is_file():
        raise SystemExit(f"--run: {path} does not exist (a run folder holds log.jsonl)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in records if "loss" in r}


def paired_rows(first: dict[int, dict], second: dict[int, dict], bin_steps: int,
                until: int | None) -> list[dict]:
    """One row per bin of steps (1-bin, bin+1-2 bin, ...) over the steps both runs logged."""
    steps = sorted(s for s in first.keys() & second.keys() if until is None or s <= until)
    bins: dict[int, list[int]] = {}
    for s in steps:
        bins.setdefault((s - 1) // bin_steps, []).append(s)
    return [{"start": b * bin_steps + 1, "end": min((b + 1) * bin_steps, group[-1]),
             "n": len(group),
             "loss": [sum(run[s]["loss"] for s in group) / len(group) for run in (first, second)],
             "difference": t_interval([second[s]["loss"] - first[s]["loss"] for s in group]),
             "grad_norm": [sum(run[s]["grad_norm"] for s in group) / len(group)
                           for run in (first, second)]}
            for b, group in sorted(bins.items())]


def markdown(labels: Sequence[str], rows: list[dict]) -> str:
    """The table of paired_rows, with the runs named by `labels`."""
    a, b = labels
    lines = [f"| steps | n | {a}: loss | {b}: loss | {b} minus {a} [95%] | {a}: grad norm | "
             f"{b}: grad norm |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["difference"]
        interval = (f"{d.mean:+.5f} [{d.lo:+.5f}, {d.hi:+.5f}]" if d.n > 1
                    else f"{d.mean:+.5f}")
        lines.append(f"| {r['start']:,}-{r['end']:,} | {r['n']} | {r['loss'][0]:.5f} | "
                     f"{r['loss'][1]:.5f} | {interval} | {r['grad_norm'][0]:.3f} | "
                     f"{r['grad_norm'][1]:.3f} |")
    return "\n".join(lines)


def parse_run(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--run wants LABEL=FOLDER, got {text!r}")
    return label, Path(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=parse_run, action="append", required=True,
                        help="LABEL=FOLDER of a run; give exactly two, the reference first")
    parser.add_argument("--bin", type=int, default=100, help="steps per row")
    parser.add_argument("--until", type=int, default=None, help="the last step to pair")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recipe.md")
    parser.add_argument("--section", required=True, help="the markers' name in --out")
    parser.add_argument("--title", required=True, help="the section's heading")
    args = parser.parse_args(argv)
    if len(args.run) != 2:
        parser.error(f"--run: give exactly two runs, got {len(args.run)}")
    if args.bin < 1:
        parser.error("--bin must be at least 1")
    if not args.out.is_file():
        parser.error(f"--out: {args.out} does not exist (the section goes into a markdown file)")
    (la, first), (lb, second) = args.run
    rows = paired_rows(read_log(first), read_log(second), args.bin, args.until)
    if not rows:
        raise SystemExit(f"{first} and {second} logged no step in common")
    section = (f"## {args.title}\n\n`{command_line('scripts/paired_loss.py', argv)}`: the "
               "training losses of both runs at the same steps, hence on the same batches "
               f"(raw weights, one batch per logged step); interval: t over the bin's logged "
               f"steps.\n\n{markdown((la, lb), rows)}")
    write_section(args.out, section, args.section)
    print(section)


if __name__ == "__main__":
    main()
