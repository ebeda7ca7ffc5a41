"""Train the video diffusion U-Net: `vdm-train --out-dir ~/.cache/vdm/run --steps 20000`.

Recipe: AdamW with linear warmup, EMA of the weights, conditioning dropout for classifier-free
guidance, joint video-image training (independent image frames appended after each clip, sec. 3),
bf16 autocast on CPU, gradient clipping. Checkpoints are written atomically (temp file + rename)
at least every `ckpt_minutes` and on SIGTERM/SIGINT; rerunning the same command resumes exactly
(model, optimizer, EMA, RNG states and data-stream position). On a new machine without the
checkpoint, `--init-from assets/model` starts from the shipped EMA weights (fresh optimizer).
`torchrun --nproc_per_node=N` runs data-parallel (DDP; NCCL on GPU, gloo on CPU).
`--workers N` renders the world's batches and encodes their captions in N background processes
(for a GPU, whose steps outrun one CPU core); batches, order and resume stay exactly the same.
`--window-start-max N --frameskips 1,4` trains on world windows starting anywhere in frames
[0, N], at a frameskip drawn from the set (the paper's frameskip-1 and -4 clips), captioned with
the motion at their first frame; `--frameskip-conditioning` gives the U-Net the frameskip as an
input (added zero-initialised to --init-from's weights; so do `--temporal-resolutions`,
`--spacetime-resolutions` and `--cross-attention-resolutions` add attention), `--added-lr-mult
K` trains the layers so added at K times --lr and `--freeze-init` trains them alone.
`--swap-contrast W` adds W times a term that pays for which colour goes with which shape (a clip
and its colour-swapped twin must each denoise better with their own caption than with the
other's; swap_contrast.py). `--break-time-symmetry S` adds a random odd part of scale S to the
temporal attention biases at the start of a run. `--export-only` re-exports the EMA weights of
--out-dir's checkpoint to --export-dir.
"""

import argparse
import copy
import json
import math
import os
import signal
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .diffusion import WEIGHTINGS, diffusion_loss, model_denoiser
from .grow import break_time_symmetry, freeze_init, load_init, make_optimizer, restore_optimizer
from .memory import retain_freed_memory
from .records import (
    CHECKPOINT_NAME,
    EARLIER_LOG_NAME,
    LOG_NAME,
    atomic_save,
    describe_hardware,
    export_from_checkpoint,
    export_model,
    training_phases,
    training_record,
    truncate_log,
    write_earlier_log,
)
from .swap_contrast import parse_logsnr_range, swap_colours, swap_contrast_loss, swap_rows
from .text import get_text_encoder
from .train_data import encoded_batches, make_stream, parse_frameskips
from .unet3d import UNet3D, UNetConfig


@dataclass
class TrainConfig:
    """Training hyperparameters (the defaults are the recipe of the shipped model)."""

    out_dir: str = "~/.cache/vdm/run"
    steps: int = 20000
    batch_size: int = 8
    lr: float = 3e-4
    added_lr_mult: float = 1.0  # learning rate of the layers --init-from grows, times --lr
    freeze_init: bool = False  # train only the layers --init-from grows
    text_pool_lr_mult: float = 1.0  # learning rate of the shared text pooling, times --lr
    heavy_noise_share: float = 0.0  # extra share of noise levels drawn below log-SNR -4.5
    swap_contrast: float = 0.0  # weight of the swap-contrastive term (swap_contrast.py); 0: off
    swap_margin: float = 0.003  # its hinge width m, in per-pixel ||x_hat - x||^2
    swap_logsnr: str = "-4,0"  # its band of log-SNRs, low first
    break_time_symmetry: float = 0.0  # scale of a random odd part added to temporal biases
    warmup_steps: int = 200
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    cond_drop: float = 0.1
    num_frames: int = 16
    image_frames: int = 4
    weighting: str = "min_snr"
    grad_clip: float = 1.0
    bf16: bool = True
    seed: int = 0
    data: str = "world"
    frame_skip: int = 1  # a video folder's stride between frames
    frameskips: str = "1"  # the world's strides, comma-separated, one drawn per example
    window_start_max: int = 0  # world windows start in frames [0, window_start_max]
    ckpt_minutes: float = 10.0
    ckpt_every: int = 0
    sample_every: int = 1000
    log_every: int = 10
    export_dir: str = ""
    init_from: str = ""
    threads: int = 0
    workers: int = 0
    export_only: bool = False


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to `lr` over `warmup_steps`, then constant (the paper uses a constant rate)."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """ema <- d ema + (1 - d) model, with d warmed up as (1 + step) / (10 + step) early on."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - d)


