"""Shared test helpers."""

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


@pytest.fixture(scope="session")
def randomized_unet():
    return make_randomized_unet
