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
"""

import argparse
import copy
import json
import math
import os
import platform
import shutil
import signal
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .diffusion import WEIGHTINGS, diffusion_loss, model_denoiser
from .memory import retain_freed_memory
from .unet3d import UNet3D, UNetConfig

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
STATE_NAME = "training_state.json"  # written next to exported weights, with these logs:
EXPORTED_LOG_NAME = "training_log.jsonl"
EARLIER_LOG_NAME = "training_log_earlier.jsonl"


@dataclass
class TrainConfig:
    """Training hyperparameters (the defaults are the recipe of the shipped model)."""

    out_dir: str = "~/.cache/vdm/run"
    steps: int = 20000
    batch_size: int = 8
    lr: float = 3e-4
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
    frame_skip: int = 1
    ckpt_minutes: float = 10.0
    ckpt_every: int = 0
    sample_every: int = 1000
    log_every: int = 10
    export_dir: str = ""
    init_from: str = ""
    threads: int = 0
    workers: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to `lr` over `warmup_steps`, then constant (the paper uses a constant rate)."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """ema <- d ema + (1 - d) model, with d warmed up as (1 + step) / (10 + step) early on."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - d)


def make_stream(cfg: TrainConfig, image_size: int, rank: int):
    """The procedural world (default) or a folder of the user's own videos."""
    if cfg.data == "world":
        from .data import WorldStream

        return WorldStream(seed=cfg.seed * 1000 + rank, batch_size=cfg.batch_size,
                           num_frames=cfg.num_frames, image_frames=cfg.image_frames,
                           size=image_size)
    if cfg.image_frames:
        raise ValueError("--image-frames needs the procedural world; use --image-frames 0 with "
                         "a video folder")
    from .video_folder import VideoFolderStream

    return VideoFolderStream(cfg.data, batch_size=cfg.batch_size, num_frames=cfg.num_frames,
                             size=image_size, frame_skip=cfg.frame_skip,
                             seed=cfg.seed * 1000 + rank)


class _EncodedWorldBatches(torch.utils.data.Dataset):
    """Batches start, start + 1, ... of a WorldStream with their captions' token states, so that
    DataLoader workers can render and encode them ahead of the training step."""

    def __init__(self, stream, start: int, count: int) -> None:
        self.stream, self.start, self.count = stream, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        from .text import get_text_encoder

        batch = self.stream.batch_at(self.start + i)
        states, mask = get_text_encoder().encode(batch.captions)
        return batch, states, mask


def _init_worker(_worker_id: int) -> None:
    """One thread per worker; SIGTERM/SIGINT sent to the whole process group (Ctrl-C, `timeout`)
    are left to the main process, which finishes its step and checkpoints before it exits."""
    torch.set_num_threads(1)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)


def encoded_batches(stream, cfg: TrainConfig, remaining: int, pin_memory: bool):
    """Yield (batch, states, mask) for the next `remaining` batches of `stream`, advancing its
    position as each one is consumed (so a checkpoint taken between steps resumes exactly)."""
    from .text import get_text_encoder

    if not cfg.workers:
        encoder = get_text_encoder()
        for batch in stream:
            yield (batch, *encoder.encode(batch.captions))
        return
    loader = torch.utils.data.DataLoader(
        _EncodedWorldBatches(stream, stream.batch_index, remaining), batch_size=None,
        num_workers=cfg.workers, worker_init_fn=_init_worker, prefetch_factor=4,
        pin_memory=pin_memory, multiprocessing_context="spawn")  # no fork of a CUDA process
    for item in loader:
        stream.batch_index += 1
        yield item


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


