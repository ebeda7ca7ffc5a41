"""Per-step latency of the 3D U-Net on CPU, optionally side by side with lucidrains' Unet3D.

    python bench/bench_unet.py [--repeats N] [--warmup N] [--reference] [--profile] [--write-docs]

Times one denoising step of `UNet3D(UNetConfig())` (16 frames of 32x32, 8 text tokens) at batch 1
and batch 2 (the classifier-free guidance pair), in fp32 and under bf16 autocast, on 2 threads:
the median of N repeats after warm-up. "fwd+grad" is a reconstruction-guidance step: one forward
and a backward to the input z only (frozen weights), for every output frame. The
reconstruction-guidance ratios time the real `ReconstructionGuidance.x_hat` on a
`VideoDiffusionPipeline.denoiser` (with a stand-in text encoder, so MiniLM is not needed) against
a plain call of the same denoiser (GUIDANCE_CASES): 8 known frames of 16 (eq. 7), the app's
extension step (4 known frames, classifier-free guidance w = 2) and a low-res view (eq. 8).

`--reference` adds `Unet3D(dim=32, dim_mults=(1, 2, 4))` from video-diffusion-pytorch 0.7.0 in the
same process, timed in interleaved rounds with ours. It needs its own environment (see
REFERENCE_SETUP), never the project venv; the project is imported from this checkout.
The guidance ratios are timed in `--rounds` fresh processes (median and range).
`--profile` adds a per-op breakdown of our bf16 step (torch.profiler). `--write-docs` replaces the
section between the unet markers of docs/performance.md.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf_docs import DOCS, write_section  # noqa: E402

from vdm_core.defaults import APP_DEFAULTS  # noqa: E402
from vdm_core.guidance import Observation, ReconstructionGuidance  # noqa: E402
from vdm_core.memory import retain_freed_memory  # noqa: E402
from vdm_core.pipeline import VideoDiffusionPipeline  # noqa: E402
from vdm_core.unet3d import UNet3D, UNetConfig  # noqa: E402

THREADS = 2
TEXT_TOKENS = 8
GUIDANCE_CASES = {  # reconstruction-guidance step: (known frames of 16, None = 4x low-res view; w)
    "eq7": (8, 0.0),  # the first half of the window known
    "eq7 app": (APP_DEFAULTS.k, APP_DEFAULTS.w),  # the app's extension: k = 4, CFG w = 2
    "eq8": (None, 0.0),  # a 4x average-pooled view of every frame (super-resolution)
}
CASES = (("forward", 1), ("forward", 2), ("fwd+grad", 1))  # (step kind, batch) timed
TARGET_GUIDANCE = 2.0  # reconstruction-guidance step / plain step
TARGET_VS_REFERENCE = 0.5  # our step / the reference's step
START, END = "<!-- unet:start -->", "<!-- unet:end -->"
BENCH_VENV = "/root/.cache/vdm-bench-venv"
REFERENCE_SETUP = f"""python3 -m venv {BENCH_VENV}
{BENCH_VENV}/bin/pip install torch==2.13.0
{BENCH_VENV}/bin/pip install --no-deps video-diffusion-pytorch==0.7.0 einops einops-exts \\
    rotary-embedding-torch numpy pillow imageio tqdm"""
REFERENCE_KWARGS = {"dim": 32, "dim_mults": (1, 2, 4), "cond_dim": 384, "attn_heads": 4,
                    "attn_dim_head": 32}

Step = Callable[[], object]
Call = Callable[[torch.Tensor], torch.Tensor]


class RandomText:
    """A stand-in text encoder: fixed random states of TEXT_TOKENS tokens for every caption."""

    def __init__(self, dim: int):
        self.states = torch.randn(1, TEXT_TOKENS, dim)

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(captions)
        return self.states.expand(n, -1, -1), torch.ones(n, TEXT_TOKENS, dtype=torch.bool)


def autocast(precision: str):
    """bf16 autocast for "bf16", a disabled autocast (plain fp32) for "fp32"."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def forward_step(call: Call, z: torch.Tensor, precision: str) -> Step:
    """One forward pass without autograd, as a sampler runs it."""

    def step():
        with torch.no_grad(), autocast(precision):
            return call(z)

    return step


def grad_step(call: Call, z: torch.Tensor, precision: str) -> Step:
    """One forward and a backward to the input only, as `ReconstructionGuidance.x_hat` does."""

    def step():
        z_in = z.detach().requires_grad_(True)
        with autocast(precision):
            out = call(z_in)
        return torch.autograd.grad(out.float().square().sum(), z_in)

    return step


