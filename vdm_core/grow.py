"""Continuing training from saved weights into a grown model (`vdm-train --init-from`).

The frameskip input, the conditioned odd bias and extra temporal or space-time attention are
added to saved weights with their output at zero, so training starts from exactly the saved
function; `make_optimizer` gives these new parameters their own learning rate
(`--added-lr-mult`), and `--freeze-init` trains them alone.
`break_time_symmetry` gives the temporal attention a direction of time
(`--break-time-symmetry`; docs/recipe.md, "The direction of time").
"""

from dataclasses import asdict

import torch

from .temporal_attention import TemporalAttention
from .unet3d import GROWN_FIELDS, UNet3D, UNetConfig


def load_init(init_from: str, model_cfg: UNetConfig) -> tuple[UNet3D, tuple[str, ...]]:
    """The --init-from weights for a model of `model_cfg`, and the names of the parameters they
    lack. With --frameskip-conditioning, --conditioned-odd-bias, --temporal-resolutions or
    --spacetime-resolutions on weights trained without them, the new layers are added with
    their output at zero, so training starts from exactly the model those weights compute."""
    overrides = {f: getattr(model_cfg, f) for f in GROWN_FIELDS if getattr(model_cfg, f)}
    init, added = UNet3D.load_grown(init_from, **overrides)
    if init.config != model_cfg:
        differ = [f"{name} is {getattr(init.config, name)!r} there, {value!r} here"
                  for name, value in asdict(model_cfg).items()
                  if getattr(init.config, name) != value]
        raise SystemExit(f"--init-from {init_from} holds a different model config: "
                         f"{'; '.join(differ)} (give the flags it was trained with)")
    return init, added


def freeze_init(model: UNet3D, added: tuple[str, ...]) -> None:
    """Train only the grown parameters (`--freeze-init`): every other parameter of `model` stops
    taking gradients, so the run changes the saved function through the new layers alone.
    Refused (its message, not a traceback) when nothing was grown."""
    if not added:
        raise SystemExit("--freeze-init trains only the layers that --init-from grows "
                         "(--frameskip-conditioning, --conditioned-odd-bias, "
                         "--temporal-resolutions or --spacetime-resolutions on weights saved "
                         "without them); this run has none")
    grown = set(added)
    for name, p in model.named_parameters():
        p.requires_grad_(name in grown)


def make_optimizer(model: UNet3D, added: tuple[str, ...], lr: float, weight_decay: float,
                   added_lr_mult: float = 1.0,
                   text_pool_lr_mult: float = 1.0) -> torch.optim.AdamW:
    """AdamW over the model; the grown parameters (`added`) form a second group whose learning
    rate is `added_lr_mult` times the schedule's (each group's "lr_mult"). Their last layer
    starts at zero, so at the base rate the batch's gradient noise keeps them near zero for
    thousands of steps (assets/keyframe_model/README.md: phase 5's frameskip input).
    With text_pool_lr_mult != 1 the shared text pooling (`text_pool.*`) forms a last group at
    that multiple, so that a continued run can relearn what the pooling projected away (the
    caption's direction words; docs/recipe.md, "The direction of time")."""
    if added_lr_mult != 1.0 and not added:
        raise ValueError("--added-lr-mult applies to the layers that --init-from grows "
                         "(--frameskip-conditioning, --conditioned-odd-bias or "
                         "--temporal-resolutions on weights saved without them); this run has "
                         "none (a checkpoint written before --added-lr-mult existed records "
                         "none)")
    params, grown = dict(model.named_parameters()), set(added)
    pool = set() if text_pool_lr_mult == 1.0 else {n for n in params if n.startswith("text_pool.")}
    groups = [{"params": [p for n, p in params.items() if n not in grown | pool], "lr_mult": 1.0}]
    if added:
        groups.append({"params": [params[n] for n in added], "lr_mult": added_lr_mult})
    if pool:
        groups.append({"params": [params[n] for n in params if n in pool],
                       "lr_mult": text_pool_lr_mult})
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)


def restore_optimizer(opt: torch.optim.Optimizer, state: dict, path) -> None:
    """Load a checkpoint's optimizer state into `opt`, keeping opt's "lr_mult"s: the command line
    decides them, as it does --lr. The groups must match the ones the run started with."""
    mults = [group["lr_mult"] for group in opt.param_groups]
    if len(state["param_groups"]) != len(mults):
        raise SystemExit(f"{path} was trained with {len(state['param_groups'])} learning-rate "
                         f"groups and this command makes {len(mults)}: resume with "
                         "--text-pool-lr-mult at 1 or not at 1, as the run started")
    opt.load_state_dict(state)
    for group, mult in zip(opt.param_groups, mults, strict=True):
        group["lr_mult"] = mult


def break_time_symmetry(model: UNet3D, scale: float, seed: int) -> None:
    """Add a random odd function of the distance j - i to every temporal attention bias, in place.

    Space-only convolutions and a bias even in j - i make the U-Net exactly time-reversal
    equivariant, and a reversible world gives training no first-order reason to leave that
    point: only caption direction words reward it, and a model that cannot tell forward from
    backward has learned to ignore them. Per layer, head and distance bucket k >= 1, a draw
    delta ~ N(0, scale^2) is added to the bias at +k and subtracted at -k, so the even part
    (attention by distance) is unchanged and every layer can tell the frames before from the
    frames after.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, TemporalAttention):
                half = layer.num_buckets // 2  # buckets [half, 2 half) hold j - i > 0
                weight = layer.rel_bias.weight  # (buckets, heads)
                delta = scale * torch.randn(half - 1, weight.shape[1], generator=generator)
                weight[half + 1:] += delta.to(weight)
                weight[1:half] -= delta.to(weight)