def load_checkpoint(path: Path, model, ema, opt, stream, generator) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    opt.load_state_dict(ckpt["opt"])
    stream.load_state_dict(ckpt["stream"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt


def describe_hardware(device: torch.device) -> str:
    """What trains: the GPU's name, or the CPU and its torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def training_phases(model_dir: Path) -> list[dict]:
    """The training phases behind exported weights (their STATE_NAME, if any): the earlier
    ones, then their own, so a model trained in phases (CPU, then GPU) keeps its record."""
    path = Path(model_dir) / STATE_NAME
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    return [*state.get("history", []), {k: v for k, v in state.items() if k != "history"}]


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (blank lines skipped); [] when it does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def training_log(model_dir: Path, phase: int) -> list[dict]:
    """The loss records of every phase behind exported weights, each tagged with its phase: the
    earlier phases' (EARLIER_LOG_NAME), then the folder's own log tagged `phase`."""
    model_dir = Path(model_dir)
    return read_jsonl(model_dir / EARLIER_LOG_NAME) + [
        {**r, "phase": phase} for r in read_jsonl(model_dir / EXPORTED_LOG_NAME)]


def write_earlier_log(init_dir: Path, phase: int, path: Path) -> None:
    """Carry --init-from's loss log(s) along; its own lines are tagged with `phase`, its last
    (phase < 0: it has no training record, so only an earlier log is carried)."""
    records = (training_log(init_dir, phase) if phase >= 0
               else read_jsonl(init_dir / EARLIER_LOG_NAME))
    if records:
        write_jsonl(path, records)


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    if log_path.exists():
        write_jsonl(log_path, [r for r in read_jsonl(log_path) if r.get("step", 0) <= step])


def train(cfg: TrainConfig, model_cfg: UNetConfig) -> UNet3D:
    """Run (or resume) training; returns the trained (non-EMA) model."""
    if cfg.weighting not in WEIGHTINGS:
        raise ValueError(f"--weighting must be one of {WEIGHTINGS}")
    if cfg.workers < 0:
        raise ValueError("--workers must be >= 0")
    if cfg.workers and cfg.data != "world":
        raise ValueError("--workers renders the procedural world; use --workers 0 with a folder")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    retain_freed_memory()  # every step keeps its activations for the backward pass (memory.py)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    device = torch.device("cpu")
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        rank = dist.get_rank()
        if backend == "nccl":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    out = Path(cfg.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / LOG_NAME

    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    stream = make_stream(cfg, model_cfg.image_size, rank)
    step, wall = 0, 0.0
    if ckpt_path.exists():
        model_cfg = UNetConfig.from_dict(
            torch.load(ckpt_path, map_location="cpu", weights_only=False)["model_config"])
    model = UNet3D(model_cfg).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99),
                            weight_decay=cfg.weight_decay)
    history = []  # the training phases before this run (from --init-from's STATE_NAME)
    if cfg.init_from and not ckpt_path.exists():
        init = UNet3D.from_pretrained(cfg.init_from)
        if init.config != model_cfg:
            raise ValueError(f"--init-from {cfg.init_from} holds a different model config")
        model.load_state_dict(init.state_dict())
        ema.load_state_dict(init.state_dict())
        history = training_phases(Path(cfg.init_from))
        if rank == 0:
            write_earlier_log(Path(cfg.init_from), len(history) - 1, out / EARLIER_LOG_NAME)
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, model, ema, opt, stream, generator)
        step, wall = ckpt["step"], ckpt["wall_time"]
        history = ckpt.get("history", [])
        if rank == 0:
            truncate_log(log_path, step)
            print(f"resumed from {ckpt_path} at step {step}", flush=True)
    net = DistributedDataParallel(model) if distributed else model

    hardware = describe_hardware(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    batches = encoded_batches(stream, cfg, max(1, cfg.steps - step), device.type == "cuda")
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def checkpoint():
        if rank != 0:
            return
        atomic_save({"model": model.state_dict(), "ema": ema.state_dict(),
                     "opt": opt.state_dict(), "stream": stream.state_dict(),
                     "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                     "step": step, "wall_time": wall, "train_config": asdict(cfg),
                     "model_config": json.loads(model_cfg.to_json()), "history": history},
                    ckpt_path)
        if cfg.export_dir:
            ema.save_pretrained(cfg.export_dir, dtype=torch.float16)
            state = {"step": step, "wall_time_s": round(wall), "hardware": hardware,
                     "train_config": asdict(cfg), "history": history}
            Path(cfg.export_dir, STATE_NAME).write_text(json.dumps(state, indent=2))
            for name, target in ((LOG_NAME, EXPORTED_LOG_NAME),
                                 (EARLIER_LOG_NAME, EARLIER_LOG_NAME)):
                if (out / name).exists():
                    shutil.copyfile(out / name, Path(cfg.export_dir, target))

    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, desc="train",
               mininterval=1.0 if os.isatty(2) else 60.0)
    last_ckpt, loss_sum, loss_n = time.time(), 0.0, 0
    try:
        while step < cfg.steps and stop["signal"] is None:
            t0 = time.time()
            batch, states, mask = next(batches)  # states (B, L, 384), mask (B, L)
            x = batch.video.to(device)  # (B, C, T + N, H, W)
            drop = torch.rand(x.shape[0], generator=generator) < cfg.cond_drop
            mask = mask & ~drop[:, None]
            n_video = torch.full((x.shape[0],), batch.num_video_frames, dtype=torch.long)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = diffusion_loss(net, x, states.to(device), mask.to(device),
                                      n_video.to(device), cfg.weighting, generator,
                                      model_cfg.parameterization).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema_update(ema, model, step, cfg.ema_decay)
            step += 1
            wall += time.time() - t0
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
            bar.update(1)
            if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
                record = {"step": step, "loss": loss_sum / loss_n, "grad_norm": float(grad_norm),
                          "lr": lr_at(step - 1, cfg), "wall_time_s": round(wall, 1)}
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                loss_sum, loss_n = 0.0, 0
            due_time = time.time() - last_ckpt >= cfg.ckpt_minutes * 60
            due_step = cfg.ckpt_every and step % cfg.ckpt_every == 0
            if due_time or due_step or step == cfg.steps:
                checkpoint()
                last_ckpt = time.time()
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                try:
                    save_sample_grid(ema, out / f"samples_{step:07d}.png", step)
                except Exception as err:  # a preview must never end a training run
                    warnings.warn(f"sample grid at step {step} failed: {err!r}", stacklevel=1)
        if stop["signal"] is not None:
            checkpoint()
            if rank == 0:
                print(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved",
                      flush=True)
    finally:
        bar.close()
        batches.close()  # stops any data workers while the interpreter is whole
        for s, h in handlers.items():
            signal.signal(s, h)
    if distributed:
        dist.barrier()
    return model


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
    parser.add_argument("--base-channels", type=int, default=model_defaults.base_channels)
    parser.add_argument("--channel-mults", default=",".join(map(str, model_defaults.channel_mults)))
    parser.add_argument("--num-res-blocks", type=int, default=model_defaults.num_res_blocks)
    parser.add_argument("--attn-resolutions",
                        default=",".join(map(str, model_defaults.attn_resolutions)))
    parser.add_argument("--head-dim", type=int, default=model_defaults.head_dim)
    parser.add_argument("--dropout", type=float, default=model_defaults.dropout)
    parser.add_argument("--image-size", type=int, default=model_defaults.image_size)
    parser.add_argument("--parameterization", choices=("eps", "v"),
                        default=model_defaults.parameterization)
    args = vars(parser.parse_args(argv))

    def ints(s: str) -> tuple[int, ...]:
        return tuple(int(v) for v in s.split(",") if v.strip())

    model_cfg = UNetConfig(
        base_channels=args.pop("base_channels"), channel_mults=ints(args.pop("channel_mults")),
        num_res_blocks=args.pop("num_res_blocks"),
        attn_resolutions=ints(args.pop("attn_resolutions")), head_dim=args.pop("head_dim"),
        dropout=args.pop("dropout"), image_size=args.pop("image_size"),
        parameterization=args.pop("parameterization"))
    model_cfg.num_frames = args["num_frames"]
    return TrainConfig(**args), model_cfg


def main(argv=None) -> None:
    cfg, model_cfg = parse_args(argv)
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise SystemExit("--lr must be a positive number")
    train(cfg, model_cfg)
    if dist.is_initialized():
        dist.destroy_process_group()  # train() ends with a barrier: every rank is here


if __name__ == "__main__":
    main()
