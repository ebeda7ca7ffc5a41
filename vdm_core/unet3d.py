"""The factorized space-time 3D U-Net of Video Diffusion Models (paper sec. 3, Fig. 1).

Every convolution is space-only (1x3x3); each spatial attention block (attention over H x W,
frames as batch) is followed by a temporal attention block (attention over frames, pixels as
batch) with a relative position bias. The log-SNR and the attention-pooled text vector (and,
optionally, the frameskip) form one conditioning embedding that is added into every residual
block; optionally (`cross_attention_resolutions`, not in the paper) pixels also attend to the
caption's token states (`TextCrossAttention`). Frames after `num_video_frames` are independent
images (joint video-image training): in temporal attention each attends only to itself.

Inside the network every activation is frame-major, (B T, C, H, W): a space-only convolution is
then a plain 2D convolution and a GroupNorm has per-frame statistics with no reshaping, so the
only layout changes are at the attention blocks and at the input and output. (Each avoided
transpose or reshape is an autograd node fewer in the backward pass of reconstruction guidance.)
"""

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vdm_core.attention import ProjectedAttention, packed_attention, temporal_attention_mask
from vdm_core.cross_attention import TextCrossAttention
from vdm_core.layers import SpaceConv, frame_norm, zero_init
from vdm_core.spacetime_attention import SpaceTimeAttention
from vdm_core.temporal_attention import TemporalAttention

CONFIG_NAME = "config.json"
# UNetConfig fields that add layers starting at zero, so saved weights can grow by them
GROWN_FIELDS = ("frameskip_conditioning", "conditioned_odd_bias", "odd_bias_text_pool",
                "temporal_resolutions", "spacetime_resolutions", "cross_attention_resolutions")
MAX_FRAMESKIP = 64  # the frameskip whose features sit where logsnr's at t = 1 do
WEIGHTS_NAME = "model.safetensors"
_BACKPROP_FRAMES: ContextVar[tuple[int, ...] | None] = ContextVar("backprop_frames", default=None)


@contextlib.contextmanager
def backprop_frames(frames: Sequence[int] | None) -> Iterator[None]:
    """A promise that only the U-Net's outputs at `frames` will be differentiated (a speed hint).

    Reconstruction guidance on known frames (eq. 7) differentiates ||x^a - x_hat^a||^2, a function
    of the outputs at the known frames only. The layers after the U-Net's last temporal attention
    act on each frame alone, so inside this context `UNet3D` keeps their autograd history for
    these frames only: outputs and those gradients are unchanged, and the backward pass skips
    the other frames' (all-zero) share of the full-resolution layers. Gradients of outputs at
    other frames are incomplete inside the context. None means no promise.
    """
    token = _BACKPROP_FRAMES.set(None if frames is None else tuple(int(f) for f in frames))
    try:
        yield
    finally:
        _BACKPROP_FRAMES.reset(token)


