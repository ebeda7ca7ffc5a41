"""Regenerate assets/model/MODEL_CARD.md, its loss curve and sample grid from the shipped weights.

    python scripts/model_card.py [--model assets/model] [--samples 64] [--steps 24]

Measures the quality bar of the shipped model on held-out captions (EVAL_SEEDS): the pixel
detector validated on ground-truth clips first, then caption match for w in {0, 1, 2, 4} (our
version of the paper's Table 5), split by the number of objects in the caption, and motion
statistics (centroid acceleration away from walls, colour presence, size constancy, identity
kept) of the samples, next to the same statistics of true clips; then the unconditional model
(empty prompt: what an upload the detector cannot caption, or a cleared prompt, is extended
with) and prediction from 4 given frames at
the library's defaults, and a table of the model's targets, met or not.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from report.common import CAPTION_SEEDS, sample_batches
from report.stats import wilson
from vdm_core.conditional import predict
from vdm_core.data import EVAL_SEEDS, world_clip
from vdm_core.defaults import APP_DEFAULTS, default_config
from vdm_core.detect import caption_match, validate_detector
from vdm_core.metrics import (
    DIRECTION_SPAN,
    MISSING_PX,
    direction_cosines,
    direction_shares,
    frame_errors,
    identity_kept,
    motion_stats,
    object_errors,
)
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.records import training_log, training_phases
from vdm_core.train import TrainConfig
from vdm_core.video_io import frame_strip, frames_to_tensor

WEIGHTS = (0.0, 1.0, 2.0, 4.0)
MOTION_KEYS = ("acceleration", "presence", "area_cv", "shape_consistency", "identity_kept")
DEFAULT_MODEL = "assets/model"
PREDICTION_SEEDS = EVAL_SEEDS[-16:]  # the diagnosis's prediction clips (docs/recipe.md) and more
GIVEN, PREDICTED = 4, 12  # prediction from 4 given frames over the next 12 (issue #14's bar)
PHASE_FLAGS = ("steps", "batch_size", "lr", "weighting", "init_from", "workers")  # the recipe
CHANGED_FLAGS = ("cond_drop", "image_frames", "frameskips", "window_start_max")  # if not default


def loss_curve(model_dir: Path, phases: list[dict], out: Path) -> None:
    """Plot the training loss of every phase against the number of training clips seen (phases
    may differ in batch size), with a running mean per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = training_log(model_dir, len(phases) - 1)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    offset = 0
    for i, phase in enumerate(phases):
        batch = phase["train_config"]["batch_size"]
        rows = [r for r in records if r["phase"] == i]
        clips = (offset + np.array([r["step"] for r in rows]) * batch) / 1000
        loss = np.array([r["loss"] for r in rows])
        k = min(25, len(loss))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(clips, loss, color="#bbb", lw=0.8)
        ax.plot(clips[k - 1:], smooth, lw=1.5,
                label=f"phase {i + 1}: {phase['hardware']}, batch {batch}")
        offset += phase["step"] * batch
    ax.set(xlabel="training clips seen (thousands)", ylabel="min-SNR weighted loss",
           yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def describe_phases(phases: list[dict]) -> str:
    """One markdown bullet per training phase: command, steps, clips, wall time, hardware."""
    lines = []
    for i, phase in enumerate(phases):
        tc = phase["train_config"]
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in tc.items()
                         if (k in PHASE_FLAGS and v not in ("", 0))
                         or (k in CHANGED_FLAGS and v != getattr(TrainConfig(), k)))
        wall = phase["wall_time_s"]
        wall_text = f"{wall / 3600:.1f} h" if wall >= 3600 else f"{wall / 60:.0f} min"
        lines.append(f"- Phase {i + 1}: {phase['step']:,} steps x {tc['batch_size']} clips = "
                     f"{phase['step'] * tc['batch_size']:,} clips in {wall_text} of training "
                     f"steps on {phase['hardware']}; `vdm-train {flags}`")
    return "\n".join(lines)