def make_step(kind: str, call: Call, z: torch.Tensor, precision: str) -> Step:
    """A "forward" or a "fwd+grad" step."""
    return (forward_step if kind == "forward" else grad_step)(call, z, precision)


def time_interleaved(steps: dict, repeats: int, warmup: int) -> dict:
    """Median milliseconds of each step, run in alternating rounds so that drift hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: 1000.0 * statistics.median(ts) for name, ts in times.items()}


def stub_torchvision() -> None:
    """video_diffusion_pytorch imports torchvision only for its data helpers: stub it if absent."""
    if importlib.util.find_spec("torchvision") is not None:
        return

    def unused(*args, **kwargs):
        return None

    tv = types.ModuleType("torchvision")
    for name in ("transforms", "utils"):
        sub = types.ModuleType(f"torchvision.{name}")
        sub.__getattr__ = lambda attr: unused
        setattr(tv, name, sub)
        sys.modules[sub.__name__] = sub
    sys.modules["torchvision"] = tv


def load_reference() -> type | None:
    """lucidrains' `Unet3D` class, or None when video-diffusion-pytorch is not installed."""
    if importlib.util.find_spec("video_diffusion_pytorch") is None:
        return None
    stub_torchvision()
    from video_diffusion_pytorch import Unet3D

    return Unet3D


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_calls(ours: UNet3D, reference: torch.nn.Module | None, batch: int) -> dict[str, Call]:
    """z -> network output for each model, conditioned on text (row 2 of a pair unconditional)."""
    cfg = ours.config
    logsnr = torch.zeros(batch)
    states = torch.randn(batch, TEXT_TOKENS, cfg.text_dim)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool)
    mask[1:] = False  # the CFG pair: one conditional and one unconditional row
    calls = {"ours": lambda z: ours(z, logsnr, states, mask)}
    if reference is not None:
        timestep = torch.full((batch,), 500.0)
        cond = states.mean(dim=1)  # their text conditioning is one pooled vector (B, cond_dim)
        calls["reference"] = lambda z: reference(z, timestep, cond=cond)
    return calls


def bench_steps(ours: UNet3D, reference: torch.nn.Module | None, repeats: int,
                warmup: int) -> dict[tuple[str, int, str, str], float]:
    """{(model, batch, step kind, precision): ms} for every case of CASES (reference: batch 1).

    All steps of one batch size run in the same alternating rounds, so the ratios between them
    (ours / reference, fwd+grad / forward) see the same machine load.
    """
    cfg = ours.config
    results = {}
    for precision in ("fp32", "bf16"):
        for batch in sorted({batch for _, batch in CASES}):
            z = torch.randn(batch, cfg.channels, cfg.num_frames, cfg.image_size, cfg.image_size)
            calls = model_calls(ours, reference if batch == 1 else None, batch)
            steps = {(name, kind): make_step(kind, call, z, precision)
                     for kind, case_batch in CASES if case_batch == batch
                     for name, call in calls.items()}
            for (name, kind), ms in time_interleaved(steps, repeats, warmup).items():
                results[name, batch, kind, precision] = ms
                print(f"  {name:9s} batch {batch} {kind:8s} {precision}: {ms:8.1f} ms", flush=True)
    return results


