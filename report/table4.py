"""Joint video-image training (paper Table 4): the table scripts/table4_probe.py measured.

Training one model per arm takes about an hour of CPU, so the report does not retrain: it embeds
the probe's last table (docs/results/table4.md) and says how to make it where it is missing.
"""

from tqdm import tqdm

from report.common import DOCS, Settings
from vdm_core.pipeline import VideoDiffusionPipeline

TABLE = DOCS / "results" / "table4.md"


def jobs(s: Settings) -> int:
    return 0


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """The probe's table, or how to produce it."""
    if TABLE.exists():
        return TABLE.read_text()
    return ("## Joint video-image training (our analogue of the paper's Table 4)\n\n"
            "Not measured yet: run `nice -n 5 .venv/bin/python scripts/table4_probe.py` "
            "(it writes `docs/results/table4.md`), then the report again.\n")