def save_sample_grid(ema: UNet3D, path: Path, step: int) -> None:
    """Sample four held-out captions with the EMA model (w = 2) and save them as one PNG."""
    from PIL import Image

    from .data import EVAL_SEEDS, world_clip
    from .guidance import cfg_denoiser
    from .samplers import sample_ancestral
    from .text import get_text_encoder
    from .video_io import frame_strip, tensor_to_frames

    cfg = ema.config
    captions = [world_clip(s, num_frames=1, size=cfg.image_size).caption for s in EVAL_SEEDS[:4]]
    states, mask = get_text_encoder().encode(captions)
    generator = torch.Generator().manual_seed(step)
    z = torch.randn(4, cfg.channels, cfg.num_frames, cfg.image_size, cfg.image_size,
                    generator=generator)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x = sample_ancestral(cfg_denoiser(model_denoiser(ema, states, mask), 2.0), z, 32,
                             generator=generator)
    rows = [frame_strip(tensor_to_frames(v), scale=2) for v in x.float()]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


@dataclass
class Run:
    """The state of one training run: what a checkpoint saves, and where it goes."""

    cfg: TrainConfig
    model_cfg: UNetConfig
    model: UNet3D
    ema: UNet3D
    opt: torch.optim.Optimizer
    stream: object  # WorldStream or VideoFolderStream
    generator: torch.Generator
    out: Path
    rank: int
    hardware: str
    added: tuple[str, ...] = ()  # parameters grown from --init-from's weights, at added_lr_mult
    step: int = 0
    wall: float = 0.0
    history: list = field(default_factory=list)  # training phases before this run

    @property
    def ckpt_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def log_path(self) -> Path:
        return self.out / LOG_NAME


def world_size() -> int:
    """The number of processes training together: torchrun sets WORLD_SIZE; 1 without it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_config(cfg: TrainConfig) -> None:
    """Refuse option combinations that cannot train, before any work starts."""
    if cfg.weighting not in WEIGHTINGS:
        raise ValueError(f"--weighting must be one of {WEIGHTINGS}")
    if cfg.workers < 0:
        raise ValueError("--workers must be >= 0")
    if cfg.workers and cfg.data != "world":
        raise ValueError("--workers renders the procedural world; use --workers 0 with a folder")
    if cfg.window_start_max < 0:
        raise ValueError("--window-start-max must be >= 0")
    if not 0.0 <= cfg.heavy_noise_share < 1.0:
        raise ValueError(f"--heavy-noise-share must be in [0, 1), got {cfg.heavy_noise_share}")
    if not (math.isfinite(cfg.swap_contrast) and cfg.swap_contrast >= 0):
        raise ValueError(f"--swap-contrast must be a number >= 0, got {cfg.swap_contrast}")
    if cfg.swap_contrast and cfg.data != "world":
        raise ValueError("--swap-contrast needs the procedural world's captions (two objects "
                         "of named colours and shapes); use it with --data world")
    if cfg.swap_contrast and world_size() > 1:
        raise ValueError("--swap-contrast runs in one process: its clips differ per rank, which "
                         "data-parallel gradient sync cannot match; train without torchrun")
    parse_logsnr_range(cfg.swap_logsnr)
    for name in ("lr", "added_lr_mult", "text_pool_lr_mult", "swap_margin"):
        if not math.isfinite(value := getattr(cfg, name)) or value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    frameskips = parse_frameskips(cfg.frameskips)
    if cfg.data != "world" and (cfg.window_start_max or frameskips != (1,)):
        raise ValueError("--frameskips and --window-start-max draw windows of the procedural "
                         "world; use --frame-skip with a video folder")


def setup_device(cfg: TrainConfig) -> tuple[torch.device, int, bool]:
    """Threads, the process group under torchrun (NCCL on GPU, gloo on CPU) and the device:
    returns (device, rank, distributed)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if world_size() <= 1:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), 0, False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device, dist.get_rank(), True