@dataclass
class UNetConfig:
    """Hyperparameters of the U-Net (defaults: the model we train and ship, 3.3M parameters)."""

    channels: int = 3
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (16, 8)
    head_dim: int = 32
    emb_mlp_layers: int = 2
    dropout: float = 0.0
    text_dim: int = 384
    text_heads: int = 4
    rel_pos_buckets: int = 32
    rel_pos_max_distance: int = 64
    image_size: int = 32
    num_frames: int = 16
    parameterization: str = "v"
    frameskip_conditioning: bool = False
    conditioned_odd_bias: bool = False  # TemporalAttention.odd_from_emb (docs/recipe.md)
    odd_bias_text_pool: bool = False  # the odd bias reads its own text pooling (docs/recipe.md)
    temporal_resolutions: tuple[int, ...] = ()  # temporal attention alone (no spatial) here
    spacetime_resolutions: tuple[int, ...] = ()  # joint space-time attention added here
    cross_attention_resolutions: tuple[int, ...] = ()  # per-token text cross-attention here

    def __post_init__(self) -> None:
        if self.odd_bias_text_pool and not self.conditioned_odd_bias:
            raise ValueError("odd_bias_text_pool (--odd-bias-text-pool) feeds the conditioned "
                             "odd bias: it needs conditioned_odd_bias (add --conditioned-odd-bias)")

    @property
    def emb_dim(self) -> int:
        return 4 * self.base_channels

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        """The config of a saved dict; fields it lacks (older config.json files) keep their
        defaults, so a model saved before `frameskip_conditioning` existed loads with it off."""
        d = dict(d)
        for key in ("channel_mults", "attn_resolutions", "temporal_resolutions",
                    "spacetime_resolutions", "cross_attention_resolutions"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def logsnr_features(logsnr: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of logsnr after the map logsnr -> arctan(exp(-logsnr / 2)) / (pi / 2).

    The map sends logsnr in [-20, 20] to [0, 1] (it is t on the cosine schedule), so the
    sinusoids are spread evenly over the schedule.  # (B,) -> (B, dim)
    """
    u = torch.atan(torch.exp(-0.5 * logsnr.float())) / (0.5 * math.pi) * 1000.0
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=logsnr.device) / half)
    angles = u[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def frameskip_features(frameskip: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of log(frameskip), scaled so frameskips 1..MAX_FRAMESKIP span [0, 1000]
    like `logsnr_features`' schedule position.  # (B,) -> (B, dim)

    The paper trains text-to-video models on clips at frameskip 1 and 4 (Table 5) without saying
    whether the frameskip is an input; here one model takes it (the stride between its frames, in
    frames of the world) as a conditioning input, like logsnr.
    """
    u = torch.log(frameskip.float()) / math.log(MAX_FRAMESKIP) * 1000.0
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=frameskip.device) / half)
    angles = u[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, conditioning embedding added in between (Wide ResNet block)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = frame_norm(c_in)
        self.conv1 = SpaceConv(c_in, c_out)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = frame_norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(SpaceConv(c_out, c_out))
        self.skip = SpaceConv(c_in, c_out, kernel=1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B T, C_in, H, W), emb (B T, E) the per-frame conditioning -> (B T, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B T, C, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SpatialAttention(ProjectedAttention):
    """Self-attention over the H x W positions of each frame (frames treated as batch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B T, C, H, W) -> (B T, C, H, W)."""
        bt, c, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(bt, h * w, c)  # (B T, HW, C)
        # reshape can return a strided view here; on one, nn.Linear runs as a batched matmul over a
        # copied, batch-expanded weight (about 15% of a U-Net step), on a contiguous input as one.
        qkv = self.qkv(y.contiguous()).view(bt, h * w, 3, self.heads, c // self.heads)
        y = self.out(packed_attention(qkv))  # (B T, HW, C)
        return x + y.view(bt, h, w, c).permute(0, 3, 1, 2)


class AttentionBlock(nn.Module):
    """Spatial attention followed by temporal attention (one 'attention' site of the U-Net)."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.spatial = SpatialAttention(channels, cfg.head_dim)
        self.temporal = temporal_attention(channels, cfg)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None, t: int,
                odd_emb: torch.Tensor | None) -> torch.Tensor:
        """(B T, C, H, W), odd_emb (B, E) or None (see `TemporalAttention.forward`)
        -> (B T, C, H, W)."""
        return self.temporal(self.spatial(x), allowed, t, odd_emb)


def temporal_attention(channels: int, cfg: UNetConfig) -> TemporalAttention:
    """The temporal attention of a `cfg` model at a site with `channels` channels."""
    return TemporalAttention(channels, cfg.head_dim, cfg.rel_pos_buckets, cfg.rel_pos_max_distance,
                             cfg.emb_dim if cfg.conditioned_odd_bias else None)


class TextPooling(nn.Module):
    """Multi-head attention pooling of text token states into one conditioning vector.

    A learned query per head attends over the masked tokens (the paper's "attention pooling" of
    the text encoder's embeddings). Rows whose mask is all False (no text, or dropped for
    classifier-free guidance) get the learned null embedding instead.
    """

    def __init__(self, text_dim: int, heads: int, emb_dim: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.randn(heads, text_dim // heads) * 0.02)
        self.kv = nn.Linear(text_dim, 2 * text_dim)
        self.out = nn.Linear(text_dim, emb_dim)
        self.null = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = states.shape
        k, v = self.kv(states).view(b, n, 2, self.heads, d // self.heads).unbind(2)  # (B, L, h, dh)
        scores = torch.einsum("blhd,hd->bhl", k, self.query) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        has_text = mask.any(dim=1)  # (B,)
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        pooled = torch.einsum("bhl,blhd->bhd", weights, v).reshape(b, d)
        return torch.where(has_text[:, None], self.out(pooled), self.null.to(pooled.dtype))


class UNet3D(nn.Module):
    """x_hat / eps / v predictor for videos (B, C, T, H, W), conditioned on logsnr and text."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch, emb = cfg.base_channels, cfg.emb_dim
        layers = [nn.Linear(ch, emb)]
        for _ in range(cfg.emb_mlp_layers - 1):
            layers += [nn.SiLU(), nn.Linear(emb, emb)]
        self.logsnr_mlp = nn.Sequential(*layers)
        if cfg.frameskip_conditioning:
            # last layer zero: a model given this input starts out computing what it did without
            self.frameskip_mlp = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(),
                                               zero_init(nn.Linear(emb, emb)))
        self.text_pool = TextPooling(cfg.text_dim, cfg.text_heads, emb)
        if cfg.odd_bias_text_pool:
            # random query and values (they pass direction words on, docs/recipe.md), output
            # zero: the model starts out computing what it did without
            self.odd_text_pool = TextPooling(cfg.text_dim, cfg.text_heads, emb)
            zero_init(self.odd_text_pool.out)
        self.conv_in = SpaceConv(cfg.channels, ch)

        self.down = nn.ModuleList()
        skips, res = [ch], cfg.image_size
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._stage(ch, mult * cfg.base_channels, res))
                ch = mult * cfg.base_channels
                skips.append(ch)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(SpaceConv(ch, ch, stride=2))
                skips.append(ch)
                res //= 2

        self.mid = nn.ModuleList([ResBlock(ch, ch, emb, cfg.dropout), AttentionBlock(ch, cfg),
                                  ResBlock(ch, ch, emb, cfg.dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(self._stage(ch + skips.pop(), mult * cfg.base_channels, res))
                ch = mult * cfg.base_channels
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             SpaceConv(ch, ch)))
                res *= 2

        self.norm_out = frame_norm(ch)
        self.conv_out = zero_init(SpaceConv(ch, cfg.channels))
        attention = (AttentionBlock, TemporalAttention, SpaceTimeAttention, TextCrossAttention)
        has_attention = [any(isinstance(m, attention) for m in stage.modules())
                         for stage in self.up]
        # self.up[tail_start:] are lone ResBlocks and resamplers (`_tail`), and with the output
        # layers they act on each frame alone (`backprop_frames`)
        self.tail_start = max((i + 1 for i, a in enumerate(has_attention) if a), default=0)

    def _stage(self, c_in: int, c_out: int, res: int) -> nn.ModuleList:
        blocks = [ResBlock(c_in, c_out, self.config.emb_dim, self.config.dropout)]
        if res in self.config.attn_resolutions:
            blocks.append(AttentionBlock(c_out, self.config))
        elif res in self.config.temporal_resolutions:
            blocks.append(temporal_attention(c_out, self.config))
        if res in self.config.spacetime_resolutions:
            blocks.append(SpaceTimeAttention(c_out, self.config.head_dim))
        if res in self.config.cross_attention_resolutions:
            blocks.append(TextCrossAttention(c_out, self.config.text_dim, self.config.head_dim))
        return nn.ModuleList(blocks)

    def _text(self, text_states, text_mask, b: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(text_states, boolean text_mask), a masked-out token per row where text_states is
        None.  # (B, L, text_dim), (B, L)"""
        if text_states is None:
            text_states = torch.zeros(b, 1, self.config.text_dim, device=device)
            text_mask = torch.zeros(b, 1, dtype=torch.bool, device=device)
        return text_states, text_mask.bool()

    def embed(self, logsnr: torch.Tensor, text_states, text_mask,
              frameskip: torch.Tensor | int | None = None) -> torch.Tensor:
        """The conditioning embedding: MLP(logsnr features) + attention-pooled text, plus
        MLP(frameskip features) when `config.frameskip_conditioning`.  # (B, E)"""
        emb = self.logsnr_mlp(logsnr_features(logsnr, self.config.base_channels))
        b = logsnr.shape[0]
        text_states, text_mask = self._text(text_states, text_mask, b, logsnr.device)
        emb = emb + self.text_pool(text_states.to(emb.dtype), text_mask)
        if not self.config.frameskip_conditioning:
            return emb
        skip = torch.as_tensor(1 if frameskip is None else frameskip, device=logsnr.device)
        features = frameskip_features(skip.expand(b), self.config.base_channels)  # (B, ch)
        return emb + self.frameskip_mlp(features)

    def odd_embed(self, emb: torch.Tensor, text_states, text_mask) -> torch.Tensor | None:
        """What the conditioned odd biases read (`config.conditioned_odd_bias`): the embedding emb
        (B, E), plus the vector of the odd bias's own text pooling with
        `config.odd_bias_text_pool`; None for a model without them.  # (B, E)"""
        if not self.config.conditioned_odd_bias:
            return None
        if not self.config.odd_bias_text_pool:
            return emb
        text_states, text_mask = self._text(text_states, text_mask, emb.shape[0], emb.device)
        return emb + self.odd_text_pool(text_states.to(emb.dtype), text_mask)

    def forward(self, z: torch.Tensor, logsnr: torch.Tensor, text_states=None, text_mask=None,
                num_video_frames: torch.Tensor | None = None,
                frameskip: torch.Tensor | int | None = None) -> torch.Tensor:
        """Predict eps or v (per `config.parameterization`) for z (B, C, T, H, W) at logsnr (B,).

        text_states (B, L, text_dim) and text_mask (B, L) come from the text encoder; a row with
        no True in its mask is unconditional. num_video_frames (B,) marks frames >= n as
        independent images; a value of 0 makes every frame an image (no temporal mixing).
        frameskip (B,) or int: world frames between consecutive video frames (None: 1); a model
        without `config.frameskip_conditioning` (trained at frameskip 1) ignores it.
        """
        b, _, t, height, width = z.shape
        emb = self.embed(logsnr, text_states, text_mask, frameskip)  # (B, E)
        odd_emb = self.odd_embed(emb, text_states, text_mask)  # (B, E) or None
        emb = emb.repeat_interleave(t, dim=0)  # (B T, E)
        allowed = temporal_attention_mask(t, num_video_frames, z.device)
        text = self._text(text_states, text_mask, b, z.device)  # for TextCrossAttention

        h = self.conv_in(z.transpose(1, 2).reshape(b * t, -1, height, width))  # (B T, C, H, W)
        hs = [h]
        for stage in self.down:
            h = self._run_stage(stage, h, emb, odd_emb, allowed, t, text)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb), allowed, t, odd_emb), emb)
        for stage in self.up[:self.tail_start]:
            h = self._run_stage(stage, self._with_skip(stage, h, hs), emb, odd_emb, allowed, t,
                                text)
        frames = _BACKPROP_FRAMES.get()
        if frames is None or not torch.is_grad_enabled():
            out = self._tail(h, hs, emb)
        else:
            out = self._tail_for_frames(h, hs, emb, t, frames)
        return out.view(b, t, *out.shape[1:]).transpose(1, 2)  # (B, C, T, H, W)

    @staticmethod
    def _run_stage(stage: nn.Module, h, emb, odd_emb, allowed, t: int, text) -> torch.Tensor:
        """One entry of self.down / self.up: a ResBlock (+ attention) stage or a resampler. emb
        (B T, E) goes to the ResBlock, odd_emb (B, E) or None to the attention, text (states
        (B, L, D), bool mask (B, L)) to the text cross-attention."""
        if not isinstance(stage, nn.ModuleList):
            return stage(h)
        h = stage[0](h, emb)
        for block in stage[1:]:
            if isinstance(block, TextCrossAttention):
                h = block(h, *text, t)
            else:
                h = block(h, allowed, t, odd_emb)
        return h

    @staticmethod
    def _with_skip(stage: nn.Module, h, hs: list) -> torch.Tensor:
        """h with the last skip connection of hs (popped) concatenated on channels, for a
        ResBlock stage of self.up; h itself for a resampler.  # (B T, C, H, W)"""
        return torch.cat([h, hs.pop()], dim=1) if isinstance(stage, nn.ModuleList) else h

    def _tail(self, h, hs: list, emb) -> torch.Tensor:
        """self.up[self.tail_start:] and the output layers on frame-major h, popping skips from
        hs. These stages are lone ResBlocks and resamplers (no attention), so each frame is
        computed alone from h, its skips and emb (B T, E).  # (B T, C_out, H, W)"""
        for stage in self.up[self.tail_start:]:
            h = self._with_skip(stage, h, hs)
            h = stage[0](h, emb) if isinstance(stage, nn.ModuleList) else stage(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _tail_for_frames(self, h, hs: list, emb, t: int, frames: tuple[int, ...]):
        """The per-frame tail (self.up[self.tail_start:] and the output layers) with autograd
        history only for the rows of `frames` (see `backprop_frames`); the other rows run without
        it.  # (B T, C_out, H, W)"""
        keep = torch.zeros(t, dtype=torch.bool, device=h.device)
        keep[list(frames)] = True
        rows = keep.repeat(h.shape[0] // t)  # (B T,)
        if rows.all():
            return self._tail(h, hs, emb)
        tracked, untracked = rows.nonzero()[:, 0], (~rows).nonzero()[:, 0]

        def tail(sel: torch.Tensor) -> torch.Tensor:
            skips = [skip[sel] for skip in hs]
            return self._tail(h[sel], skips, emb[sel])

        with torch.no_grad():
            out_untracked = tail(untracked)
        out_tracked = tail(tracked)
        out = out_tracked.new_empty(rows.shape[0], *out_tracked.shape[1:])
        return out.index_copy(0, untracked, out_untracked).index_copy(0, tracked, out_tracked)

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write config.json and model.safetensors (no pickle); dtype=torch.float16 halves size."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if dtype is not None else v).contiguous()
                 for k, v in self.state_dict().items()}
        tmp = directory / (WEIGHTS_NAME + ".tmp")
        save_file(state, str(tmp))
        tmp.replace(directory / WEIGHTS_NAME)
        (directory / CONFIG_NAME).write_text(self.config.to_json() + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **config_overrides) -> "UNet3D":
        """Load a model written by `save_pretrained`, as float32.

        `config_overrides` replace fields of the saved config. They may grow the model by layers
        whose output starts at zero: `frameskip_conditioning=True` on weights saved without it
        adds the frameskip input, `conditioned_odd_bias=True` adds each temporal attention's
        `odd_from_emb`, `odd_bias_text_pool=True` adds the odd bias's own text pooling, and
        extra `temporal_resolutions` add temporal attention at those resolutions, extra
        `spacetime_resolutions` joint space-time attention (`SpaceTimeAttention`), extra
        `cross_attention_resolutions` per-token text cross-attention (`TextCrossAttention`). The
        loaded model's outputs then equal the saved model's bit for bit (at any frameskip); any
        other mismatch between weights and config is refused.
        """
        return cls.load_grown(directory, **config_overrides)[0]

    @classmethod
    def load_grown(cls, directory: str | Path,
                   **config_overrides) -> tuple["UNet3D", tuple[str, ...]]:
        """`from_pretrained`, and the names of the parameters the overrides grew (in parameter
        order; empty when the config is the saved one)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} not found: a model folder needs "
                                        f"{CONFIG_NAME} and {WEIGHTS_NAME}")
        saved = UNetConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text()))
        model = cls(UNetConfig.from_dict({**asdict(saved), **config_overrides}))
        state = {k: v.float() for k, v in load_file(str(directory / WEIGHTS_NAME)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        added = grown_names(model.config, saved)
        if unexpected or sorted(missing) != sorted(added):
            raise RuntimeError(f"weights in {directory} do not fit the config: missing "
                               f"{sorted(set(missing) - set(added))}, unexpected {unexpected}")
        return model.eval(), tuple(n for n, _ in model.named_parameters() if n in added)


def grown_names(config: UNetConfig, saved: UNetConfig) -> set[str]:
    """State-dict names that a model of `config` has and one of `saved` lacks: the layers that
    `UNet3D.from_pretrained` grows (the GROWN_FIELDS: the frameskip input, the conditioned odd
    bias and its own text pooling, extra temporal, space-time or text cross-attention), whose
    output starts
    at zero. Both models are built on torch's meta device: no memory, no random draws."""
    with torch.device("meta"):
        grown = UNet3D(config).state_dict()
        ungrown = UNet3D(replace(config, **{f: getattr(saved, f) for f in GROWN_FIELDS}))
        return set(grown) - set(ungrown.state_dict())
