"""`vdm-sample`: sample a video from the command line, the way nanoGPT's sample.py does.

    vdm-sample "a red circle moving right" --frames 64 --steps 24 -w 2 --seed 0 -o out.mp4
    vdm-sample "a red circle moving right" --extend clip.mp4 --frames 40 -o longer.gif
    vdm-sample --super-resolve low16.mp4 --strategy lowpass -o sharp.mp4

Text-to-video by default; `--extend` continues a clip block by block to --frames frames and
`--super-resolve` lifts a low-resolution clip to the model's frame size (paper sec. 3.1), both
through `VideoDiffusionPipeline`. The suffix of -o picks the format (.mp4 or .gif). A tqdm bar
follows every denoising step of every block. Bad input ends with exit status 2 and a one-line
message on stderr, never a traceback; success prints the output path, seed and seconds.
"""

import argparse
import contextlib
import math
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from vdm_core.conditional import METHODS
from vdm_core.defaults import default_config
from vdm_core.memory import retain_freed_memory
from vdm_core.pipeline import DEFAULT_MODEL, VideoDiffusionPipeline, default_keyframe_model
from vdm_core.samplers import SAMPLERS
from vdm_core.video_io import MAX_READ_FRAMES, read_video, write_gif, write_mp4

PROG = "vdm-sample"
WRITERS = {".mp4": write_mp4, ".gif": write_gif}
STRATEGIES = ("reconstruction", "replacement", "lowpass")
MAX_SEED = 2**63 - 1


