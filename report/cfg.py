"""Our Table 5: caption match vs classifier-free guidance weight w (eq. 6), text-to-video."""

import numpy as np
from tqdm import tqdm

from report.common import Settings, Table, eval_clips, run_job, seed_range, summarise, task_config
from report.pictures import save_strips
from report.stats import paired_difference, wilson
from vdm_core.compare import score_video
from vdm_core.detect import caption_mismatches, caption_objects, detect_clip, detections_match
from vdm_core.pipeline import VideoDiffusionPipeline

SEED_OFFSET = 100
DRAWS = 2  # samples per caption, each with its own noise: the paired gain rests on DRAWS x n
REASONS = (("absent", "captioned colour absent"), ("shape", "wrong shape"),
           ("extra", "extra colour"))


def jobs(s: Settings) -> int:
    return len(s.cfg_weights)


def scores(video: np.ndarray, caption: str) -> dict[str, float]:
    """Caption match, its failure reasons and the per-frame quality of one sample."""
    detections = detect_clip(video)
    kept = score_video(video, range(len(video)), caption=caption).scores
    return {"match": detections_match(detections, caption),
            **caption_mismatches(detections, caption), "objects": len(caption_objects(caption)),
            "colour": kept["colour_persistence"], "shape_kept": kept["shape_persistence"],
            "spread": float(video.std() / 255.0)}


def reading(per_w: dict[float, list[dict]]) -> str:
    """What the table says about guidance, from its own numbers: the paired gain at the best w,
    the headroom left at w = 0 by object count, and how the failures change."""
    best = max(per_w, key=lambda w: np.mean([p["match"] for p in per_w[w]]))
    base = per_w[0.0]

    def count(per: list[dict], key: str, objects: int | None = None) -> str:
        group = [p for p in per if objects is None or p["objects"] == objects]
        return f"{sum(bool(p[key]) for p in group)}/{len(group)}"

    one = [p["match"] for p in base if p["objects"] == 1]
    ceiling = bool(one) and np.mean(one) >= 0.9
    text = (f"Reading: one-object captions match {count(base, 'match', 1)} at w = 0 and "
            f"two-object captions {count(base, 'match', 2)}"
            + (", so guidance can gain mostly on the second. " if ceiling else ". "))
    if best == 0.0:
        return text + "No w > 0 matches more captions than w = 0 here."
    gain = paired_difference(base, per_w[best], "match")
    verdict = "separated from 0" if gain.lo > 0 else "not separated from 0"
    return text + (
        f"At the best w = {best:g}, paired with w = 0 (same caption and noise), caption match "
        f"changes by {gain.text(2)} ({verdict}); two-object captions {count(base, 'match', 2)} "
        f"-> {count(per_w[best], 'match', 2)}. Failures at w = 0 -> w = {best:g}: "
        + ", ".join(f"{label} {count(base, key)} -> {count(per_w[best], key)}"
                    for key, label in REASONS) + ".")


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """DRAWS samples per held-out caption (2 x s.samples of them) and w, the same noise for
    every w, so each w is paired with w = 0 sample by sample."""
    window, n = pipe.config.num_frames, 2 * s.samples
    captions = [c.caption for c in eval_clips("cfg", n, 1, pipe.config.image_size)]
    prompts = captions * DRAWS
    table = Table(f"Table 5 analogue: classifier-free guidance ({window} frames, text-to-video)",
                  ["w"], [("match", "caption match", 2), ("one", "1 object", 2),
                          ("two", "2 objects", 2), ("gain", "gain vs w = 0 (paired)", 2),
                          *((key, label, 2) for key, label in REASONS),
                          ("colour", "colour kept", 2), ("shape_kept", "shape kept", 2),
                          ("spread", "pixel spread", 3)])
    strips, per_w = [], {}
    for w in s.cfg_weights:
        config = task_config("generate", s, w=w).seeded(s.seed + SEED_OFFSET)
        out = run_job(f"w={w:g}", outer, pipe, prompts, window, config=config)
        per = per_w[w] = [scores(v, cap) for v, cap in zip(out.videos, prompts, strict=True)]
        row = summarise([f"{w:g}"], [{k: p[k] for k in ("match", "absent", "shape", "extra",
                                                        "colour", "shape_kept", "spread")}
                                     for p in per], rates=("match", "absent", "shape", "extra"))
        for key, objects in (("one", 1), ("two", 2)):
            row.cells[key] = wilson([p["match"] for p in per if p["objects"] == objects])
        if w != 0.0 and 0.0 in per_w:
            row.cells["gain"] = paired_difference(per_w[0.0], per, "match")
        table.rows.append(row)
        strips.append((f"w={w:g}", np.concatenate(out.videos[:4], axis=2)))
    save_strips(s.pictures / "cfg.png", strips, max_frames=8, columns=8)
    first, stop = seed_range("cfg", n)
    table.notes = [
        f"{n} held-out captions (EVAL_SEEDS[{first}:{stop}]), {DRAWS} samples each with "
        "different noise, the same noise for every w. Caption match: every captioned "
        "colour+shape detected in >= half the frames and no other colour (detect.caption_match); "
        "the object columns split it by the caption's number of objects; the gain is the "
        "paired difference in caption match against w = 0 (t-interval over samples); the "
        "failure columns are the three reasons a sample fails (detect.caption_mismatches; one "
        "sample can have several). Pixel spread: the std of the pixel values (a saturation "
        "check for large w). w is the paper's eq. 6 weight (0 = no guidance). The Wilson "
        f"intervals treat the {DRAWS} samples of a caption as independent.",
        "",
        reading(per_w) if 0.0 in per_w else "",
        "",
        f"![cfg samples: 4 captions side by side, 8 of {window} frames](results/cfg.png)",
    ]
    return table.markdown()
