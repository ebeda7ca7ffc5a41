"""What every section shares: the run settings, held-out clips, the table writer, progress."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from report.stats import EMPTY, Cell, t_interval, wilson
from vdm_core.data import EVAL_SEEDS, Clip, world_clip
from vdm_core.defaults import DEFAULT_W_R, default_config
from vdm_core.outputs import PipelineStep, SamplingConfig, VideoOutput
from vdm_core.video_io import frames_to_tensor

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Each section draws its clips from its own block of EVAL_SEEDS.
SEED_BLOCKS = {"extension": 0, "cfg": 64, "long_video": 96, "prediction": 128, "super": 160,
               "interpolation": 192, "table4": 224}


@dataclass
class Settings:
    """What one report run samples."""

    samples: int = 8  # 4 could not separate the methods on seam jump (95% intervals)
    steps: int | None = None  # None: each task's default (defaults.TASK_DEFAULTS)
    frames: int = 64
    guidance_weight: float | None = None  # None: each task's default w
    ext_weights: tuple[float, ...] = (0.0, 2.0)
    w_r_grid: tuple[float, ...] = (5.0, DEFAULT_W_R, 50.0)
    cfg_weights: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    tuning_rows: bool = True
    sections: tuple[str, ...] = tuple(SEED_BLOCKS)
    seed: int = 0
    pictures: Path = DOCS / "results"


MOTION_LIMIT = (
    "**Why trajectory error does not separate the methods.** Both methods sample from the same "
    "model, and conditioning cannot give it motion it has not learned. Where the given frames "
    "pin each object's velocity, the constant-velocity row (the world's own physics carried on "
    "from the last two given frames) shows how small the error of a model that continues a "
    "motion would be; the model's rows drift far beyond it. The diagnosis in docs/recipe.md "
    "locates the drift: the error at the first generated frame is small (reconstruction "
    "guidance makes the new frames agree with the given ones, as the seam jump shows), then it "
    "grows steadily frame by frame, a velocity error of the model. Closing that gap is the "
    "model's job (issue #14), not the sampler's.")

QUICK = dict(samples=2, steps=8, w_r_grid=(DEFAULT_W_R,), tuning_rows=False)


def write_section(path: Path, section: str, name: str) -> None:
    """Put `section` between the markers `<!-- name:start -->` and `<!-- name:end -->` of the
    markdown file `path`, appending them at its end when they are not there yet."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    head = text[:text.index(start)] if start in text else text.rstrip() + "\n\n"
    tail = text[text.index(end) + len(end):] if end in text else "\n"
    path.write_text(f"{head}{start}\n{section}\n{end}{tail}")


def display_path(path: Path) -> str:
    """path relative to the repository root where it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def task_config(task: str, s: Settings, **overrides) -> SamplingConfig:
    """The task's default SamplingConfig with the run's steps and w where it sets them."""
    chosen = {"steps": s.steps, "w": s.guidance_weight}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    return default_config(task, **{**chosen, **overrides})


def seed_range(section: str, n: int) -> tuple[int, int]:
    """The [start, stop) indices into EVAL_SEEDS of a section's first n clips."""
    return SEED_BLOCKS[section], SEED_BLOCKS[section] + n


def eval_clips(section: str, n: int, num_frames: int, size: int) -> list[Clip]:
    """The first n held-out world clips of a section, num_frames frames of size x size."""
    start, stop = seed_range(section, n)
    return [world_clip(seed, num_frames, size) for seed in EVAL_SEEDS[start:stop]]


def batch(clips: Sequence[Clip], frames: slice) -> torch.Tensor:
    """The frames of each clip as a float batch (B, 3, T, H, W) in [-1, 1]."""
    return torch.stack([frames_to_tensor(c.frames[frames]) for c in clips])


@dataclass
class Row:
    """One table row: its label columns, its sample count and one Cell per metric."""

    labels: list[str]
    n: int
    cells: dict[str, Cell]


@dataclass
class Table:
    """A markdown table with a title, label columns and metric columns."""

    title: str
    label_names: list[str]
    metrics: list[tuple[str, str, int]]  # (key, header, digits)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as markdown; a cell with fewer values than the row's n says so, a metric
        the row lacks is "n/a"."""
        header = [*self.label_names, "n", *(h for _, h, _ in self.metrics)]
        lines = [f"### {self.title}", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [row.cells.get(key, EMPTY).text(d, row.n) for key, _, d in self.metrics]
            lines.append("| " + " | ".join([*row.labels, str(row.n), *cells]) + " |")
        return "\n".join(lines + [""] + self.notes + [""])


def summarise(labels: list[str], per_sample: Sequence[dict[str, float]],
              rates: Sequence[str] = ()) -> Row:
    """A row of cells over samples: Wilson intervals for the `rates` keys, t-intervals else."""
    keys = per_sample[0].keys() if per_sample else []
    return Row(labels, len(per_sample), {
        key: wilson([bool(s[key]) for s in per_sample]) if key in rates
        else t_interval([s[key] for s in per_sample])
        for key in keys
    })


class Progress:
    """A tqdm bar over the sampler steps of one job, driven by the PipelineStep callback; a
    job in stages (the cascade's keyframes, then interpolation) adds each stage's steps."""

    def __init__(self, label: str):
        self.bar = tqdm(desc=label, leave=False, unit="step")
        self.stage, self.offset = None, 0

    def __call__(self, step: PipelineStep) -> None:
        if step.stage != self.stage:
            self.stage, self.offset = step.stage, self.bar.n
        self.bar.total = self.offset + step.num_steps * step.num_blocks
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_job(label: str, outer: tqdm, fn: Callable[..., VideoOutput], *args,
            config: SamplingConfig, **kwargs) -> VideoOutput:
    """fn(*args, **kwargs, config=config) under its own progress bar; advances the outer bar."""
    progress = Progress(label)
    try:
        out = fn(*args, config=config.with_callback(progress), **kwargs)
    finally:
        progress.close()
    outer.update(1)
    outer.set_postfix_str(f"{label}: {out.info.get('seconds', 0):.0f} s")
    return out
