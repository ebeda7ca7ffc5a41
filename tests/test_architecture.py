"""The shape of the library: no import circle in vdm_core, no oversized module, a pipeline that
moves between devices with the same seeds."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm_core.defaults import default_config
from vdm_core.pipeline import VideoDiffusionPipeline, autocast_dtype
from vdm_core.unet3d import UNetConfig

PACKAGE = Path(__file__).resolve().parents[1] / "vdm_core"
MAX_MODULE_LINES = 520
TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                  image_size=16, num_frames=8, text_heads=2)


def imports_of(path: Path) -> set[str]:
    """The vdm_core modules that a module imports anywhere in it (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                names = [node.module] if node.module else [a.name for a in node.names]
            elif node.module == "vdm_core":
                names = [a.name for a in node.names]
            elif node.module and node.module.startswith("vdm_core."):
                names = [node.module.split(".")[1]]
            else:
                names = []
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("vdm_core."))
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return found & modules - {path.stem}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of graph (module -> modules it imports) as a path, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_vdm_core_has_no_import_circle():
    graph = {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}
    assert graph["conditional"] and "pipeline" not in graph["conditional"]
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_no_module_in_vdm_core_is_oversized():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert not {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES}


@pytest.fixture(scope="module")
def pipe(randomized_unet):
    return VideoDiffusionPipeline(randomized_unet(TINY))


def test_to_moves_the_model_and_noise_follows_the_cpu_generator(pipe):
    assert pipe.to("cpu") is pipe and pipe.device == torch.device("cpu")
    z = pipe.initial_noise(2, 8, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, torch.randn(2, 3, 8, 16, 16,
                                              generator=torch.Generator().manual_seed(3)))


def test_autocast_follows_the_device_and_dtype():
    assert autocast_dtype(torch.device("cpu"), None) == torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), torch.float32) is None
    assert autocast_dtype(torch.device("cuda"), torch.float16) == torch.float16


def test_float32_pipeline_is_close_to_bf16_and_not_equal(pipe, randomized_unet):
    exact = VideoDiffusionPipeline(randomized_unet(TINY), dtype=torch.float32)
    config = default_config("generate", steps=2)
    a = pipe("a red circle moving up", config=config.seeded(0)).x
    b = exact("a red circle moving up", config=config.seeded(0)).x
    assert not torch.equal(a, b)
    assert (a - b).abs().mean() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_seed_same_video_on_cuda_within_bf16(tmp_path, pipe):
    pipe.model.save_pretrained(tmp_path)
    gpu = VideoDiffusionPipeline.from_pretrained(tmp_path, text_encoder=pipe.text_encoder,
                                                 device="cuda")
    config = default_config("generate", steps=4)
    a = pipe("a red circle moving up", config=config.seeded(5)).frames
    b = gpu("a red circle moving up", config=config.seeded(5)).frames
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
