"""The record of a training run: checkpoint and log files, exported model folders, phases.

A run writes CHECKPOINT_NAME (atomically) and LOG_NAME in its folder; an export is a model
folder (config + fp16 EMA weights) with STATE_NAME (step, hardware, recipe, earlier phases) and
the loss logs of every phase (EXPORTED_LOG_NAME for the run's own, EARLIER_LOG_NAME before).
"""

import json
import os
import platform
import shutil
from pathlib import Path

import torch

from vdm_core.unet3d import UNet3D, UNetConfig

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
STATE_NAME = "training_state.json"  # written next to exported weights, with these logs:
EXPORTED_LOG_NAME = "training_log.jsonl"
EARLIER_LOG_NAME = "training_log_earlier.jsonl"


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


def training_record(ckpt: dict) -> dict:
    """The STATE_NAME record exported beside a checkpoint's weights."""
    return {"step": ckpt["step"], "wall_time_s": round(ckpt["wall_time"]),
            "hardware": ckpt.get("hardware", "unknown"), "train_config": ckpt["train_config"],
            "history": ckpt.get("history", [])}


def export_model(ema: UNet3D, export_dir: str | Path, state: dict, out: Path) -> None:
    """Write a usable model folder: `ema`'s weights in fp16 with its config, `state` (see
    `training_record`) as STATE_NAME, and the loss logs of the run in `out` (its LOG_NAME up to
    `state["step"]` as EXPORTED_LOG_NAME, and EARLIER_LOG_NAME)."""
    export_dir, out = Path(export_dir).expanduser(), Path(out)
    ema.save_pretrained(export_dir, dtype=torch.float16)
    (export_dir / STATE_NAME).write_text(json.dumps(state, indent=2))
    if (out / LOG_NAME).exists():
        records = [r for r in read_jsonl(out / LOG_NAME) if r.get("step", 0) <= state["step"]]
        write_jsonl(export_dir / EXPORTED_LOG_NAME, records)
    if (out / EARLIER_LOG_NAME).exists():
        shutil.copyfile(out / EARLIER_LOG_NAME, export_dir / EARLIER_LOG_NAME)


def export_from_checkpoint(ckpt_path: str | Path, export_dir: str | Path) -> None:
    """Re-export the EMA weights of a checkpoint, as `save_checkpoint` exports them (the logs
    come from the checkpoint's folder): `vdm-train --out-dir RUN --export-dir DIR --export-only`."""
    ckpt_path = Path(ckpt_path).expanduser()
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    ema = UNet3D(UNetConfig.from_dict(ckpt["model_config"]))
    ema.load_state_dict(ckpt["ema"])
    export_model(ema, export_dir, training_record(ckpt), ckpt_path.parent)
