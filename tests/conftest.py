"""Shared test helpers."""

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from vdm_core.unet3d import UNet3D, UNetConfig


def make_randomized_unet(cfg: UNetConfig, seed: int = 0) -> UNet3D:
    """A U-Net whose zero-initialised layers (output convs, attention outputs, null text) are
    made random, so that every path, text and guidance included, changes the output."""
    torch.manual_seed(seed)
    model = UNet3D(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.2)
    return model


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's thread count after each test: scripts and the trainer set it (--threads),
    and bf16 sums depend on it, so a leaked setting would change later tests' exact videos."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def randomized_unet():
    return make_randomized_unet


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A randomized tiny U-Net (test_unet.TINY with 16x16 frames) saved in tmp_path / "tiny"."""
    from dataclasses import replace

    from test_unet import TINY

    make_randomized_unet(replace(TINY, image_size=16)).save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


@contextmanager
def tiny_pipeline(**config) -> Iterator:
    """A pipeline over a tiny U-Net (16x16 frames, window 16) whose zero-initialised layers are
    redrawn small, so every input frame matters; fp32, one torch thread while in use."""
    from vdm_core.pipeline import VideoDiffusionPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: a second thread only adds contention
    torch.manual_seed(0)
    model = UNet3D(UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(16,),
                              head_dim=8, image_size=16, **config))
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    try:
        yield VideoDiffusionPipeline(model, bf16=False)
    finally:
        torch.set_num_threads(threads)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(model_dir: str | None) -> Iterator[str]:
    """The app (app.py's launch) in this process on a free port, serving `model_dir` (None: the
    app's default); yields its URL, then closes it and restores the environment."""
    from demo.runtime import MODEL_DIR_ENV

    previous = os.environ.get(MODEL_DIR_ENV)
    if model_dir is not None:
        os.environ[MODEL_DIR_ENV] = str(model_dir)
    import app

    demo = app.launch_app(port=free_port(), host="127.0.0.1", prevent_thread_lock=True,
                          quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()
        if previous is None:
            os.environ.pop(MODEL_DIR_ENV, None)
        else:
            os.environ[MODEL_DIR_ENV] = previous


def load_script(name: str):
    """scripts/<name>.py imported as a module (the scripts folder is not a package). The folder
    goes on sys.path, as it is when a script runs, so scripts may import each other."""
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    if str(scripts) not in sys.path:
        sys.path.append(str(scripts))
    path = scripts / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