def match_by_count(matches: list[bool], counts: list[int]) -> dict[int, tuple[int, int]]:
    """{number of captioned objects: (matched, samples)}."""
    return {n: (sum(m for m, c in zip(matches, counts, strict=True) if c == n), counts.count(n))
            for n in sorted(set(counts))}


def mean_stats(videos) -> dict[str, float]:
    stats = [{**motion_stats(v), "identity_kept": identity_kept(v)} for v in videos]
    return {k: float(np.nanmean([s[k] for s in stats])) for k in MOTION_KEYS}


def direction_of(videos, clips, first: int = 0) -> dict[str, float]:
    """`direction_shares` of the videos' objects over DIRECTION_SPAN frames from `first`, against
    the clips' true motion there (the caption's direction words when first = 0)."""
    return direction_shares(np.concatenate([
        direction_cosines(v, c.scene, first, first + DIRECTION_SPAN)
        for v, c in zip(videos, clips, strict=True)]))


def prediction(pipe, n: int, seed: int = 0) -> dict:
    """Prediction of PREDICTED frames after GIVEN given ones of n held-out clips, with the
    library's defaults (reconstruction guidance, eq. 7): per clip, the mean trajectory error (px)
    of sharp detections ("sharp", an object not found left out) and the same with an object not
    found scoring MISSING_PX ("scored"); the share of object-frames found; and the direction of
    the predicted motion against the true motion at the last given frame."""
    clips = [world_clip(s, GIVEN + PREDICTED) for s in PREDICTION_SEEDS[:n]]
    given = torch.stack([frames_to_tensor(c.frames[:GIVEN]) for c in clips])  # (B, C, k, H, W)
    out = predict(pipe, given, GIVEN, GIVEN + PREDICTED,
                  config=default_config("predict").seeded(seed))
    sharp, scored, found = [], [], []
    for v, c in zip(out.videos, clips, strict=True):
        per_object = object_errors(v[GIVEN:], c.positions[GIVEN:], c.scene, sharp=True)
        sharp.append(float(np.nanmean(frame_errors(per_object))))
        scored.append(float(np.mean(frame_errors(per_object, MISSING_PX))))
        found.append(float(np.mean(np.isfinite(per_object))))
    return {"sharp": sharp, "scored": scored, "found": float(np.mean(found)),
            "direction": direction_of(out.videos, clips, GIVEN - 1)}


