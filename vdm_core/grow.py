"""Continuing training from saved weights into a grown model (`vdm-train --init-from`).

The frameskip input and extra temporal attention are added to saved weights with their output at
zero, so training starts from exactly the saved function; `make_optimizer` gives these new
parameters their own learning rate (`--added-lr-mult`).
"""

import torch

from .unet3d import UNet3D, UNetConfig


def load_init(init_from: str, model_cfg: UNetConfig) -> tuple[UNet3D, tuple[str, ...]]:
    """The --init-from weights for a model of `model_cfg`, and the names of the parameters they
    lack. With --frameskip-conditioning or --temporal-resolutions on weights trained without
    them, the new layers are added with their output at zero, so training starts from exactly
    the model those weights compute."""
    overrides = {"frameskip_conditioning": True} if model_cfg.frameskip_conditioning else {}
    if model_cfg.temporal_resolutions:
        overrides["temporal_resolutions"] = model_cfg.temporal_resolutions
    init, added = UNet3D.load_grown(init_from, **overrides)
    if init.config != model_cfg:
        raise ValueError(f"--init-from {init_from} holds a different model config")
    return init, added


def make_optimizer(model: UNet3D, added: tuple[str, ...], lr: float, weight_decay: float,
                   added_lr_mult: float = 1.0) -> torch.optim.AdamW:
    """AdamW over the model; the grown parameters (`added`) form a second group whose learning
    rate is `added_lr_mult` times the schedule's (each group's "lr_mult"). Their last layer
    starts at zero, so at the base rate the batch's gradient noise keeps them near zero for
    thousands of steps (assets/keyframe_model/README.md: phase 5's frameskip input)."""
    if added_lr_mult != 1.0 and not added:
        raise ValueError("--added-lr-mult applies to the layers that --init-from grows "
                         "(--frameskip-conditioning or --temporal-resolutions on weights saved "
                         "without them); this run has none (a checkpoint written before "
                         "--added-lr-mult existed records none)")
    params, grown = dict(model.named_parameters()), set(added)
    groups = [{"params": [p for n, p in params.items() if n not in grown], "lr_mult": 1.0}]
    if added:
        groups.append({"params": [params[n] for n in added], "lr_mult": added_lr_mult})
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
