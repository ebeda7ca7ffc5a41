"""Matplotlib figures for the app (built as `Figure` objects: no pyplot state, thread-safe)."""

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from vdm_core.attention import temporal_attention_mask
from vdm_core.schedule import alpha_sigma, logsnr_schedule_cosine

METHOD_COLOURS = {"replacement": "tab:orange", "reconstruction": "tab:blue",
                  "lowpass": "tab:orange", "autoregressive": "tab:orange", "cascade": "tab:blue",
                  "truth": "0.4"}
KEYFRAME_COLOUR = "tab:green"


def schedule_figure(num_points: int = 201) -> Figure:
    """logsnr(t) of the cosine schedule and the matching alpha_t, sigma_t (paper sec. 2)."""
    t = torch.linspace(0.0, 1.0, num_points, dtype=torch.float64)
    logsnr = logsnr_schedule_cosine(t)
    alpha, sigma = alpha_sigma(logsnr)
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(t, logsnr, color="tab:purple")
    left.axhline(0.0, color="0.7", lw=0.8)
    left.set(xlabel="t (1 = pure noise)", ylabel="log SNR = log(alpha² / sigma²)",
             title="Truncated cosine log-SNR schedule")
    right.plot(t, alpha, label="alpha_t (signal)", color="tab:blue")
    right.plot(t, sigma, label="sigma_t (noise)", color="tab:red")
    right.plot(t, alpha**2 + sigma**2, label="alpha² + sigma² = 1", color="0.6", ls="--")
    right.set(xlabel="t", ylabel="scale", title="z_t = alpha_t x + sigma_t eps", ylim=(0, 1.08))
    right.legend(loc="center left", fontsize=8)
    return fig


def attention_mask_figure(num_video_frames: int = 16, num_image_frames: int = 4) -> Figure:
    """Which frames each frame's temporal attention may attend to in joint video-image training."""
    total = num_video_frames + num_image_frames
    mask = temporal_attention_mask(total, torch.tensor([num_video_frames]), "cpu")[0]  # (T, T)
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.imshow(mask.numpy(), cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest")
    edge = num_video_frames - 0.5
    ax.axhline(edge, color="tab:red", lw=1)
    ax.axvline(edge, color="tab:red", lw=1)
    ax.set(xlabel="key frame", ylabel="query frame",
           title=f"Temporal attention: {num_video_frames} video frames\n"
                 f"+ {num_image_frames} independent images")
    ticks = np.arange(0, total, 4)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    return fig


def _mark_blocks(ax, block_starts: Sequence[int], label: str = "block start") -> None:
    """Dashed vertical lines where an extension block starts (none at frame 0)."""
    starts = sorted({int(s) for s in block_starts if s > 0})
    for index, start in enumerate(starts):
        ax.axvline(start - 0.5, color="0.45", ls="--", lw=0.9,
                   label=label if index == 0 else None)


def _mark_keyframes(ax, keyframes: Sequence[int]) -> None:
    """Small triangles along the bottom of the axes at the keyframes."""
    if len(keyframes):
        frames = np.asarray(keyframes, dtype=float)
        ax.scatter(frames, np.zeros_like(frames), marker="^", s=22, color=KEYFRAME_COLOUR,
                   transform=ax.get_xaxis_transform(), clip_on=False, zorder=3,
                   label="keyframes")


def _plot_series(ax, series: dict[str, np.ndarray], offset: int = 0) -> None:
    """One line per method: values at frames offset, offset + 1, ..."""
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        frames = np.arange(offset, offset + len(values))
        style = {"ls": ":"} if name == "truth" else {}
        ax.plot(frames, values, label=name, color=METHOD_COLOURS.get(name), lw=1.4, **style)


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs [first, last] of sorted frame indices."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _shade_given(ax, given: Sequence[int]) -> None:
    """Grey bands over the frames that were given to the model (not generated)."""
    for index, (first, last) in enumerate(_runs(given)):
        ax.axvspan(first - 0.5, last + 0.5, color="0.88",
                   label="given frames" if index == 0 else None)


def comparison_figure(frame_change: dict[str, np.ndarray],
                      error: dict[str, np.ndarray] | None,
                      block_starts: Sequence[int], given: Sequence[int],
                      error_label: str = "trajectory error (px)",
                      keyframes: Sequence[int] = (),
                      block_label: str = "block start") -> Figure:
    """Per-frame curves of two methods, with given frames shaded and block starts marked.

    frame_change: method -> (T - 1,) mean absolute change between frames t - 1 and t (plotted at
    t), where a spike at a block boundary is a visible seam. error: method -> (T,) per-frame error
    against the ground truth, or None when there is none. given: indices of the frames the model
    was given rather than generated. keyframes: frames marked along the x axis (the keyframe
    cascade's); block_label: the legend entry of the block-start lines.
    """
    rows = 2 if error else 1
    fig = Figure(figsize=(9, 2.6 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 1, sharex=True))
    _plot_series(axes[0], frame_change, offset=1)
    axes[0].set(ylabel="frame change", title="Change from the previous frame (spikes = seams)")
    if error:
        _plot_series(axes[1], error)
        axes[1].set(ylabel=error_label, title="Error against the ground truth")
    for ax in axes:
        _shade_given(ax, given)
        _mark_blocks(ax, block_starts, block_label)
        _mark_keyframes(ax, keyframes)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    axes[-1].set_xlabel("frame")
    return fig
