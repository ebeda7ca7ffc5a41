"""retain_freed_memory: a guidance step stops faulting in fresh pages on every call (glibc)."""

import json
import subprocess
import sys

import pytest

from vdm_core.memory import retain_freed_memory

STEPS = """
import json, resource, sys
import torch
from vdm_core.memory import retain_freed_memory
from vdm_core.unet3d import UNet3D, UNetConfig

torch.set_num_threads(1)
if sys.argv[1] == "retain":
    assert retain_freed_memory()
model = UNet3D(UNetConfig()).requires_grad_(False)
z = torch.randn(1, 3, 8, 32, 32)


def step():  # a reconstruction-guidance step: forward, then backward to z
    z_in = z.clone().requires_grad_(True)
    torch.autograd.grad(model(z_in, torch.zeros(1)).square().sum(), z_in)


for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4))
"""


def page_faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not retain_freed_memory(), reason="needs glibc's mallopt")
def test_retained_memory_removes_the_page_faults_of_each_step():
    default, retained = page_faults_per_step("default"), page_faults_per_step("retain")
    assert default > 1000  # glibc hands the activations back to the OS after every step
    assert retained < 0.25 * default  # a few heap extensions may remain, not the whole step