def bench_guidance(ours: UNet3D, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """{precision: {case or "plain w=<w>": ms}} of the pipeline denoiser (GUIDANCE_CASES).

    Each guided step is timed against a plain call of the same classifier-free-guided denoiser
    (batch 1 at w = 0, the conditional/unconditional pair at w > 0).
    """
    cfg = ours.config
    z = torch.randn(1, cfg.channels, cfg.num_frames, cfg.image_size, cfg.image_size)
    logsnr = torch.zeros(1)
    frames = torch.rand(1, cfg.channels, cfg.num_frames, cfg.image_size, cfg.image_size) * 2 - 1
    lowres = torch.nn.functional.avg_pool3d(frames, (1, 4, 4))  # (1, C, T, H / 4, W / 4)
    results = {}
    for precision in ("fp32", "bf16"):
        pipe = VideoDiffusionPipeline(ours, RandomText(cfg.text_dim), bf16=precision == "bf16")
        denoisers = {w: pipe.denoiser(["a red circle moving right"], w)
                     for w in sorted({w for _, w in GUIDANCE_CASES.values()})}

        def plain(denoise):
            def step():
                with torch.no_grad():
                    return denoise(z, logsnr)
            return step

        def guided(strategy, denoise):
            def step():
                with torch.no_grad():  # as in a sampler: x_hat enables grad itself
                    return strategy.x_hat(denoise, z, logsnr)
            return step

        steps = {f"plain w={w:g}": plain(denoise) for w, denoise in denoisers.items()}
        for name, (known, w) in GUIDANCE_CASES.items():
            obs = (Observation.low_resolution(lowres) if known is None
                   else Observation.known_frames(list(range(known)), frames[:, :, :known]))
            steps[name] = guided(ReconstructionGuidance(obs), denoisers[w])
        results[precision] = time_interleaved(steps, repeats, warmup)
        print(f"  pipeline {precision}: " + ", ".join(
            f"{name} {ms:.1f} ms" for name, ms in results[precision].items()), flush=True)
    return results


def guidance_rounds(rounds: int, repeats: int, warmup: int) -> list[dict[str, dict[str, float]]]:
    """`bench_guidance` in `rounds` fresh processes, one after the other.

    The guided / plain ratio moves by several percent from one process to the next on a shared
    machine (heap layout, neighbours), more than within one process; the report gives the
    median over processes and the range.
    """
    results = []
    for i in range(rounds):
        out = subprocess.run([sys.executable, __file__, "--guidance-only", "--repeats",
                              str(repeats), "--warmup", str(warmup)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  round {i + 1}/{rounds}: " + ", ".join(
            f"{p} {name} {ratio:.3f}" for p in ("fp32", "bf16")
            for name, ratio in round_ratios(results[-1][p]).items()), flush=True)
    return results


def profile_ops(ours: UNet3D, precision: str, calls: int = 3, rows: int = 10) -> list[str]:
    """Where our batch-1 step spends its time: torch.profiler self CPU ms per op and step."""
    cfg = ours.config
    z = torch.randn(1, cfg.channels, cfg.num_frames, cfg.image_size, cfg.image_size)
    call = model_calls(ours, None, 1)["ours"]
    per_op = {}
    for kind in ("forward", "fwd+grad"):
        step = make_step(kind, call, z, precision)
        step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                step()
        per_op[kind] = {e.key: e.self_cpu_time_total / calls / 1000.0
                        for e in prof.key_averages()}
    totals = {kind: sum(ops.values()) for kind, ops in per_op.items()}
    top = sorted(per_op["fwd+grad"], key=per_op["fwd+grad"].get, reverse=True)[:rows]
    lines = [f"| op ({precision}, batch 1) | forward ms | fwd+grad ms | share of fwd+grad |",
             "|---|---|---|---|"]
    for op in top:
        grad_ms = per_op["fwd+grad"][op]
        lines.append(f"| `{op}` | {per_op['forward'].get(op, 0.0):.1f} | {grad_ms:.1f} | "
                     f"{100 * grad_ms / totals['fwd+grad']:.0f}% |")
    lines.append(f"| total (profiled) | {totals['forward']:.1f} | {totals['fwd+grad']:.1f} | "
                 "100% |")
    return lines


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def has_bf16_isa() -> bool:
    return "avx512_bf16" in Path("/proc/cpuinfo").read_text()


def status(value: float, target: float) -> str:
    return "met" if value <= target else "**missed**"


def report(steps, guidance, params: dict[str, int], repeats: int, warmup: int,
           load: tuple[float, float], profile: list[str]) -> str:
    """The markdown section: setup, commands, the latency table and the ratios against targets."""
    lines = [
        "## U-Net step latency (`bench/bench_unet.py`)",
        "",
        f"Machine: {cpu_model()} (AVX-512 BF16: {'yes' if has_bf16_isa() else 'no'}), "
        f"{THREADS} threads (`torch.set_num_threads({THREADS})`); torch {torch.__version__}, "
        f"Python {platform.python_version()}; {datetime.date.today().isoformat()}. "
        f"Median of {repeats} repeats after {warmup} warm-up calls; all steps of one batch size "
        "(both models, forward and fwd+grad) are timed in alternating rounds in one process. "
        "1-minute load average before / after the "
        f"run: {load[0]:.1f} / {load[1]:.1f} (this run accounts for about {THREADS}; more means "
        "other processes shared the cores: absolute times are then inflated, the side-by-side "
        "ratios much less).",
        "",
        "Input: 16 frames of 32x32, `UNet3D(UNetConfig())` conditioned on 8 text tokens (batch 2 "
        "is the classifier-free guidance pair: one conditional, one unconditional row). "
        "*forward*: one call under `torch.no_grad()`. *fwd+grad*: forward plus "
        "`torch.autograd.grad(loss, z)` with frozen weights, the cost of a reconstruction-guidance "
        "step. bf16 is `torch.autocast(\"cpu\", dtype=torch.bfloat16)`. The process keeps freed "
        "memory in its heap (`vdm_core.memory.retain_freed_memory`, as the app, the CLI and the "
        "trainer do); without it glibc returns the activations of each fwd+grad step to the OS "
        "and the next step faults them in again (about 10,000 page faults per step).",
        "",
    ]
    with_reference = "reference" in params
    if with_reference:
        lines += [
            "Reference: lucidrains' `Unet3D(dim=32, dim_mults=(1, 2, 4), cond_dim=384, "
            "attn_heads=4, attn_dim_head=32)` from video-diffusion-pytorch 0.7.0: same width, "
            "depth, frames and resolution; 4 heads of 32 match our widest attention (128 channels "
            "= 4 x 32). It is conditioned on a single 384-d vector (the mean of the same 8 token "
            "states; it has no token-level text input) and a timestep. Its architecture is "
            "heavier per level (2 ResNet blocks, linear spatial attention and temporal attention "
            "at every level plus a 7x7 stem; we have 1 block and full attention at 16x16 and 8x8 "
            "only). It is timed at batch 1, where the targets are.",
            "",
        ]
    lines += [
        "Reproduce (from the repository root):",
        "",
        "```bash",
        ". .venv/bin/activate && python bench/bench_unet.py   # ours only",
        "# side by side with the reference, in a separate environment:",
        REFERENCE_SETUP,
        f"{BENCH_VENV}/bin/python bench/bench_unet.py --reference --repeats {repeats} "
        f"--warmup {warmup} --rounds {len(guidance)}{' --profile' if profile else ''} "
        "--write-docs",
        "```",
        "",
        "Parameters: " + ", ".join(f"{name} {n / 1e6:.2f}M" for name, n in params.items()) + ".",
        "",
    ]
    lines += step_table(steps, with_reference) + [""]
    lines += ratio_table(steps, guidance, with_reference)
    lines += ["", floor_note(steps)]
    if not with_reference:
        lines += ["", "The reference was not measured: run with `--reference` from the bench "
                  "environment above."]
    if profile:
        lines += ["", "Where our step spends its time (`--profile`: `torch.profiler` self CPU time "
                  "per op, averaged over 3 calls; the profiler inflates totals a little):", ""]
        lines += profile
    return "\n".join(lines)


def floor_note(steps) -> str:
    """Why the guidance ratio sits near 2, with this run's cost of the backward pass to z."""
    backward = {p: steps["ours", 1, "fwd+grad", p] / steps["ours", 1, "forward", p] - 1
                for p in ("fp32", "bf16")}
    return ("Why the guidance ratio sits near 2: a guided step is the plain forward pass plus a "
            "backward pass to z (frozen weights). Through the whole U-Net that backward pass "
            f"costs {backward['fp32']:.2f} forward passes in fp32 and {backward['bf16']:.2f} in "
            "bf16 in this run (the fwd+grad row). A convolution's backward pass to its input "
            "costs about one forward convolution, but attention needs two matmuls backward per "
            "forward matmul (queries, keys and values all depend on z; `PackedAttention` writes "
            "this backward out), and the softmax, GroupNorm and SiLU backward passes come on "
            "top. On known frames (eq. 7) the guided step beats that: the squared error depends "
            "only on the outputs at the known frames, and the U-Net's layers after its last "
            "temporal attention (the full-resolution up path) act on each frame alone, so "
            "`backprop_frames` keeps their autograd history for the known frames only and the "
            "backward pass skips the rest (exactly: same outputs, same gradient). A low-res view "
            "(eq. 8) constrains every frame, so there the full backward pass remains. Overhead "
            "removed from the forward pass alone shortens both steps but raises the ratio; the "
            "step times above are the absolute measure.")


def step_table(steps, with_reference: bool) -> list[str]:
    models = ("ours", "reference") if with_reference else ("ours",)
    cols = [f"{m} {p} ms" for m in models for p in ("fp32", "bf16")]
    if with_reference:
        cols += ["ours / reference fp32", "ours / reference bf16"]
    lines = ["| step | batch | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for kind, batch in CASES:
        cells = [f"{steps[m, batch, kind, p]:.1f}" if (m, batch, kind, p) in steps else "-"
                 for m in models for p in ("fp32", "bf16")]
        if with_reference:
            cells += [f"{ratio_vs_reference(steps, batch, kind, p):.2f}" if batch == 1 else "-"
                      for p in ("fp32", "bf16")]
        lines.append(f"| {kind} | {batch} | " + " | ".join(cells) + " |")
    return lines


def ratio_vs_reference(steps, batch: int, kind: str, precision: str) -> float:
    return steps["ours", batch, kind, precision] / steps["reference", batch, kind, precision]


def round_ratios(ms: dict[str, float]) -> dict[str, float]:
    """{case: guided / plain} of one round at one precision."""
    return {name: ms[name] / ms[f"plain w={w:g}"] for name, (_, w) in GUIDANCE_CASES.items()}


def guidance_ratios(guidance: list[dict], case: str) -> dict[str, list[float]]:
    """{precision: [guided / plain of each round]} for one of GUIDANCE_CASES."""
    return {p: [round_ratios(r[p])[case] for r in guidance] for p in ("fp32", "bf16")}


def median(values: float | list[float]) -> float:
    return statistics.median(values) if isinstance(values, list) else values


def ratio_table(steps, guidance, with_reference: bool) -> list[str]:
    """Each target ratio at fp32 and bf16, with met / missed."""
    rows = [
        (f"reconstruction-guidance step / plain step, {GUIDANCE_CASES['eq7'][0]} of 16 frames "
         f"known (eq. 7; pipeline denoiser, batch 1; median of {len(guidance)} processes, range)",
         guidance_ratios(guidance, "eq7"), TARGET_GUIDANCE),
        (f"... {APP_DEFAULTS.k} of 16 known at w = {APP_DEFAULTS.w:g} (the app's extension "
         "step; batch 2)", guidance_ratios(guidance, "eq7 app"), TARGET_GUIDANCE),
        ("... a 4x downsampled view of all frames (eq. 8; batch 1)",
         guidance_ratios(guidance, "eq8"), TARGET_GUIDANCE),
        ("fwd+grad / forward (U-Net, batch 1, gradient of every output frame)",
         {p: steps["ours", 1, "fwd+grad", p] / steps["ours", 1, "forward", p]
          for p in ("fp32", "bf16")}, TARGET_GUIDANCE),
    ]
    if with_reference:
        rows += [(f"ours / reference, {kind} batch 1",
                  {p: ratio_vs_reference(steps, 1, kind, p) for p in ("fp32", "bf16")},
                  TARGET_VS_REFERENCE) for kind in ("forward", "fwd+grad")]
    lines = ["| ratio | fp32 | bf16 | target |", "|---|---|---|---|"]
    for name, values, target in rows:
        cells = [f"{median(values[p]):.3f} ({status(median(values[p]), target)})"
                 + (f", {min(values[p]):.3f}-{max(values[p]):.3f}"
                    if isinstance(values[p], list) else "")
                 for p in ("fp32", "bf16")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | <= {target} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per step (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--reference", action="store_true",
                        help="also time lucidrains' Unet3D (video-diffusion-pytorch 0.7.0)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile our bf16 batch-1 step per op (torch.profiler)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="fresh processes that time the reconstruction-guidance ratio")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"write the results into {DOCS.relative_to(ROOT)}")
    parser.add_argument("--guidance-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    retain_freed_memory()  # as the app and the CLI do, for the raw U-Net steps too
    torch.manual_seed(0)

    ours = UNet3D(UNetConfig()).eval().requires_grad_(False)
    if args.guidance_only:  # one round of `guidance_rounds`
        print(json.dumps(bench_guidance(ours, args.repeats, args.warmup)))
        return
    params = {"ours": num_params(ours)}
    reference = None
    if args.reference:
        reference_cls = load_reference()
        if reference_cls is None:
            print("video-diffusion-pytorch is not installed here; skipping the reference. Make "
                  f"its environment with:\n{REFERENCE_SETUP}\nand run this script with "
                  f"{BENCH_VENV}/bin/python.", file=sys.stderr)
        else:
            reference = reference_cls(**REFERENCE_KWARGS).eval().requires_grad_(False)
            params["reference"] = num_params(reference)
    else:
        print("Skipping lucidrains' Unet3D: pass --reference from an environment with "
              f"video-diffusion-pytorch 0.7.0, made with:\n{REFERENCE_SETUP}\n", file=sys.stderr)

    print(f"parameters: {params}", flush=True)
    load_before = os.getloadavg()[0]
    steps = bench_steps(ours, reference, args.repeats, args.warmup)
    guidance = guidance_rounds(args.rounds, args.repeats, args.warmup)
    load = (load_before, os.getloadavg()[0])
    profile = profile_ops(ours, "bf16") if args.profile else []
    section = report(steps, guidance, params, args.repeats, args.warmup, load, profile)
    print("\n" + section)
    if args.write_docs:
        write_section(f"{START}\n{section}\n{END}", START, END)
        print(f"\nwrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