def start_from(run: Run, init: UNet3D, init_from: str) -> None:
    """Start a fresh run from exported weights (model and EMA), keeping their training record."""
    run.model.load_state_dict(init.state_dict())
    run.ema.load_state_dict(init.state_dict())
    run.history = training_phases(Path(init_from))
    if run.rank == 0:
        write_earlier_log(Path(init_from), len(run.history) - 1, run.out / EARLIER_LOG_NAME)


def resume(run: Run, ckpt: dict) -> None:
    """Restore model, EMA, optimizer, data position, RNG states and counters from `ckpt`."""
    run.model.load_state_dict(ckpt["model"])
    run.ema.load_state_dict(ckpt["ema"])
    restore_optimizer(run.opt, ckpt["opt"], run.ckpt_path)
    run.stream.load_state_dict(ckpt["stream"])
    run.generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    run.step, run.wall = ckpt["step"], ckpt["wall_time"]
    run.history = ckpt.get("history", [])
    if run.rank == 0:
        truncate_log(run.log_path, run.step)
        print(f"resumed from {run.ckpt_path} at step {run.step}", flush=True)


def build_run(cfg: TrainConfig, model_cfg: UNetConfig, device: torch.device, rank: int) -> Run:
    """Model, EMA, optimizer and data stream: resumed from the out dir's checkpoint if there is
    one (its model config wins), else from --init-from's weights or a fresh initialisation."""
    out = Path(cfg.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    stream = make_stream(cfg, model_cfg.image_size, rank)
    ckpt = None
    if (out / CHECKPOINT_NAME).exists():
        ckpt = torch.load(out / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
        model_cfg = UNetConfig.from_dict(ckpt["model_config"])
    init, added = None, ()
    if ckpt is not None:
        added = tuple(ckpt.get("added_params", ()))
    elif cfg.init_from:
        init, added = load_init(cfg.init_from, model_cfg)
    model = UNet3D(model_cfg).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if cfg.freeze_init:
        freeze_init(model, added)
    opt = make_optimizer(model, added, cfg.lr, cfg.weight_decay, cfg.added_lr_mult,
                         cfg.text_pool_lr_mult)
    run = Run(cfg, model_cfg, model, ema, opt, stream, generator, out, rank,
              describe_hardware(device), added)
    if ckpt is not None:
        resume(run, ckpt)
        return run
    if init is not None:
        start_from(run, init, cfg.init_from)
    if cfg.break_time_symmetry:  # once, at the start; a resumed run has it in its weights
        break_time_symmetry(run.model, cfg.break_time_symmetry, cfg.seed)
        run.ema.load_state_dict(run.model.state_dict())
    return run


def swap_term(run: Run, net: torch.nn.Module, batch, device: torch.device):
    """The swap-contrastive term on the batch's clips of two objects that differ in colour and
    shape: (L_swap (R,), rise (R,)) from `swap_contrast_loss`, or None when there are none."""
    rows, swapped, colours = swap_rows(batch.captions)
    if not rows:
        return None
    r = len(rows)
    states, mask = get_text_encoder().encode([batch.captions[i] for i in rows] + swapped)
    states, mask = states.to(device), mask.to(device)  # (2R, L, 384), (2R, L)
    x = batch.video[rows, :, :batch.num_video_frames]  # (R, C, T, H, W)
    x_swapped = torch.stack([swap_colours(clip, *pair)
                             for clip, pair in zip(x, colours, strict=True)])
    skip = batch.frameskip[rows] if run.model_cfg.frameskip_conditioning else None
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.cfg.bf16):
        return swap_contrast_loss(net, x.to(device), x_swapped.to(device), states[:r],
                                  mask[:r], states[r:], mask[r:], run.cfg.swap_margin,
                                  run.model_cfg.parameterization, run.generator, skip,
                                  parse_logsnr_range(run.cfg.swap_logsnr))


def train_step(run: Run, net: torch.nn.Module, batch, states: torch.Tensor, mask: torch.Tensor,
               device: torch.device) -> tuple[dict[str, float], torch.Tensor]:
    """One optimizer step on a batch (with conditioning dropout for classifier-free guidance,
    and the swap-contrastive term when --swap-contrast is on) and the EMA update; returns
    ({"loss": the denoising loss[, "swap_loss", "swap_rise"]}, gradient norm before clipping)."""
    cfg, generator = run.cfg, run.generator
    x = batch.video.to(device)  # (B, C, T + N, H, W)
    drop = torch.rand(x.shape[0], generator=generator) < cfg.cond_drop
    mask = mask & ~drop[:, None]  # (B, L)
    n_video = torch.full((x.shape[0],), batch.num_video_frames, dtype=torch.long)
    skip = batch.frameskip if run.model_cfg.frameskip_conditioning else None  # (B,) or None
    for group in run.opt.param_groups:
        group["lr"] = lr_at(run.step, cfg) * group["lr_mult"]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        loss = diffusion_loss(net, x, states.to(device), mask.to(device), n_video.to(device),
                              cfg.weighting, generator, run.model_cfg.parameterization,
                              skip, cfg.heavy_noise_share).mean()
    scalars, total = {"loss": loss.item()}, loss
    swap = swap_term(run, net, batch, device) if cfg.swap_contrast else None
    if swap is not None:
        swap_loss, rise = swap
        total = loss + cfg.swap_contrast * swap_loss.mean()
        scalars |= {"swap_loss": swap_loss.mean().item(), "swap_rise": rise.mean().item()}
    run.opt.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    ema_update(run.ema, run.model, run.step, cfg.ema_decay)
    run.step += 1
    return scalars, grad_norm


def write_log(run: Run, scalars: list[dict[str, float]], grad_norm: torch.Tensor) -> dict:
    """Append one record to the run's log.jsonl: each of the steps' scalars (the denoising
    "loss", and "swap_loss" / "swap_rise" when the term ran) averaged over the steps since the
    last record that have it."""
    means = {k: float(np.mean([s[k] for s in scalars if k in s]))
             for k in dict.fromkeys(k for s in scalars for k in s)}
    record = {"step": run.step, **means, "grad_norm": float(grad_norm),
              "lr": lr_at(run.step - 1, run.cfg), "wall_time_s": round(run.wall, 1)}
    with run.log_path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def save_checkpoint(run: Run) -> None:
    """Rank 0 writes the checkpoint atomically and, with --export-dir, exports the EMA model."""
    if run.rank != 0:
        return
    ckpt = {"model": run.model.state_dict(), "ema": run.ema.state_dict(),
            "opt": run.opt.state_dict(), "stream": run.stream.state_dict(),
            "generator": run.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "step": run.step, "wall_time": run.wall, "train_config": asdict(run.cfg),
            "model_config": json.loads(run.model_cfg.to_json()), "history": run.history,
            "hardware": run.hardware, "added_params": list(run.added)}
    atomic_save(ckpt, run.ckpt_path)
    if run.cfg.export_dir:
        export_model(run.ema, run.cfg.export_dir, training_record(ckpt), run.out)


def save_preview(run: Run) -> None:
    """Rank 0 saves a sample grid every --sample-every steps; a failure only warns."""
    if run.rank != 0 or not run.cfg.sample_every or run.step % run.cfg.sample_every:
        return
    try:
        save_sample_grid(run.ema, run.out / f"samples_{run.step:07d}.png", run.step)
    except Exception as err:  # a preview must never end a training run
        warnings.warn(f"sample grid at step {run.step} failed: {err!r}", stacklevel=1)


def fit(run: Run, net: torch.nn.Module, device: torch.device) -> None:
    """Train until --steps or SIGTERM/SIGINT: log, checkpoint (every --ckpt-minutes or
    --ckpt-every steps, at the end and on the signal) and preview along the way."""
    cfg = run.cfg
    batches = encoded_batches(run.stream, cfg.workers, max(1, cfg.steps - run.step),
                              device.type == "cuda")
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    bar = tqdm(total=cfg.steps, initial=run.step, disable=run.rank != 0, desc="train",
               mininterval=1.0 if os.isatty(2) else 60.0)
    last_ckpt, scalars = time.time(), []
    try:
        while run.step < cfg.steps and stop["signal"] is None:
            t0 = time.time()
            batch, states, mask = next(batches)  # states (B, L, 384), mask (B, L)
            step_scalars, grad_norm = train_step(run, net, batch, states, mask, device)
            run.wall += time.time() - t0
            scalars.append(step_scalars)
            bar.update(1)
            if run.rank == 0 and (run.step % cfg.log_every == 0 or run.step == cfg.steps):
                record = write_log(run, scalars, grad_norm)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                scalars = []
            due_time = time.time() - last_ckpt >= cfg.ckpt_minutes * 60
            due_step = cfg.ckpt_every and run.step % cfg.ckpt_every == 0
            if due_time or due_step or run.step == cfg.steps:
                save_checkpoint(run)
                last_ckpt = time.time()
            save_preview(run)
        if stop["signal"] is not None:
            save_checkpoint(run)
            if run.rank == 0:
                print(f"stopped by signal {stop['signal']} at step {run.step}; checkpoint saved",
                      flush=True)
    finally:
        bar.close()
        batches.close()  # stops any data workers while the interpreter is whole
        for s, h in handlers.items():
            signal.signal(s, h)


def train(cfg: TrainConfig, model_cfg: UNetConfig) -> UNet3D:
    """Run (or resume) training; returns the trained (non-EMA) model."""
    check_config(cfg)
    retain_freed_memory()  # every step keeps its activations for the backward pass (memory.py)
    device, rank, distributed = setup_device(cfg)
    run = build_run(cfg, model_cfg, device, rank)
    net = DistributedDataParallel(run.model) if distributed else run.model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fit(run, net, device)
    if distributed:
        dist.barrier()
    return run.model


# UNetConfig fields that `vdm-train` takes as flags, with their help
MODEL_FLAGS = {
    "base_channels": None, "channel_mults": None, "num_res_blocks": None, "attn_resolutions": None,
    "temporal_resolutions": "resolutions that get temporal attention alone (no spatial "
                            "attention), e.g. 32 for temporal mixing at full resolution",
    "spacetime_resolutions": "resolutions that get joint space-time attention over all frames "
                             "and pixels of a clip, e.g. 8 (docs/recipe.md)",
    "cross_attention_resolutions": "resolutions where every pixel also attends to the caption's "
                                   "token states, e.g. 16,8 (docs/recipe.md)",
    "head_dim": None, "dropout": None, "image_size": None, "parameterization": None,
    "frameskip_conditioning": "give the U-Net the frameskip as a conditioning input",
    "conditioned_odd_bias": "let the conditioning (caption, log-SNR, frameskip) add an odd "
                            "function of j - i to every temporal attention bias",
    "odd_bias_text_pool": "with --conditioned-odd-bias: the odd bias reads the caption through "
                          "its own text pooling, not the shared one",
}


def parse_args(argv=None) -> tuple[TrainConfig, UNetConfig]:
    parser = argparse.ArgumentParser(prog="vdm-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool or f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), f.type)
            parser.add_argument(flag, type=kind, default=f.default)
    model_defaults = UNetConfig()
    for name, help_text in MODEL_FLAGS.items():
        flag, default = "--" + name.replace("_", "-"), getattr(model_defaults, name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, default=",".join(map(str, default)), help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text,
                                choices=("eps", "v") if name == "parameterization" else None)
    args = vars(parser.parse_args(argv))

    def value(name: str):  # a tuple field's "8,16" -> (8, 16)
        v = args.pop(name)
        is_tuple = isinstance(getattr(model_defaults, name), tuple)
        return tuple(int(part) for part in v.split(",") if part.strip()) if is_tuple else v

    model_cfg = UNetConfig(**{name: value(name) for name in MODEL_FLAGS})
    model_cfg.num_frames = args["num_frames"]
    return TrainConfig(**args), model_cfg


def main(argv=None) -> None:
    try:
        cfg, model_cfg = parse_args(argv)
        check_config(cfg)
    except ValueError as err:  # a refused option: its message, not a traceback
        raise SystemExit(str(err)) from None
    if cfg.export_only:
        ckpt_path = Path(cfg.out_dir).expanduser() / CHECKPOINT_NAME
        if not cfg.export_dir or not ckpt_path.exists():
            raise SystemExit(f"--export-only needs --export-dir and a checkpoint at {ckpt_path}")
        export_from_checkpoint(ckpt_path, cfg.export_dir)
        return
    train(cfg, model_cfg)
    if dist.is_initialized():
        dist.destroy_process_group()  # train() ends with a barrier: every rank is here


if __name__ == "__main__":
    main()
