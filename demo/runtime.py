"""Process-wide resources of the app: the pipeline (loaded once, lazily), threads, output files.

The model folder is `$VDM_MODEL_DIR` when set, else the shipped `assets/model` (with
`assets/keyframe_model` drawing the long-video cascade's keyframes). The pipeline is
loaded on first use under a lock, so concurrent requests share one copy; when the weights file
changes on disk (a training run exporting newer weights) the next request loads the new weights.
"""

import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import torch

from vdm_core.pipeline import DEFAULT_MODEL, VideoDiffusionPipeline, default_keyframe_model
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import WEIGHTS_NAME

MODEL_DIR_ENV = "VDM_MODEL_DIR"
KEYFRAME_DIR_ENV = "VDM_KEYFRAME_MODEL_DIR"
THREADS_ENV = "VDM_NUM_THREADS"
OUTPUT_MAX_AGE_S = 3600.0

_pipeline_lock = threading.Lock()
_output_lock = threading.Lock()
_cache: dict[str, object] = {}
_output_dir: Path | None = None


def model_dir() -> Path:
    """The model folder the app serves: $VDM_MODEL_DIR or assets/model."""
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL)


def keyframe_model_dir() -> Path | None:
    """The model that draws the long-video cascade's keyframes: $VDM_KEYFRAME_MODEL_DIR, else
    the shipped keyframe model when the app serves the shipped model, else None (the served
    model then draws them itself)."""
    chosen = os.environ.get(KEYFRAME_DIR_ENV)
    return Path(chosen) if chosen else default_keyframe_model(model_dir())


def num_threads() -> int:
    """The torch threads the app uses: $VDM_NUM_THREADS, else the CPU count (at most 8)."""
    wanted = os.environ.get(THREADS_ENV)
    return max(1, int(wanted) if wanted else min(os.cpu_count() or 1, 8))


def configure_threads() -> int:
    """Set torch's intra-op threads to `num_threads()`; returns that number."""
    threads = num_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _weights_stamp(directory: Path, env: str = MODEL_DIR_ENV) -> tuple[str, float]:
    """Identity of the weights on disk: (folder, modification time of model.safetensors)."""
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(
            f"No trained model in {directory}: it needs config.json and {WEIGHTS_NAME}. "
            f"Set {env} to a model folder."
        )
    return str(directory.resolve()), weights.stat().st_mtime


def get_pipeline() -> VideoDiffusionPipeline:
    """The shared pipeline (with its text encoder), loaded on the first call."""
    directory, keyframe = model_dir(), keyframe_model_dir()
    stamp = (_weights_stamp(directory), keyframe and _weights_stamp(keyframe, KEYFRAME_DIR_ENV))
    with _pipeline_lock:
        if _cache.get("stamp") != stamp:
            configure_threads()
            pipe = VideoDiffusionPipeline.from_pretrained(directory, get_text_encoder())
            if keyframe is not None:
                pipe.with_keyframe_model(keyframe)
            _cache.update(stamp=stamp, pipe=pipe)
        return _cache["pipe"]


def warm_up() -> threading.Thread:
    """Load the pipeline in a background thread so the first request does not wait for it."""

    def load() -> None:
        try:
            get_pipeline()
        except (FileNotFoundError, OSError) as exc:
            print(f"warning: could not preload the model: {exc}")

    thread = threading.Thread(target=load, name="vdm-warm-up", daemon=True)
    thread.start()
    return thread


def _prune(directory: Path, max_age_s: float) -> None:
    """Delete files in directory older than max_age_s seconds."""
    cutoff = time.time() - max_age_s
    for path in directory.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            continue


def output_path(stem: str, suffix: str) -> Path:
    """A fresh file path for an output video / image; outputs older than an hour are removed."""
    global _output_dir
    with _output_lock:
        if _output_dir is None:
            _output_dir = Path(tempfile.mkdtemp(prefix="vdm-app-"))
    _prune(_output_dir, OUTPUT_MAX_AGE_S)
    return _output_dir / f"{stem}-{uuid.uuid4().hex[:12]}{suffix}"
