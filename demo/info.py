"""Text of the How it works tab: the paper's ideas, the model's architecture and its card."""

import json
from pathlib import Path

import torch

from vdm_core.unet3d import CONFIG_NAME, UNet3D, UNetConfig

CARD_NAME = "MODEL_CARD.md"

EXPLANATION = """
### What the model does
A video is a stack of frames **x** (here 16 frames of 32×32 pixels). Training adds Gaussian noise,
**z_t = α_t x + σ_t ε**, and teaches a network to undo it; sampling starts from pure noise
(t = 1) and removes noise step by step until t = 0. The *Generate* tab's live preview shows the
network's current estimate **x̂** of the clean video at each step: blurry at first, sharp at the
end.

* **Noise schedule** (left plot below): how much signal is left at time t. The paper uses the
  cosine schedule of log-SNR = log(α²/σ²), truncated to [−20, 20].
* **Space-time factorised 3D U-Net**: every convolution is spatial only (1×3×3); each spatial
  attention block (over the pixels of one frame) is followed by a **temporal attention** block
  (over the frames at one pixel position) with a relative position bias.
* **Joint video-image training**: extra independent images are appended to each video, and the
  temporal attention is masked so that each image attends only to itself (the mask plot below),
  so the same network learns from both.
* **Classifier-free guidance** (the slider *w*): ε̃ = (1 + w) ε(z, text) − w ε(z). w = 0 turns
  it off; larger w follows the prompt more closely with less variety. An empty prompt samples
  unconditionally.
  The shipped model follows a prompt's colours and shapes but not its direction words
  (*moving left*): this world looks the same played backwards, so it never learned which way
  time runs, and objects move the opposite way almost as often (the card's *caption's
  direction* column; docs/recipe.md, "The direction of time").
* **Samplers**: ancestral (stochastic), DDIM (deterministic for a given seed) and
  predictor-corrector (an ancestral step plus a Langevin correction; about twice the cost).

### Conditional sampling: longer videos, super-resolution, interpolation, keyframes
The model only ever sees 16 frames. Longer videos are made **block by block**: each new block
is sampled *given* the last k frames already made (x^a), generating the new frames (x^b).
* **Replacement**: after every step, overwrite the known part of the latent with a noisy copy of
  the known frames. Simple, but the new frames only see the known ones through the noisy latent,
  so blocks often disagree: look for jumps ("seams") at the dashed block boundaries.
* **Reconstruction guidance** (eq. 7): also push x̂^b along the gradient of
  ‖x^a − x̂^a(z_t)‖², weighted by **w_r**, so the new frames agree with what is known. The paper
  finds it much more coherent; compare the two videos and the frame-change plot.
* The same idea works for a **low-resolution** observation (eq. 8, super-resolution) and for
  **sparse frames** (interpolation).
* **Keyframe cascade** (Fig. 2, the *Long video* mode): first sample keyframes, every 4th
  frame, with a model that takes the frameskip 4 as input (`assets/keyframe_model`; the
  shipped model then fills the frames between: the paper's two models); these decide the layout
  of the whole video at once. Then interpolation fills the frames between at frameskip 1,
  adding only local detail, so errors do not pile up block after block as in autoregressive
  extension, where each block can only follow the last k frames.

### Reading the comparison plot
*Change from the previous frame*: smooth motion gives a flat curve; a spike at a dashed block
boundary is a seam. *Error against the ground truth* (world clips know where every object truly
is): lower is better; given frames (shaded) are exact by construction.
"""


def load_config(model_dir: Path) -> UNetConfig | None:
    """The model's UNetConfig from config.json, or None when there is no model."""
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        return None
    return UNetConfig.from_dict(json.loads(path.read_text()))


def parameter_count(config: UNetConfig) -> int:
    """Number of parameters of a U-Net with this config (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = UNet3D(config)
    return sum(p.numel() for p in model.parameters())


def architecture_markdown(model_dir: Path) -> str:
    """A short table of the served model's architecture."""
    config = load_config(model_dir)
    if config is None:
        return f"*No model found in `{model_dir}`.*"
    widths = ", ".join(str(config.base_channels * m) for m in config.channel_mults)
    sizes = [config.image_size // 2**i for i in range(len(config.channel_mults))]
    rows = [
        ("Parameters", f"{parameter_count(config) / 1e6:.2f} M"),
        ("Video", f"{config.num_frames} frames × {config.image_size}×{config.image_size} × "
                  f"{config.channels} channels"),
        ("Channels per level", f"{widths} (at {', '.join(f'{s}×{s}' for s in sizes)})"),
        ("Residual blocks per level", str(config.num_res_blocks)),
        ("Attention (space + time) at", ", ".join(f"{r}×{r}" for r in config.attn_resolutions)
         + f"; head width {config.head_dim}"),
        ("Temporal position bias", f"{config.rel_pos_buckets} relative-position buckets"),
        ("Text conditioning", f"{config.text_dim}-d MiniLM token states, attention-pooled"),
        ("Prediction target", f"{config.parameterization}-parameterisation"),
    ]
    return "| Part | Setting |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def model_card_markdown(model_dir: Path) -> str:
    """The model card (MODEL_CARD.md) if the model folder has one."""
    path = Path(model_dir) / CARD_NAME
    if not path.is_file():
        return f"*The model card (`{CARD_NAME}`) is not available yet.*"
    return path.read_text(encoding="utf-8")