def targets(rows, uncond: dict, truth: dict, pred: dict) -> str:
    """The model's targets (issue #14) with the measured value of each. Prediction is judged
    with objects that vanish scored (MISSING_PX), so that losing an object cannot help."""
    best_w, best_match, best_by, best_stats, _ = max(rows, key=lambda r: r[1].mean)
    two_best = best_by.get(2, (0, 0))
    pred_mean = float(np.mean(pred["scored"]))
    checks = [
        ("caption match at the best w", f"{best_match.mean:.0%} (w = {best_w:g})", ">= 90%",
         best_match.mean >= 0.9),
        ("two-object caption match at the best w", f"{two_best[0]}/{two_best[1]}", ">= 80%",
         two_best[1] > 0 and two_best[0] >= 0.8 * two_best[1]),
        ("unconditional samples: frames with identity kept",
         f"{uncond['identity_kept']:.0%} (true clips {truth['identity_kept']:.0%})", ">= 95%",
         uncond["identity_kept"] >= 0.95),
        ("mean acceleration at the best w", f"{best_stats['acceleration']:.2f} px/frame^2",
         "<= 0.4", best_stats["acceleration"] <= 0.4),
        (f"prediction from {GIVEN} given frames, next {PREDICTED}",
         f"{pred_mean:.2f} px ({len(pred['scored'])} clips; objects found in "
         f"{pred['found']:.0%} of frames)", "<= 3 px", pred_mean <= 3.0),
    ]
    return "\n".join(["| target | measured | bar | met |", "|---|---|---|---|"]
                     + [f"| {a} | {b} | {c} | {'yes' if ok else '**no**'} |"
                        for a, b, c, ok in checks])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=APP_DEFAULTS.steps)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model_dir = Path(args.model)
    phases = training_phases(model_dir)
    total_steps = sum(phase["step"] for phase in phases)
    total_clips = sum(phase["step"] * phase["train_config"]["batch_size"] for phase in phases)
    t0 = time.time()

    loss_curve(model_dir, phases, model_dir / "loss_curve.png")
    pipe = VideoDiffusionPipeline.from_pretrained(model_dir)
    clips = [world_clip(s, 16) for s in CAPTION_SEEDS[:args.samples]]
    captions = [c.caption for c in clips]
    counts = [len(c.scene.objects) for c in clips]
    truth = [c.frames for c in clips]

    detector = validate_detector()
    rows, best = [], None
    for w in tqdm(WEIGHTS, desc="caption match vs w"):
        videos = sample_batches(pipe, captions, w, args.steps, args.batch, seed=0)
        matches = [caption_match(v, c) for v, c in zip(videos, captions, strict=True)]
        match = wilson(matches)
        rows.append((w, match, match_by_count(matches, counts), mean_stats(videos),
                     direction_of(videos, clips)))
        if best is None or match.mean > best[1].mean:
            best = (w, match, videos)
    uncond_videos = sample_batches(pipe, [""] * len(captions), 0.0, args.steps, args.batch,
                                   seed=0)
    uncond = mean_stats(uncond_videos)
    pred = prediction(pipe, min(args.samples, len(PREDICTION_SEEDS)))
    truth_stats = mean_stats(truth)
    truth_direction = direction_of(truth, clips)
    truth_match = float(np.mean([caption_match(v, c) for v, c in zip(truth, captions,
                                                                      strict=True)]))

    grid = [frame_strip(v, scale=3) for v in best[2][:8]]
    Image.fromarray(np.concatenate(grid, axis=0)).save(model_dir / "samples.png")
    cfg = pipe.config
    n_params = sum(p.numel() for p in pipe.model.parameters())
    tc = phases[-1]["train_config"]
    n_counts = sorted(set(counts))
    row = ("| {} | {} | {} | {} | {acceleration:.2f} | {presence:.2f} | {area_cv:.2f} | "
           "{shape_consistency:.2f} | {identity_kept:.2f} |")

    def way(d: dict) -> str:
        return f"{d['right']:.0%} / {d['opposite']:.0%}" if d["measured"] else "none measured"

    table = "\n".join([row.format(f"{w:g}", f"{m.mean:.0%} [{m.lo:.0%}, {m.hi:.0%}]",
                                   " | ".join(f"{k}/{n}" for k, n in by.values()), way(d), **st)
                       for w, m, by, st, d in rows]
                      + [row.format("empty prompt (unconditional)", "",
                                    " | ".join("" for _ in n_counts), "", **uncond),
                         row.format("true clips", f"{truth_match:.0%}",
                                    " | ".join("" for _ in n_counts), way(truth_direction),
                                    **truth_stats)])
    count_cols = " | ".join(f"{n} object{'s' * (n > 1)}" for n in n_counts)
    header = (f"| w | caption match [95%] | {count_cols} | caption's direction (right / "
              f"opposite) | accel. px/frame^2 | colour presence | size CV | shape consistency | "
              f"identity kept |\n|---|---|{'---|' * len(n_counts)}---|---|---|---|---|---|")
    verdict = ("meets the caption-match bar" if best[1].mean >= 0.8 and args.samples >= 64 else
               "below the caption-match bar" if best[1].mean < 0.8 else
               "caption-match bar not judged (fewer than 64 samples)")
    matched = round(best[1].mean * args.samples)
    status = (f"**Status: {verdict}** ({matched}/{args.samples} = {best[1].mean:.0%} at "
              f"w = {best[0]:g}; target >= 80% on >= 64 samples).")
    model_flag = "" if args.model == DEFAULT_MODEL else f" --model {args.model}"
    card = f"""# Model card: Video Diffusion Explorer, bouncing-shapes text-to-video

A {n_params / 1e6:.1f}M-parameter factorized 3D U-Net (Ho et al. 2022, sec. 3) trained from
scratch on {" then ".join(dict.fromkeys(p["hardware"] for p in phases))} (phases below) on the
procedural bouncing-shapes world (`vdm_core/data.py`), 16 frames of 32x32,
text-conditioned through all-MiniLM-L6-v2 with attention pooling. EMA weights, float16.

{status} {total_steps:,} training steps ({total_clips:,} clips) so far; training continues
across sessions and this card is regenerated with `python scripts/model_card.py` after each export.

## Training
Each phase resumed the previous one's weights (`--init-from`, fresh optimizer) and was itself
resumed with the same command after interruptions; runs on CPU used 2 threads shared with other
work, runs on a GPU rendered data in `--workers` background processes.
{describe_phases(phases)}
- Model: base {cfg.base_channels} channels, multipliers {list(cfg.channel_mults)},
  {cfg.num_res_blocks} res block per level, spatial + temporal attention at
  {list(cfg.attn_resolutions)} px, head dim {cfg.head_dim}, {cfg.parameterization}-prediction
- Recipe: AdamW (lr {tc['lr']}, warmup {tc['warmup_steps']}), clips of
  {tc['num_frames']} frames + {tc['image_frames']} independent image frames (joint video-image
  training), {tc['weighting']} loss weighting, conditioning dropout {tc['cond_drop']}, EMA
  {tc['ema_decay']}, bf16 autocast, gradient clipping {tc['grad_clip']}

![loss curve](loss_curve.png)

## Samples (w = {best[0]:g}, {args.steps} ancestral steps, held-out captions)
![samples](samples.png)

## Evaluation ({args.samples} held-out captions, {args.steps} ancestral steps, one sample each)
Detector check on ground-truth clips first: colour+shape accuracy
{detector['object_accuracy']:.1%}, caption match {detector['caption_match_rate']:.1%}.

{header}
{table}

Caption match: every captioned colour+shape detected in at least half the frames and no other
colour; the object columns split it by the number of objects in the caption (matched / samples).
Caption's direction: of the objects found and moving over frames 0-{DIRECTION_SPAN}, the share whose
displacement points the caption's way (cosine >= 0.7) and the opposite way (<= -0.7); a model
that cannot tell forward from backward in time scores alike in both (docs/recipe.md, "The
direction of time").
Acceleration: mean |second difference| of tracked centroids away from walls (the world's
motion has 0). Identity kept: the fraction of frames in which every tracked object is detected
in its colour and most common shape and no other colour appears (true clips lose frames only
where objects occlude each other). The unconditional row samples the empty prompt at w = 0.

## Targets
{targets(rows, uncond, truth_stats, pred)}

Prediction: the first {GIVEN} frames of {len(pred['scored'])} held-out clips given, the next
{PREDICTED} sampled with the library's defaults (`pipe.predict`: reconstruction guidance, eq. 7);
mean trajectory error of sharp detections against the true positions, an object not found in a
frame scoring {MISSING_PX:g} px (half the frame). Leaving such objects out instead gives
{float(np.nanmean(pred['sharp'])):.2f} px: a model that loses objects would look better by that
measure. Direction of the predicted motion over frames {GIVEN - 1}-{GIVEN - 1 + DIRECTION_SPAN}
against the true motion at frame {GIVEN - 1}: {way(pred['direction'])} (right / opposite).

Generated in {(time.time() - t0) / 60:.0f} min by `python scripts/model_card.py{model_flag}
--samples {args.samples} --steps {args.steps}`.
"""
    (model_dir / "MODEL_CARD.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
