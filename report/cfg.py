"""Our Table 5: caption match vs classifier-free guidance weight w (eq. 6), text-to-video."""

import numpy as np
from tqdm import tqdm

from report.common import Settings, Table, eval_clips, run_job, seed_range, summarise, task_config
from report.pictures import save_strips
from vdm_core.compare import score_video
from vdm_core.detect import caption_match
from vdm_core.pipeline import VideoDiffusionPipeline

SEED_OFFSET = 100


def jobs(s: Settings) -> int:
    return len(s.cfg_weights)


def section(pipe: VideoDiffusionPipeline, s: Settings, outer: tqdm) -> str:
    """One sample per held-out caption (2 x s.samples of them) and w, the same noise for every w."""
    window, n = pipe.config.num_frames, 2 * s.samples
    captions = [c.caption for c in eval_clips("cfg", n, 1, pipe.config.image_size)]
    table = Table(f"Table 5 analogue: classifier-free guidance ({window} frames, text-to-video)",
                  ["w"], [("match", "caption match", 2), ("colour", "colour kept", 2),
                          ("shape", "shape kept", 2), ("spread", "pixel spread", 3)])
    strips = []
    for w in s.cfg_weights:
        config = task_config("generate", s, w=w).seeded(s.seed + SEED_OFFSET)
        out = run_job(f"w={w:g}", outer, pipe, captions, window, config=config)
        per = []
        for v, cap in zip(out.videos, captions, strict=True):
            kept = score_video(v, range(len(v)), caption=cap).scores
            per.append({"match": caption_match(v, cap), "colour": kept["colour_persistence"],
                        "shape": kept["shape_persistence"], "spread": float(v.std() / 255.0)})
        table.rows.append(summarise([f"{w:g}"], per, rates=("match",)))
        strips.append((f"w={w:g}", np.concatenate(out.videos[:4], axis=2)))
    save_strips(s.pictures / "cfg.png", strips, max_frames=8, columns=8)
    first, stop = seed_range("cfg", n)
    table.notes = [
        f"{n} held-out captions (EVAL_SEEDS[{first}:{stop}]), "
        "one sample each per w, the same noise for every w. Caption match: every captioned "
        "colour+shape detected in >= half the frames and no other colour (detect.caption_match); "
        "pixel spread: the std of the pixel values (a saturation check for large w). w is the "
        "paper's eq. 6 weight (0 = no guidance).",
        "",
        f"![cfg samples: 4 captions side by side, 8 of {window} frames](results/cfg.png)",
    ]
    return table.markdown()
