"""The training batch shared by all data streams (kept tiny so every stream can import it)."""

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A training batch: `num_video_frames` video frames, then any independent image frames.

    `frameskip` is each example's stride between video frames, in source frames (None: 1).
    """

    video: torch.Tensor  # (B, 3, T + N, H, W) float in [-1, 1]
    captions: list[str]
    num_video_frames: int
    frameskip: torch.Tensor | None = None  # (B,) long