def _checked(cast: type, ok: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: `cast` the text and accept it only if ok(value), else say `expected`."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def _device(text: str) -> str:
    """An argparse type: a torch device name that this machine has (cpu, cuda, cuda:1, ...)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {text!r}: CUDA is not available here")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of vdm-sample."""
    positive = _checked(int, lambda v: v >= 1, "an integer >= 1")
    defaults = default_config("generate")
    weight = _checked(float, lambda v: 0 <= v < math.inf, "a finite number >= 0")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sample a video from the Video Diffusion Model (text-to-video, --extend a "
                    "clip or --super-resolve one) and write it as .mp4 or .gif.")
    parser.add_argument("prompt", nargs="?", default="",
                        help="caption to follow (default: empty, i.e. unconditional)")
    parser.add_argument("-o", "--output", default="sample.mp4",
                        help="output file, .mp4 or .gif (default: %(default)s)")
    parser.add_argument("--frames", type=positive,
                        help="frames of the output video (default: the model's window; "
                             "required with --extend; with --super-resolve: keep the clip's "
                             "first N frames)")
    parser.add_argument("--steps", type=positive, default=defaults.steps,
                        help="denoising steps per block (default: %(default)s)")
    parser.add_argument("-w", "--guidance-weight", type=weight, default=defaults.w,
                        help="classifier-free guidance weight w, 0 = off (default: %(default)s)")
    parser.add_argument("--seed", type=_checked(int, lambda v: 0 <= v <= MAX_SEED,
                                                f"an integer in [0, {MAX_SEED}]"),
                        help="random seed (default: a random one, printed at the end)")
    parser.add_argument("--method", choices=METHODS, default=METHODS[0],
                        help="long videos: block by block, or keyframes at frameskip 4 then the "
                             "frames between (paper Fig. 2) (default: %(default)s)")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default=defaults.sampler,
                        help="sampler (default: %(default)s)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--extend", metavar="CLIP",
                        help="extend this video to --frames frames (read at the model's size)")
    source.add_argument("--super-resolve", metavar="CLIP",
                        help="super-resolve this low-res video (square, e.g. 16x16 or 8x8) to "
                             "the model's size")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="conditioning: replacement | reconstruction for --extend, lowpass | "
                             "reconstruction for --super-resolve (default: reconstruction)")
    parser.add_argument("--w-r", type=weight,
                        help="reconstruction guidance weight w_r (default: the library's)")
    parser.add_argument("--k", type=positive,
                        help="--extend: conditioning frames per block (default: the library's)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), metavar="DIR",
                        help="model folder (default: the shipped model)")
    parser.add_argument("--keyframe-model", metavar="DIR",
                        help="--method cascade: the model that draws the keyframes at frameskip "
                             "4 (default: assets/keyframe_model with the shipped model)")
    parser.add_argument("--device", type=_device, default="cpu",
                        help="torch device, e.g. cpu or cuda (default: %(default)s)")
    parser.add_argument("--fps", type=_checked(float, lambda v: 0 < v <= 240,
                                               "a number in (0, 240]"), default=8.0,
                        help="frames per second of the output (default: %(default)s)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse argv and check the options that depend on each other (argparse errors: exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if Path(args.output).suffix.lower() not in WRITERS:
        parser.error(f"argument -o/--output: expected a file ending in .mp4 or .gif, "
                     f"got {args.output!r}")
    if args.extend and args.frames is None:
        parser.error("--extend needs --frames N, the length of the extended video")
    conditioning = {"--strategy": args.strategy, "--w-r": args.w_r, "--k": args.k}
    for flag, value in conditioning.items():
        if value is not None and not (args.extend or args.super_resolve):
            parser.error(f"{flag} applies only with --extend or --super-resolve")
    if args.k is not None and args.super_resolve:
        parser.error("--k applies only with --extend")
    if args.method != METHODS[0] and args.super_resolve:
        parser.error("--method applies to text-to-video and --extend, not --super-resolve")
    if args.keyframe_model is not None and args.method != "cascade":
        parser.error("--keyframe-model applies only with --method cascade")
    return args


def _read_clip(path: str, size: int, limit: int, too_long: str) -> np.ndarray:
    """read_video(path, size) -> uint8 (T, size, size, 3) with T <= limit, else ValueError."""
    clip = read_video(path, size=size, max_frames=limit + 1, truncate=True)
    if len(clip) > limit:
        raise ValueError(f"{Path(path).name} has more than {limit} frames; {too_long}")
    return clip


def _frame_side(path: str) -> int:
    """The short side in pixels of a video's first frame: the size of its square centre crop."""
    read_video(path, size=1, max_frames=1, truncate=True)  # a VideoReadError names any problem
    with imageio.get_reader(path) as reader:
        return min(reader.get_data(0).shape[:2])


def _read_lowres(path: str, frames: int | None) -> np.ndarray:
    """The clip to super-resolve at its own size: its first `frames` frames, or all of them."""
    side = _frame_side(path)
    if frames is not None:
        return read_video(path, size=side, max_frames=frames, truncate=True)
    return _read_clip(path, side, MAX_READ_FRAMES,
                      "pass --frames N to super-resolve its first N frames")


def _conditioning(args: argparse.Namespace) -> dict:
    """The --strategy / --w-r / --k keywords that were given (the library's defaults otherwise)."""
    given = {"strategy": args.strategy, "w_r": args.w_r, "k": args.k}
    return {name: value for name, value in given.items() if value is not None}


class ProgressBar:
    """Progress callback: one tqdm bar over every denoising step of every block, labelled
    "block b/B". It opens at the first step, so a call refused before sampling shows none."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def __call__(self, step) -> None:
        if self._bar is None:
            self._bar = tqdm(total=step.num_blocks * step.num_steps, unit="step",
                             dynamic_ncols=True)
        self._bar.set_description(f"block {step.block + 1}/{step.num_blocks}", refresh=False)
        self._bar.update(step.block * step.num_steps + step.step + 1 - self._bar.n)

    def close(self) -> None:
        """Close the bar, if it was opened."""
        if self._bar is not None:
            self._bar.close()


def load_pipeline(model: str, device: str,
                  keyframe_model: str | Path | None = None) -> VideoDiffusionPipeline:
    """The pipeline of the model folder `model` on `device` (FileNotFoundError if it is none),
    with `keyframe_model` drawing the cascade's keyframes when given."""
    pipe = VideoDiffusionPipeline.from_pretrained(model, device=device)
    return pipe.with_keyframe_model(keyframe_model) if keyframe_model else pipe


def read_source(args: argparse.Namespace, size: int) -> np.ndarray | None:
    """The clip of --extend (at the model's frame size `size`) or --super-resolve, else None."""
    if args.extend:
        return _read_clip(args.extend, size, args.frames,
                          "--frames must be at least the clip's length")
    if args.super_resolve:
        return _read_lowres(args.super_resolve, args.frames)
    return None


def generate(pipe: VideoDiffusionPipeline, args: argparse.Namespace, clip: np.ndarray | None,
             seed: int, callback):
    """Text-to-video, or --extend / --super-resolve of `clip`, as args ask; the VideoOutput."""
    common = {"num_inference_steps": args.steps, "guidance_weight": args.guidance_weight,
              "sampler": args.sampler, "generator": torch.Generator().manual_seed(seed),
              "callback": callback}
    if args.extend:
        return pipe.extend(clip, args.frames, prompt=args.prompt, method=args.method,
                           **_conditioning(args), **common)
    if args.super_resolve:
        return pipe.super_resolve(clip, prompt=args.prompt, **_conditioning(args), **common)
    return pipe(args.prompt, num_frames=args.frames, method=args.method, **common)


def run(args: argparse.Namespace, seed: int) -> tuple[Path, int]:
    """Load the model, sample with a progress bar and write the video; (path, frame count)."""
    keyframe_model = None
    if args.method == "cascade":
        keyframe_model = args.keyframe_model or default_keyframe_model(args.model)
    pipe = load_pipeline(args.model, args.device, keyframe_model)
    clip = read_source(args, pipe.config.image_size)
    with contextlib.closing(ProgressBar()) as progress:
        out = generate(pipe, args, clip, seed, progress)
    path = WRITERS[Path(args.output).suffix.lower()](out.frames, args.output, fps=args.fps)
    return path, len(out.frames)


def main(argv: list[str] | None = None) -> int:
    """Run vdm-sample on argv (default: sys.argv[1:]); returns the exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the error (2) or the help (0)
        return exc.code
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    retain_freed_memory()  # reconstruction-guidance steps reuse their memory (memory.py)
    start = time.perf_counter()
    try:
        path, frames = run(args, seed)
    except (ValueError, OSError) as exc:  # bad clips (VideoReadError), library checks, I/O
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(f"wrote {path}: {frames} frames, seed {seed}, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
