"""Temporal attention (paper sec. 3): attention over frames at each pixel, with a learned relative
position bias, and optionally an odd bias read from the conditioning (docs/recipe.md, "The
direction of time")."""

import torch
import torch.nn.functional as F
from torch import nn

from vdm_core.attention import packed_attention, relative_position_bucket
from vdm_core.layers import frame_norm, zero_init

REL_BIAS_STD = 0.3  # the scale of `grow.break_time_symmetry`'s kick, harmless there (recipe.md)


class TemporalAttention(nn.Module):
    """Self-attention over frames at each pixel, with a learned relative position bias per head.

    The bias is T5-style (one learned scalar per head and bucketed distance j - i) rather than
    Shaw's key/value embeddings: it depends only on relative distance, so it carries no absolute
    notion of time (the paper's reason for relative positions), it extends to 64 frames through
    the log-spaced buckets, and it is one additive term on the attention scores
    (`packed_attention`).

    The bias starts random (std REL_BIAS_STD), not at zero: the convolutions are space-only, so a
    bias even in j - i makes the whole network time-reversal equivariant, and in a reversible
    world training never leaves that point (docs/recipe.md, "The direction of time").

    With `emb_dim`, a zero-initialised linear map from a conditioning vector adds one more odd
    function of j - i per head (`odd_from_emb`): the caption, log-SNR and frameskip can then
    choose which way the frames are read, which the fixed bias cannot (docs/recipe.md).
    """

    def __init__(self, channels: int, head_dim: int, num_buckets: int, max_distance: int,
                 emb_dim: int | None = None):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.norm = frame_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.rel_bias = nn.Embedding(num_buckets, self.heads)
        nn.init.normal_(self.rel_bias.weight, std=REL_BIAS_STD)
        if emb_dim is not None:
            self.odd_from_emb = zero_init(nn.Linear(emb_dim, num_buckets * self.heads))
        self.out = zero_init(nn.Linear(channels, channels))

    def buckets(self, distances: torch.Tensor) -> torch.Tensor:
        """The bias bucket of each distance j - i (any shape, same shape out)."""
        return relative_position_bucket(distances, self.num_buckets, self.max_distance)

    def distance_buckets(self, t: int, device=None) -> torch.Tensor:
        """The bucket of j - i for query frame i (row) and key frame j (column).  # (T, T)"""
        pos = torch.arange(t, device=device)
        return self.buckets(pos[None, :] - pos[:, None])

    def odd_even(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bias at positive `distances` split into its part odd in j - i (the only part that
        tells the frames before from the frames after) and its even part.  # (D, heads) each"""
        ahead, behind = (self.rel_bias(self.buckets(s * distances)) for s in (1, -1))
        return (ahead - behind) / 2, (ahead + behind) / 2

    def conditioned_odd(self, buckets: torch.Tensor, odd_emb: torch.Tensor) -> torch.Tensor:
        """The odd function of j - i that `odd_from_emb` adds for conditioning vectors odd_emb
        (B, E), at the (T, T) bucketed distances `buckets`.  # (B, heads, T, T)"""
        table = self.odd_from_emb(F.silu(odd_emb)).view(-1, self.num_buckets, self.heads)
        odd = (table[:, buckets] - table[:, buckets.T]) / 2  # (B, T, T, heads)
        return odd.permute(0, 3, 1, 2)

    def bias(self, t: int, allowed: torch.Tensor | None, device, dtype,
             odd_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Additive attention bias; odd_emb (B, E) is needed when the layer has `odd_from_emb`.
        # (B or 1, 1, heads, T, T)"""
        buckets = self.distance_buckets(t, device)
        bias = self.rel_bias(buckets).permute(2, 0, 1)[None, None].to(dtype)  # (1, 1, h, T, T)
        if hasattr(self, "odd_from_emb"):
            if odd_emb is None:
                raise ValueError("this layer's bias depends on the conditioning "
                                 "(conditioned_odd_bias): pass odd_emb")
            bias = bias + self.conditioned_odd(buckets, odd_emb)[:, None].to(dtype)
        if allowed is not None:
            blocked = torch.zeros(allowed.shape, device=device, dtype=dtype)
            blocked = blocked.masked_fill(~allowed, float("-inf"))
            bias = bias + blocked[:, None, None]
        return bias

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None, t: int,
                odd_emb: torch.Tensor | None = None) -> torch.Tensor:
        """(B T, C, H, W) with T = t frames per sample, odd_emb (B, E) the conditioning of each
        sample's odd bias (needed with `odd_from_emb`) -> (B T, C, H, W)."""
        bt, c, h, w = x.shape
        b = bt // t
        y = self.norm(x).view(b, t, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        qkv = self.qkv(y.contiguous()).view(b, h * w, t, 3, self.heads, c // self.heads)
        bias = self.bias(t, allowed, x.device, qkv.dtype, odd_emb)
        y = self.out(packed_attention(qkv, bias))
        return x + y.view(b, h, w, t, c).permute(0, 3, 4, 1, 2).reshape(bt, c, h, w)
