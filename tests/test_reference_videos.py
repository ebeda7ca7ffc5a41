"""The same seeds give the same videos across refactors, for every task.

The runs are in float32 (`dtype=torch.float32`, autocast off). Under the default bf16 autocast
the frames depend on the CPU: oneDNN picks AMX or AVX-512 kernels by CPU and by tensor layout,
and a few steps of reconstruction guidance amplify their rounding to whole pixels (on an AMX
machine 22-58% of the values differed from a reference written on an AVX-512 machine, up to
255). In float32 the CPU is left with summation order only: forcing AVX2 kernels on an AMX
machine changed at most 0.07% of the values, each by 1. A changed computation moves tens of
percent. `tests/data/reference_videos.npz` was written by `reference_runs` below; float32 runs
of the code before the redesign that split `extend.py` (1f7b61d) give the same bytes. The calls
use only the public API the README promises; `python tests/test_reference_videos.py --write`
rewrites the file.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm_core.data import EVAL_SEEDS, world_clip
from vdm_core.pipeline import VideoDiffusionPipeline

REFERENCE = Path(__file__).parent / "data" / "reference_videos.npz"
PROMPT = "a red circle moving up and left"
ROUNDING_SHARE = 0.005  # of the values may differ by 1 (kernel summation order)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_runs(pipe: VideoDiffusionPipeline) -> dict[str, np.ndarray]:
    """Every task at a few steps, each from its own seed: name -> frames (T, H, W, 3) uint8.

    Every setting is spelled out (the values were main's defaults), so that a later change of
    the defaults table does not change these videos.
    """
    fixed = {"guidance_weight": 2.0, "sampler": "ancestral"}
    frames = {**fixed, "w_r": 20.0, "k": 4}
    clip = world_clip(EVAL_SEEDS[3], 24)
    low = clip.frames[:8].reshape(8, 16, 2, 16, 2, 3).mean(axis=(2, 4)).round().astype(np.uint8)
    runs = {
        "generate": pipe(PROMPT, num_inference_steps=3, generator=_gen(0), **fixed).frames,
        "generate_ddim": pipe(PROMPT, num_inference_steps=3, sampler="ddim",
                              guidance_weight=1.0, generator=_gen(1)).frames,
        "generate_pc": pipe("", num_frames=8, num_inference_steps=2, sampler="pc",
                            generator=_gen(2)).frames,
        "generate_long": pipe(PROMPT, num_frames=24, num_inference_steps=2,
                              generator=_gen(3), **fixed).frames,
        "predict": pipe.predict(clip.frames, k=2, num_frames=16, num_inference_steps=3,
                                generator=_gen(6), **fixed, w_r=20.0).frames,
        "interpolate": pipe.interpolate(clip.frames[:17:4], every=4, num_inference_steps=3,
                                        generator=_gen(7), **frames).frames,
    }
    for strategy in ("replacement", "reconstruction"):
        runs[f"extend_{strategy}"] = pipe.extend(
            clip.frames[:4], 20, prompt=clip.caption, strategy=strategy, num_inference_steps=3,
            generator=_gen(4), **frames).frames
    for strategy in ("lowpass", "reconstruction"):
        runs[f"super_resolve_{strategy}"] = pipe.super_resolve(
            low, strategy=strategy, num_inference_steps=3, generator=_gen(5), w_r=4.0,
            **fixed).frames
    comparison = pipe.compare(clip.frames[:4], 20, seed=8, prompt=clip.caption,
                              num_inference_steps=2, **frames)
    for name, frames in comparison.videos.items():
        runs[f"compare_{name}"] = frames
    return runs


@pytest.fixture(scope="module")
def runs():
    return reference_runs(VideoDiffusionPipeline.from_pretrained(dtype=torch.float32))


@pytest.mark.parametrize("name", sorted(np.load(REFERENCE).files) if REFERENCE.exists() else [])
def test_same_seed_gives_the_saved_video(runs, name):
    saved = np.load(REFERENCE)[name]
    assert runs[name].shape == saved.shape
    diff = np.abs(runs[name].astype(np.int16) - saved.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= ROUNDING_SHARE, (
        f"{name}: {(diff > 0).mean():.2%} of the values differ, by up to {diff.max()}")


def test_every_task_is_recorded():
    assert REFERENCE.exists(), "run `python tests/test_reference_videos.py --write` on main"
    names = set(np.load(REFERENCE).files)
    assert {"generate", "generate_long", "predict", "interpolate", "extend_reconstruction",
            "super_resolve_reconstruction", "compare_replacement"} <= names


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    REFERENCE.parent.mkdir(exist_ok=True)
    pipe = VideoDiffusionPipeline.from_pretrained(dtype=torch.float32)
    np.savez_compressed(REFERENCE, **reference_runs(pipe))
    print(f"wrote {REFERENCE}")
