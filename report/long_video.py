"""Long videos (paper Fig. 2): block-autoregressive extension vs the keyframe cascade."""

from tqdm import tqdm

from report.common import (
    Settings,
    Table,
    batch,
    eval_clips,
    run_job,
    seed_range,
    summarise,
    task_config,
)
from report.pictures import save_strips
from report.stats import paired_difference
from vdm_core.compare import score_video
from vdm_core.conditional import cascade, extend
from vdm_core.outputs import MAX_FRAMES
from vdm_core.pipeline import VideoDiffusionPipeline

SEED_OFFSET = 500
CASCADE_LIMIT = (
    "**Why the cascade does not separate from autoregressive extension here.** Over the last 32 "
    "frames both methods have lost the objects' tracks: their error is larger than holding the "
    "last given frame costs after 12 frames (prediction table), while the world's own physics, "
    "carried on from the given frames (the constant-velocity row), stays within about a pixel. "
    "The cascade decides the late frames through its keyframes, so it can only beat "
    "block-by-block extension with a keyframe model that continues a motion over 60 frames; "
    "the keyframe model here is a short CPU continuation of the shipped model (its held-out "
    "loss at frameskip 4 is still above the shipped model's at frameskip 1, docs/ship_check.md) "
    "that barely uses its frameskip input (told the wrong frameskip, its error changes by at most "
    "0.0001, docs/ship_check.md), so it is one compromise between the two frame rates rather than "
    "the paper's frameskip-4 specialist; and both models drift (the diagnosis in "
    "docs/recipe.md). Its seam jump is higher too: every "
    "interpolation window must end exactly on a keyframe drawn before it, and where the frames "
    "before it do not lead there, the frame change jumps. The comparison the paper makes needs a "
    "keyframe model trained at scale (issue #14).")
TAIL = 32  # trajectory error over the last TAIL frames


def lengths(s: Settings) -> list[int]:
    """The video lengths measured: s.frames and twice it, up to MAX_FRAMES (64 and 128)."""
    return sorted({s.frames, min(2 * s.frames, MAX_FRAMES)})


def jobs(s: Settings) -> int:
    return 2 * len(lengths(s))


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """The model's window of frames of held-out clips -> each of `lengths(s)`, both ways."""
    return "\n".join(length_table(pipe, s, outer, frames, picture=i == 0)
                     for i, frames in enumerate(lengths(s)))


def length_table(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm, frames: int,
                 picture: bool) -> str:
    """One table: the model's window of frames -> `frames` frames, autoregressive and cascade."""
    window = pipe.config.num_frames
    clips = eval_clips("long_video", s.samples, frames, pipe.config.image_size)
    x0 = batch(clips, slice(0, window))
    prompts = [c.caption for c in clips]
    tail = list(range(max(window, frames - TAIL), frames))
    table = Table(f"Long video: {window} -> {frames} frames, autoregressive vs keyframe "
                  "cascade", ["method", "s / video"],
                  [("trajectory_error_px", f"trajectory error px, last {len(tail)} frames", 2),
                   ("missing_frames", "frames without sharp objects", 2),
                   ("colour_persistence", "colour kept (last frames)", 2),
                   ("shape_persistence", "shape kept (last frames)", 2),
                   ("seam_jump", "seam jump (every block)", 2)])
    per_method, strips = {}, [("truth", clips[0].frames)]
    for name, fn, task in (("autoregressive", extend, "extend"), ("cascade", cascade, "cascade")):
        config = task_config(task, s).seeded(s.seed + SEED_OFFSET)
        args = (prompts, frames, x0) if name == "cascade" else (x0, frames, prompts)
        out = run_job(f"{name} {frames}", outer, fn, pipe, *args, config=config)
        starts = out.info["block_starts"]
        per = [{**score_video(v, tail, starts, c).scores,
                "seam_jump": score_video(v, range(window, frames), starts).scores.get(
                    "seam_jump", float("nan"))}
               for v, c in zip(out.videos, clips, strict=True)]
        per_method[name] = per
        table.rows.append(summarise([name, f"{out.info['seconds'] / s.samples:.0f}"], per))
        strips.append((name, out.videos[0]))
    if picture:
        save_strips(s.pictures / "long_video.png", strips)
    first, stop = seed_range("long_video", s.samples)
    keyframe_model = pipe.keyframe_pipe or pipe
    trained = keyframe_model.config.frameskip_conditioning
    keys = (("trajectory_error_px", f"trajectory error over the last {len(tail)} frames (px)"),
            ("colour_persistence", "colour kept"), ("shape_persistence", "shape kept"))
    diffs = {key: paired_difference(per_method["autoregressive"], per_method["cascade"], key)
             for key, _ in keys}
    separated = diffs["trajectory_error_px"]
    table.notes = [
        "Paired differences cascade minus autoregressive (trajectory error: negative = cascade "
        "better; kept: positive = cascade better): "
        + "; ".join(f"{header}: {diffs[key].text()}" for key, header in keys) + ".",
        "",
        f"Input: the first {window} frames of {s.samples} held-out world clips "
        f"(EVAL_SEEDS[{first}:{stop}]), prompt = caption, reconstruction guidance (eq. 7) at "
        "each task's default settings; the cascade samples keyframes every 4th frame at "
        "frameskip 4, then the frames between. "
        + ("The keyframes come from a second, frameskip-conditioned model and the frames "
           "between them from the main model: the paper's two-model setup (a frameskip-4 model, "
           "then a frameskip-1 model). " if pipe.keyframe_pipe is not None else "")
        + ("The keyframe model was trained with the frameskip input." if trained else
           "**The model was not trained with the frameskip input**, so it samples the keyframes "
           "as consecutive frames: they move 4x too slowly, and the cascade's trajectory error "
           "measures that, not the method. The comparison the paper makes needs a model trained "
           "with `vdm-train --frameskip-conditioning --frameskips 1,4`."),
        "",
        *([CASCADE_LIMIT, ""] if trained and separated.lo <= 0 <= separated.hi else []),
    ] + (["![long video strips](results/long_video.png)"] if picture else [])
    return table.markdown()
