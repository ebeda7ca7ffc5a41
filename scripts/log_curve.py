"""Training curves from runs' loss logs: the mean of chosen fields per block of steps.

    python scripts/log_curve.py RUN [RUN ...] [--field swap_rise] [--field loss] [--every 100]

RUN is a training folder (vdm-train's --out-dir, which holds log.jsonl) or an exported model
folder (which holds training_log.jsonl). Each row of the table is one block of `--every` steps
(a log line at step s belongs to the block that ends at the next multiple of `--every`), each
column one run and field: the mean over that block's log lines that carry the field. Printed,
and with --out also written as a section of that markdown file.
"""

import argparse
from pathlib import Path

import numpy as np

from report.common import command_line, display_path, write_section
from vdm_core.records import EXPORTED_LOG_NAME, LOG_NAME, read_jsonl


def run_log(run: Path) -> list[dict]:
    """The log lines of a training folder or an exported model folder."""
    for name in (LOG_NAME, EXPORTED_LOG_NAME):
        if (run / name).exists():
            return read_jsonl(run / name)
    raise SystemExit(f"{run} holds neither {LOG_NAME} (a training folder) nor "
                     f"{EXPORTED_LOG_NAME} (an exported model)")


def block_means(records: list[dict], field: str, every: int) -> dict[int, float]:
    """{block end step: mean of `field` over the records of steps end - every < step <= end}."""
    blocks: dict[int, list[float]] = {}
    for r in records:
        if field in r:
            end = -(-r["step"] // every) * every
            blocks.setdefault(end, []).append(r[field])
    return {end: float(np.mean(v)) for end, v in sorted(blocks.items())}


def curve_table(logs: dict[str, list[dict]], fields: list[str], every: int) -> str:
    """A markdown table: one row per block of steps, one column per (run, field)."""
    columns = {}
    for run, records in logs.items():
        for field in fields:
            means = block_means(records, field, every)
            if not means:
                raise SystemExit(f"no line of {run}'s log has the field {field!r}; it has: "
                                 f"{sorted({k for r in records for k in r})}")
            columns[f"{run}: {field}"] = means
    steps = sorted({s for means in columns.values() for s in means})
    head = "| steps | " + " | ".join(columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [f"| {s - every + 1}-{s} | "
            + " | ".join(f"{c[s]:.3g}" if s in c else "" for c in columns.values()) + " |"
            for s in steps]
    return "\n".join([head, rule, *rows])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="training or exported model folders")
    parser.add_argument("--field", action="append", help="a log field (repeat); default: loss")
    parser.add_argument("--every", type=int, default=100, help="steps per block")
    parser.add_argument("--out", help="a markdown file to write the table into as a section")
    parser.add_argument("--section", default="log-curve", help="the markers' name in --out")
    parser.add_argument("--title", default="Training curves", help="the section's heading")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be a positive number of steps, not {args.every}")
    runs = [Path(r).expanduser() for r in args.runs]
    logs = {display_path(run): run_log(run) for run in runs}
    table = curve_table(logs, args.field or ["loss"], args.every)
    section = (f"## {args.title}\n\n`{command_line('scripts/log_curve.py', argv)}`: the mean of "
               f"each field over the log lines of each block of {args.every} steps.\n\n{table}\n")
    print(section)
    if args.out:
        write_section(Path(args.out), section, args.section)


if __name__ == "__main__":
    main()
