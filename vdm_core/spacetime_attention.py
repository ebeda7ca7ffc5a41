"""Joint space-time attention: every pixel of every frame attends to every pixel of every frame of
its clip (docs/recipe.md, "A clip-wide identity path").

The paper factorizes attention into space and time (sec. 3) to keep its cost linear in the
number of frames. That factorization has a blind spot that this world shows: temporal attention
compares the frames at one pixel, so a moving object's colour in frame s reaches frame t only
through a background pixel, and the diagnosis found the denoiser decoding about half of the
colours that pooling the clip's frames allows at log-SNR -5. At the U-Net's coarsest resolution
a clip is 16 x 8 x 8 = 1,024 positions, where full attention is affordable, so this layer adds
it there as an optional, zero-initialised path (`UNetConfig.spacetime_resolutions`). At finer
grids, where the colour is still held ("Where the colour is lost"), the keys and values are
average-pooled to KV_SIZE x KV_SIZE per frame: every position still queries the whole clip, at a
quarter of full attention's cost at 16x16.
"""

import torch
import torch.nn.functional as F

from vdm_core.attention import ProjectedAttention, packed_attention

KV_SIZE = 8  # keys and values of a larger grid are average-pooled to this size per frame


def spacetime_mask(allowed: torch.Tensor, pixels: int, key_pixels: int | None = None):
    """The frame mask of joint video-image training (`temporal_attention_mask`, (B, T, T)) spread
    over every pixel of each frame: position (t, p) may attend to (s, q) when frame t may attend
    to frame s; keys have key_pixels per frame (default: pixels).  # (B, T P, T P_k) bool"""
    b, t, _ = allowed.shape
    key_pixels = key_pixels or pixels
    return allowed[:, :, None, :, None].expand(b, t, pixels, t, key_pixels).reshape(
        b, t * pixels, t * key_pixels)


def pools_keys(h: int, w: int) -> bool:
    """Whether the layer pools the keys and values of an h x w grid to KV_SIZE x KV_SIZE."""
    return h > KV_SIZE and h % KV_SIZE == 0 and w % KV_SIZE == 0


def pooled_keys(kv: torch.Tensor, t: int, h: int, w: int, size: int) -> torch.Tensor:
    """Keys and values kv (B, T H W, 2, heads, d) of a frame-major clip average-pooled over
    (H / size) x (W / size) blocks of each frame.  # (B, T size^2, 2, heads, d)"""
    b, _, two, heads, d = kv.shape
    fh, fw = h // size, w // size
    blocks = kv.view(b, t, size, fh, size, fw, two, heads, d)
    return blocks.mean(dim=(3, 5)).reshape(b, t * size * size, two, heads, d)


class SpaceTimeAttention(ProjectedAttention):
    """Multi-head self-attention over all T x H x W positions of a clip, with no position bias.

    Without a bias the layer treats a clip's positions as a set: it can gather an object's
    features from wherever the object is in each frame, which is what keeping a colour across a
    clip needs; where things are comes from the features, which the convolutions and the
    factorized attention compute. The output projection starts at zero, so a model grown by this
    layer starts out computing what it did without it. Independent image frames (frames
    >= num_video_frames) attend only to themselves, as in temporal attention.
    """

    def packed_qkv(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """The packed q/k/v of x (B T, C, H, W) over each clip's T HW positions, frame-major.
        # (B, T HW, 3, heads, C / heads)"""
        bt, c, h, w = x.shape
        y = self.norm(x).view(bt // t, t, c, h * w).transpose(2, 3).reshape(bt // t, -1, c)
        return self.qkv(y.contiguous()).view(bt // t, t * h * w, 3, self.heads, c // self.heads)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None, t: int,
                odd_emb: torch.Tensor | None = None) -> torch.Tensor:
        """(B T, C, H, W) with T = t frames per sample; allowed (B, T, T) or None (every frame
        sees every frame); odd_emb is unused (the signature of the U-Net's attention sites)
        -> (B T, C, H, W)."""
        bt, c, h, w = x.shape
        b = bt // t
        qkv = self.packed_qkv(x, t)  # (B, T HW, 3, heads, d)
        if pools_keys(h, w):
            y = self._pooled_attention(qkv, allowed, t, h, w)
        else:
            bias = None
            if allowed is not None:
                blocked = torch.zeros(b, t * h * w, t * h * w, device=x.device, dtype=qkv.dtype)
                blocked = blocked.masked_fill(~spacetime_mask(allowed, h * w), float("-inf"))
                bias = blocked[:, None]  # (B, 1, T HW, T HW)
            y = packed_attention(qkv, bias)  # (B, T HW, C)
        y = self.out(y)  # (B, T HW, C)
        return x + y.view(b, t, h * w, c).transpose(2, 3).reshape(bt, c, h, w)

    @staticmethod
    def _pooled_attention(qkv: torch.Tensor, allowed: torch.Tensor | None, t: int, h: int,
                          w: int) -> torch.Tensor:
        """Every position's query against the clip's keys and values pooled to KV_SIZE^2 per
        frame (`pooled_keys`); allowed (B, T, T) or None.  # (B, T HW, C)"""
        b, n, _, heads, d = qkv.shape
        kv = pooled_keys(qkv[:, :, 1:], t, h, w, KV_SIZE)  # (B, T KV^2, 2, heads, d)
        q = qkv[:, :, 0].transpose(1, 2)  # (B, heads, T HW, d)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T KV^2, d)
        mask = None
        if allowed is not None:
            mask = spacetime_mask(allowed, h * w, KV_SIZE * KV_SIZE)[:, None]  # (B, 1, N, N_k)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, T HW, d)
        return y.transpose(1, 2).reshape(b, n, heads * d)
