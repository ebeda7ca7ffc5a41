"""The report's pictures: labelled frame strips and mean per-frame curves."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vdm_core.video_io import frame_strip


def _label(frames: np.ndarray, text: str, width: int = 120) -> np.ndarray:
    """A frame strip (H, W, 3) with a white label panel of `width` px on its left."""
    from PIL import Image, ImageDraw

    panel = Image.new("RGB", (width, frames.shape[0]), (255, 255, 255))
    ImageDraw.Draw(panel).text((4, 4), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(panel), frames], axis=1)


def save_strips(path: Path, rows: list[tuple[str, np.ndarray]], max_frames: int = 64,
                scale: int = 2, columns: int = 32) -> None:
    """Stack labelled frame strips of several videos (T, H, W, 3) into one png."""
    from PIL import Image

    strips = [_label(frame_strip(v, max_frames=max_frames, scale=scale, columns=columns), label)
              for label, v in rows]
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255)
              for s in strips]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(padded, axis=0)).save(path)


def save_curves(path: Path, curves: dict[str, dict[str, np.ndarray]],
                block_starts: Sequence[int], ylabels: dict[str, str]) -> None:
    """One panel per quantity: mean per-frame curves of each method, block starts marked.

    A "change" curve (T - 1,) is plotted at frames 1..T-1 (the change into each frame).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ylabels), figsize=(6 * len(ylabels), 3.2))
    for ax, (key, ylabel) in zip(np.atleast_1d(axes), ylabels.items(), strict=True):
        for name, values in curves[key].items():
            ax.plot(np.arange(1, len(values) + 1) if key == "change" else np.arange(len(values)),
                    values, label=name)
        for s in block_starts:
            ax.axvline(s, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("frame")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_curve(curves: Sequence[np.ndarray]) -> np.ndarray:
    """The nan-mean over samples of per-frame curves of one length."""
    stacked = np.stack(curves)
    counts = np.isfinite(stacked).sum(axis=0)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
