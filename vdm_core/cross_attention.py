"""Cross-attention from every pixel to the caption's token states (docs/recipe.md, "Per-token
cross-attention: where the colour meets its shape").

The paper conditions on text through BERT embeddings "processed using attention pooling" into
one vector added into every residual block, and mentions no cross-attention: the same vector
reaches every pixel of every frame. A caption that names two objects then has to pass which
colour goes with which shape through one vector, and our probes found two-object samples
failing mostly by swapping colours between shapes ("Why samples fail their captions"). Here each
pixel queries the caption's tokens itself, so a pixel whose features say "triangle" can read
the token after "triangle"'s colour word. The layer is optional and zero-initialised
(`UNetConfig.cross_attention_resolutions`), like the other grown layers.
"""

import torch
from torch import nn

from vdm_core.layers import frame_norm, zero_init


class TextCrossAttention(nn.Module):
    """Multi-head attention of each pixel (query) over its sample's text tokens (keys, values).

    A learned null key and value are always present, so a row with no tokens (no caption, or one
    dropped for classifier-free guidance) attends to the null value alone, and a row with tokens
    may put weight on "none of them". Per-frame: frames never mix here. The output projection
    starts at zero: a model grown by this layer starts out computing what it did without it.
    """

    def __init__(self, channels: int, text_dim: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = frame_norm(channels)
        self.text_norm = nn.LayerNorm(text_dim)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(text_dim, 2 * channels)
        self.null_kv = nn.Parameter(torch.randn(2, channels) * 0.02)
        self.out = zero_init(nn.Linear(channels, channels))

    def keys(self, text_states: torch.Tensor, text_mask: torch.Tensor):
        """Keys and values of the tokens after the null one, and which may be attended to.
        # (B, heads, L + 1, d) twice, (B, 1, 1, L + 1) bool"""
        b, n, _ = text_states.shape
        c = self.null_kv.shape[1]
        kv = self.kv(self.text_norm(text_states))  # (B, L, 2 C)
        null = self.null_kv.to(kv.dtype).view(1, 1, 2 * c).expand(b, 1, 2 * c)
        kv = torch.cat([null, kv], dim=1).view(b, n + 1, 2, self.heads, c // self.heads)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L + 1, d)
        allowed = torch.cat([text_mask.new_ones(b, 1), text_mask], dim=1)  # (B, L + 1)
        return k, v, allowed[:, None, None, :]

    def attention(self, x: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor,
                  t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each pixel's attention weights over [null token, tokens] and the values they mix.
        x (B T, C, H, W) with t frames per sample.  # (B, heads, T HW, L + 1), (B, heads, L + 1, d)
        """
        bt, c, h, w = x.shape
        b = bt // t
        y = self.norm(x).view(b, t, c, h * w).transpose(2, 3).reshape(b, t * h * w, c)
        q = self.q(y).view(b, t * h * w, self.heads, c // self.heads).transpose(1, 2)
        k, v, allowed = self.keys(text_states.to(q.dtype), text_mask)
        scores = q @ k.transpose(-1, -2) * (c // self.heads) ** -0.5  # (B, heads, T HW, L + 1)
        return scores.masked_fill(~allowed, float("-inf")).softmax(-1), v

    def forward(self, x: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor,
                t: int) -> torch.Tensor:
        """x (B T, C, H, W) with t frames per sample, text_states (B, L, text_dim), text_mask
        (B, L) bool -> (B T, C, H, W)."""
        bt, c, h, w = x.shape
        b = bt // t
        weights, v = self.attention(x, text_states, text_mask, t)
        y = (weights @ v).transpose(1, 2).reshape(b, t * h * w, c)  # (B, T HW, C)
        y = self.out(y)
        return x + y.view(b, t, h * w, c).transpose(2, 3).reshape(bt, c, h, w)
