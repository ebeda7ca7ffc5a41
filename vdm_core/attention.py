"""Attention kernels of the U-Net: relative-position buckets and the temporal mask of joint
video-image training (sec. 3), packed multi-head attention with a written-out backward, and the
layers that the spatial and space-time attention share.
"""

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from vdm_core.layers import frame_norm, zero_init


def relative_position_bucket(distance: torch.Tensor, num_buckets: int, max_distance: int):
    """Bucket a signed frame distance j - i (T5 style): exact when small, log-spaced beyond.

    Half of the buckets are for each sign; within a half, distances below a quarter of the buckets
    get their own bucket, larger ones share log-spaced buckets up to `max_distance`, so a model
    trained on 16 frames still sees familiar buckets on 64 frames.
    """
    half = num_buckets // 2
    exact = half // 2
    sign_offset = (distance > 0).long() * half
    d = distance.abs()
    log_bucket = exact + (
        torch.log(d.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
    ).long()
    bucket = torch.where(d < exact, d, log_bucket.clamp(max=half - 1))
    return sign_offset + bucket


def temporal_attention_mask(num_frames: int, num_video_frames: torch.Tensor | None, device):
    """Allowed key frames for each query frame in temporal attention.  # (B, T, T) bool or None

    Frames [0, n) of a sample are one video and attend to each other; each frame >= n is an
    independent image and attends only to itself ("fixing the attention matrix", sec. 3).
    """
    if num_video_frames is None:
        return None
    idx = torch.arange(num_frames, device=device)
    n = num_video_frames.to(device).view(-1, 1, 1)
    in_video = (idx[None, :, None] < n) & (idx[None, None, :] < n)
    return in_video | (idx[:, None] == idx[None, :])[None]


class PackedAttention(torch.autograd.Function):
    """Multi-head softmax(q k^T / sqrt(d) + bias) v on a packed projection, backward written out.

    Forward: qkv (..., N, 3, heads, d) and an optional additive bias broadcastable to
    (..., heads, N, N) -> (..., N, heads d), ready for the output projection.

    Written out rather than left to autograd (or PyTorch's fused CPU attention, whose backward
    is several times slower on our many short sequences: 16 frames, 64 or 256 pixels) because
    reconstruction guidance runs this backward at every step: one copy to head-major layout in
    the forward, and in the backward the four matmuls write dq, dk and dv straight into one
    packed buffer. The softmax Jacobian uses the row sums of dO * O (N x d) instead of those of
    P * dP (N x N): (dP - rowsum(dO * O)) * P = (dP - rowsum(P * dP)) * P since O = P v.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        *lead, n, _, heads, d = qkv.shape
        dims = qkv.dim()
        perm = (dims - 3, *range(dims - 4), dims - 2, dims - 4, dims - 1)
        device = qkv.device.type
        # one dtype throughout, so the backward's matmuls match: autocast's, else qkv's
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) \
            else qkv.dtype
        qkv_h = qkv.permute(perm).to(dtype).contiguous()  # (3, ..., heads, N, d)
        q, k, v = qkv_h.unbind(0)
        q.mul_(d ** -0.5)  # scaling q (N x d), not the scores (N x N)
        scores = q @ k.transpose(-1, -2)  # (..., heads, N, N)
        if bias is not None:
            scores += bias
        p = torch.softmax(scores, dim=-1).to(dtype)  # CUDA autocast's softmax returns float32
        o = p @ v  # (..., heads, N, d)
        ctx.save_for_backward(qkv_h, p, o)
        ctx.perm = perm
        ctx.bias_shape = None if bias is None else bias.shape
        return o.transpose(-3, -2).reshape(*lead, n, heads * d)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        qkv_h, p, o = ctx.saved_tensors
        q, k, v = qkv_h.unbind(0)  # q scaled by 1 / sqrt(d)
        *lead, heads, n, d = q.shape
        d_o = grad.reshape(*lead, n, heads, d).transpose(-3, -2).contiguous()  # (..., h, N, d)
        d_qkv = torch.empty_like(qkv_h)
        dq, dk, dv = d_qkv.unbind(0)
        torch.matmul(p.transpose(-1, -2), d_o, out=dv)
        d_scores = d_o @ v.transpose(-1, -2)  # dP, then in place the softmax Jacobian: dS
        d_scores.sub_((d_o * o).sum(-1, keepdim=True)).mul_(p)
        torch.matmul(d_scores, k, out=dq)
        dq.mul_(d ** -0.5)
        torch.matmul(d_scores.transpose(-1, -2), q, out=dk)
        d_bias = None
        if ctx.needs_input_grad[1]:
            d_bias = d_scores.sum_to_size(ctx.bias_shape)
        inverse = sorted(range(len(ctx.perm)), key=ctx.perm.__getitem__)
        return d_qkv.permute(inverse), d_bias


def packed_attention(qkv: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention: qkv (..., N, 3, heads, d), bias (..., heads, N, N) -> (..., N, C)."""
    return PackedAttention.apply(qkv, bias)


class ProjectedAttention(nn.Module):
    """The parameters of an attention layer over `channels`: per-frame GroupNorm, a packed q/k/v
    projection and an output projection that starts at zero (the layer starts as the identity,
    since its output is added to its input)."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = frame_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))
