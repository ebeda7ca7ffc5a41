"""Pixel-level measures of generated videos (no downloaded networks).

The paper scores long videos (Table 6) with FVD / FID / IS, which need Inception-style networks;
here the world is procedural, so coherence is measured directly in pixels and with the
`detect` module's object detector:

- `frame_change` / `seam_jump`: a block-autoregressive video (sec. 3.1) that is incoherent across
  its blocks shows a jump at every block boundary (the paper's Fig. 4 failure of replacement).
- `conditioning_fidelity` / `lowres_mse`: how well a sample agrees with what it was conditioned
  on: the known frames x^a (eq. 7) or the low-resolution view x^a = D(x) (eq. 8).
- `trajectory_error` / `persistence` / `motion_stats`: where the objects are, whether they keep
  their colour and shape, and whether they move like the world's physics (constant velocity,
  elastic wall bounces).
- `diversity`: how different samples from different seeds are.
- `describe_clip`: a world caption read from frames (the app fills an upload's prompt with it).
- `direction_cosines` / `direction_shares`: whether objects move the way a caption or a context
  says (the direction of time: a model that cannot tell forward from backward scores near 0 on
  average, with as many objects moving the opposite way as the right way).

Every function is pure and takes uint8 frames (T, H, W, 3). Pixel distances are measured on the
[0, 1] scale (uint8 value / 255); positions and trajectory errors are in pixels.
"""

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vdm_core.data import DIRECTIONS, Scene, scene_at
from vdm_core.detect import Detection, caption_objects, detect_clip


def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Validate uint8 frames (T, H, W, 3) and return them as float64 on the [0, 1] scale."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (T, H, W, 3), got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3), got {frames.shape}")
    return frames.astype(np.float64) / 255.0  # (T, H, W, 3)


def frame_change(frames: np.ndarray) -> np.ndarray:
    """Mean absolute pixel change between consecutive frames, (T - 1,) on the [0, 1] scale.

    Entry i is mean |x_{i+1} - x_i|, the change into frame i + 1.
    """
    x = _check_frames(frames)  # (T, H, W, 3)
    return np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # (T - 1,)


def seam_jump(frames: np.ndarray, block_starts: Sequence[int]) -> float:
    """Mean frame change across block boundaries / mean change within blocks (1.0 = seamless).

    `block_starts` are the indices of the first frame of each block (as in
    `extend(...).info["block_starts"]`); the change into a block start s (frames s - 1 -> s) is a
    boundary change, every other consecutive pair is within a block. Starts outside [1, T - 1]
    are ignored. Returns nan when there is no boundary or no within-block pair, 1.0 when both
    means are zero and inf when only the within-block mean is zero.
    """
    change = frame_change(frames)  # (T - 1,)
    seams = sorted({int(s) - 1 for s in block_starts if 1 <= int(s) < len(change) + 1})
    inside = np.ones(len(change), dtype=bool)
    inside[seams] = False
    if not seams or not inside.any():
        return float("nan")
    across, within = float(change[seams].mean()), float(change[inside].mean())
    if within == 0.0:
        return 1.0 if across == 0.0 else float("inf")
    return across / within


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape (inf when identical)."""
    mse = float(np.mean((_as_unit(a) - _as_unit(b)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def _as_unit(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float64 on the [0, 1] scale."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got dtype {x.dtype}")
    return x.astype(np.float64) / 255.0


def conditioning_fidelity(
    frames: np.ndarray, known_frames: np.ndarray, indices: Sequence[int]
) -> float:
    """PSNR (dB) of the output at `indices` against the known frames x^a (eq. 7's target).

    frames (T, H, W, 3) and known_frames (K, H, W, 3), both uint8, with K = len(indices).
    inf means the conditioning frames were reproduced exactly (as replacement does).
    """
    _check_frames(frames)
    _check_frames(known_frames, "known_frames")
    indices = [int(i) for i in indices]
    if len(indices) != len(known_frames):
        raise ValueError(f"{len(indices)} indices but {len(known_frames)} known frames")
    if any(not 0 <= i < len(frames) for i in indices):
        raise ValueError(f"indices {indices} out of range for {len(frames)} frames")
    if frames.shape[1:] != known_frames.shape[1:]:
        raise ValueError(f"frame sizes differ: {frames.shape[1:]} vs {known_frames.shape[1:]}")
    return psnr(frames[indices], known_frames)


def downsample(frames: np.ndarray, size: int, mode: str = "area") -> np.ndarray:
    """The downsampler D of eq. 8 on uint8 frames: (T, H, W, 3) -> float (T, size, size, 3).

    "area" is f x f block averaging (H = f size), "bilinear" antialiased bilinear resizing; both
    match `guidance.Observation.low_resolution`. The result is on the [0, 1] scale.
    """
    x = _check_frames(frames)  # (T, H, W, 3)
    t, h, w, _ = x.shape
    if mode == "area":
        if h % size or w % size:
            raise ValueError(f"area downsampling needs {h}x{w} to be a multiple of {size}")
        fh, fw = h // size, w // size
        return x.reshape(t, size, fh, size, fw, 3).mean(axis=(2, 4))  # (T, size, size, 3)
    if mode == "bilinear":
        y = torch.from_numpy(x).permute(0, 3, 1, 2)  # (T, 3, H, W)
        y = F.interpolate(y, size=(size, size), mode="bilinear", antialias=True)
        return y.permute(0, 2, 3, 1).numpy()  # (T, size, size, 3)
    raise ValueError(f"unknown mode {mode!r}; choose 'area' or 'bilinear'")


def lowres_mse(frames: np.ndarray, lowres: np.ndarray, mode: str = "area") -> float:
    """MSE between D(output) and the low-res input x^a (eq. 8's reconstruction error).

    frames (T, H, W, 3) and lowres (T, h, w, 3) uint8; the [0, 1] scale.
    """
    low = _check_frames(lowres, "lowres")  # (T, h, w, 3)
    if len(low) != len(frames) or low.shape[1] != low.shape[2]:
        raise ValueError(f"lowres {low.shape} does not match frames {np.shape(frames)}")
    return float(np.mean((downsample(frames, low.shape[1], mode) - low) ** 2))


def _objects(target: str | Scene) -> list[tuple[str, str]]:
    """(colour, shape) of each object of a scene, or named in a caption, in order."""
    if isinstance(target, Scene):
        return [(o.colour, o.shape) for o in target.objects]
    return caption_objects(target)


SHARP_PEAK = 0.8  # a detection at least this covered somewhere is a drawn shape, not a blend


def _nearest(frame: list[Detection], colour: str, x: float, y: float,
             shape: str | None = None) -> float:
    """Distance (px) from (x, y) to the nearest detection of `colour` (and, when `shape` is
    given, of that shape with a sharp core, peak >= SHARP_PEAK); nan when there is none."""
    gaps = [math.hypot(d.x - x, d.y - y) for d in frame if d.colour == colour
            and (shape is None or (d.shape == shape and d.peak >= SHARP_PEAK))]
    return min(gaps) if gaps else float("nan")


MISSING_PX = 16.0  # error of an object not found in a predicted frame: half the frame's side


def trajectory_error(
    frames: np.ndarray,
    true_positions: np.ndarray,
    objects: str | Scene,
    missing: float = float("nan"),
    sharp: bool = False,
) -> np.ndarray:
    """Per-frame centroid error (px) against the true object trajectories, (T,).

    frames (T, H, W, 3) uint8, true_positions (T, n, 2) (x, y) as from `data.trajectory`, and
    `objects` the scene or its caption (objects in the same order as the positions). Every true
    object is matched to the nearest detection of its colour; the frame's error is the mean
    Euclidean distance over its objects. An object with no detection of its colour scores
    `missing`: nan (the default) leaves it out of the frame's mean, so a frame with every object
    missing is nan; a number (e.g. the frame diagonal) penalises it instead.

    With sharp=True only detections of the object's shape with a sharp core count: a cross-fade
    of two frames puts a coverage-weighted centroid exactly between them, so without this a
    blurred or ghosted frame can score better than a drawn one.
    """
    return frame_errors(object_errors(frames, true_positions, objects, sharp), missing)


def object_errors(frames: np.ndarray, true_positions: np.ndarray, objects: str | Scene,
                  sharp: bool = False) -> np.ndarray:
    """Per frame and object, the distance (px) from the true centre to the nearest detection of
    the object's colour (with sharp=True: of its shape, sharp), nan where there is none, (T, n).
    The one detection pass behind `trajectory_error`; see it for the arguments."""
    _check_frames(frames)
    positions = np.asarray(true_positions, dtype=np.float64)
    wanted = _objects(objects)
    if positions.ndim != 3 or positions.shape[2] != 2:
        raise ValueError(f"true_positions must be (T, n, 2), got {positions.shape}")
    if positions.shape[:2] != (len(frames), len(wanted)):
        raise ValueError(
            f"true_positions {positions.shape} do not match {len(frames)} frames and "
            f"{len(wanted)} objects"
        )
    errors = np.full((len(frames), len(wanted)), np.nan)  # (T, n)
    for t, frame in enumerate(detect_clip(frames)):
        for i, (colour, shape) in enumerate(wanted):
            errors[t, i] = _nearest(frame, colour, *positions[t, i], shape if sharp else None)
    return errors


def frame_errors(errors: np.ndarray, missing: float = float("nan")) -> np.ndarray:
    """`trajectory_error` from `object_errors` (T, n): each frame's mean over its objects, an
    object not found scoring `missing` (nan: left out), (T,)."""
    errors = np.where(np.isnan(errors), missing, errors)  # (T, n)
    counts = (~np.isnan(errors)).sum(axis=1)  # (T,)
    sums = np.nansum(errors, axis=1)  # (T,)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def ghost_rate(frames: np.ndarray, objects: str | Scene) -> float:
    """Fraction of frames in which some colour is detected more often than the scene (or the
    caption) has objects of it: doubled or ghosted objects (nan without objects)."""
    _check_frames(frames)
    wanted = [colour for colour, _ in _objects(objects)]
    if not wanted or not len(frames):
        return float("nan")
    ghosted = [any(sum(d.colour == c for d in frame) > wanted.count(c) for c in set(wanted))
               for frame in detect_clip(frames)]
    return float(np.mean(ghosted))


def persistence(frames: np.ndarray, objects: str | Scene, start: int = 0) -> dict[str, float]:
    """Fraction of frames (from `start` on) in which each captioned object is still present.

    "colour": a detection of the object's colour; "shape": a detection of its colour with the
    right shape. Both are averaged over the caption's objects (nan for a caption without any).
    """
    _check_frames(frames)
    wanted = _objects(objects)
    detections = detect_clip(frames[start:])
    if not wanted or not detections:
        return {"colour": float("nan"), "shape": float("nan")}
    colour = [[any(d.colour == c for d in f) for f in detections] for c, _ in wanted]
    shape = [
        [any(d.colour == c and d.shape == s for d in f) for f in detections] for c, s in wanted
    ]
    return {"colour": float(np.mean(colour)), "shape": float(np.mean(shape))}


def diversity(videos: Sequence[np.ndarray]) -> float:
    """Mean pairwise mean-absolute pixel distance between videos (0 for identical videos).

    videos: two or more uint8 arrays (T, H, W, 3) of one shape, e.g. samples from several seeds.
    """
    if len(videos) < 2:
        raise ValueError(f"diversity needs at least 2 videos, got {len(videos)}")
    x = np.stack([_check_frames(v, "videos") for v in videos])  # (N, T, H, W, 3)
    n = len(x)
    gaps = [np.abs(x[i] - x[j]).mean() for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(gaps))


def _tracks(detections: list[list[Detection]]) -> dict[str, list[Detection | None]]:
    """Per colour seen in at least half the frames: its largest detection per frame (or None)."""
    counts: dict[str, int] = {}
    for frame in detections:
        for colour in {d.colour for d in frame}:
            counts[colour] = counts.get(colour, 0) + 1
    tracks = {}
    for colour, count in counts.items():
        if 2 * count >= len(detections):
            tracks[colour] = [
                max((d for d in frame if d.colour == colour), key=lambda d: d.area, default=None)
                for frame in detections
            ]
    return tracks


def _acceleration(track: list[Detection | None], size: int, margin: float) -> list[float]:
    """|x_{t+1} - 2 x_t + x_{t-1}| (px / frame^2) over triples seen away from the walls.

    A triple is skipped when any of its centroids lies within (object radius + margin) of a
    wall, because an elastic bounce is a legitimate change of velocity.
    """
    out = []
    for prev, cur, nxt in zip(track, track[1:], track[2:], strict=False):
        if prev is None or cur is None or nxt is None:
            continue
        reach = math.sqrt(cur.area / math.pi) + margin
        near_wall = any(
            min(d.x, d.y, size - d.x, size - d.y) < reach for d in (prev, cur, nxt)
        )
        if not near_wall:
            out.append(math.hypot(nxt.x - 2 * cur.x + prev.x, nxt.y - 2 * cur.y + prev.y))
    return out


def motion_stats(frames: np.ndarray, wall_margin: float = 2.0) -> dict[str, float]:
    """Physics and identity statistics of the objects in a clip (T, H, W, 3) uint8.

    Objects are tracked by colour (a colour seen in at least half the frames is an object; its
    largest detection per frame is its position). Returns, averaged over objects:

    - "acceleration": mean centroid acceleration |second difference| in px / frame^2 over frame
      triples away from the walls (0 for the world's constant-velocity motion);
    - "presence": fraction of frames in which the object's colour is detected (colour constancy);
    - "area_cv": coefficient of variation (std / mean) of its detected area (size constancy);
    - "shape_consistency": fraction of its detections with its most common shape;
    - "num_objects": how many objects were tracked.

    Statistics without data (e.g. no object) are nan.
    """
    _check_frames(frames)
    tracks = _tracks(detect_clip(frames))
    stats: dict[str, list[float]] = {
        "acceleration": [],
        "presence": [],
        "area_cv": [],
        "shape_consistency": [],
    }
    for track in tracks.values():
        seen = [d for d in track if d is not None]
        areas = np.array([d.area for d in seen])
        shapes = [d.shape for d in seen]
        accel = _acceleration(track, frames.shape[1], wall_margin)
        stats["acceleration"].append(float(np.mean(accel)) if accel else float("nan"))
        stats["presence"].append(len(seen) / len(track))
        stats["area_cv"].append(float(areas.std() / areas.mean()))
        stats["shape_consistency"].append(max(shapes.count(s) for s in set(shapes)) / len(seen))
    out = {
        key: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        for key, values in stats.items()
    }
    out["num_objects"] = float(len(tracks))
    return out


def identity_kept(frames: np.ndarray) -> float:
    """Fraction of frames in which the clip's objects keep their identity (nan without objects).

    The objects are the colours seen in at least half the frames (as in `motion_stats`), each with
    its most common detected shape. A frame keeps identity when every object is detected there in
    its colour and shape and no other colour is detected: a colour that changes mid-clip, a
    shape that morphs, or an object that appears or vanishes all lose frames. True clips stay
    below 1 only where objects occlude each other.
    """
    _check_frames(frames)
    detections = detect_clip(frames)
    tracks = _tracks(detections)
    if not tracks:
        return float("nan")
    shapes = {}
    for colour, track in tracks.items():
        seen = [d.shape for d in track if d is not None]
        shapes[colour] = max(set(seen), key=seen.count)
    kept = [
        all(any(d.colour == c and d.shape == s for d in frame) for c, s in shapes.items())
        and {d.colour for d in frame} <= set(shapes)
        for frame in detections
    ]
    return float(np.mean(kept))


MIN_SHIFT = 0.5  # px: a smaller displacement has no direction worth scoring


def motion_against_truth(frames: np.ndarray, scene: Scene, first: int,
                         last: int) -> tuple[np.ndarray, np.ndarray]:
    """Per object of `scene`, in order: the cosine between its detected displacement from frame
    `first` to frame `last` and its true velocity at `first` (after any bounce before it), and
    the displacement's length over the true speed times `last - first` (the speed ratio), each
    (n,).

    Cosine 1: the object moves the way the scene (its caption, or the frames before `first`)
    says; -1: the opposite way. Speed ratio 1: it moves as fast as the scene says; 0: it stands
    still. Both nan where the object's colour is not detected in both frames; the cosine also
    where it moved less than MIN_SHIFT px. Keep `last - first` short: a wall bounce in between
    turns a correct motion away from the velocity at `first`.
    """
    _check_frames(frames)
    if not 0 <= first < last < len(frames):
        raise ValueError(f"need 0 <= first < last < {len(frames)} frames, got {first}, {last}")
    detections = detect_clip(frames[[first, last]])
    cosines, ratios = [], []
    for obj in scene_at(scene, first).objects:
        ends = [max((d for d in frame if d.colour == obj.colour), key=lambda d: d.area,
                    default=None) for frame in detections]
        if None in ends:
            cosines.append(float("nan"))
            ratios.append(float("nan"))
            continue
        shift = np.array([ends[1].x - ends[0].x, ends[1].y - ends[0].y])
        velocity = np.array([obj.vx, obj.vy])
        norm, speed = float(np.linalg.norm(shift)), float(np.linalg.norm(velocity))
        cosines.append(float(shift @ velocity / (norm * speed))
                       if norm >= MIN_SHIFT else float("nan"))
        ratios.append(norm / (speed * (last - first)))
    return np.array(cosines), np.array(ratios)


def direction_cosines(frames: np.ndarray, scene: Scene, first: int, last: int) -> np.ndarray:
    """The cosines of `motion_against_truth`, (n,)."""
    return motion_against_truth(frames, scene, first, last)[0]


DIRECTION_SPAN = 3  # frames over which a direction is measured (short: no wall bounce between)
ALIGNED = 0.7  # |cosine| at least this: the object moves along (or against) the true direction


def direction_shares(cosines: np.ndarray) -> dict[str, float]:
    """Summary of `direction_cosines` pooled over objects: "right" and "opposite" are the shares
    of the measured objects with cosine >= ALIGNED and <= -ALIGNED, "measured" the share of all
    objects that had a finite cosine (found in both frames and moving), "mean" the mean measured
    cosine. nan where no object was measured."""
    cosines = np.asarray(cosines, dtype=np.float64).reshape(-1)
    found = cosines[np.isfinite(cosines)]
    if not len(found):
        return {"right": float("nan"), "opposite": float("nan"),
                "measured": 0.0 if len(cosines) else float("nan"), "mean": float("nan")}
    return {"right": float(np.mean(found >= ALIGNED)),
            "opposite": float(np.mean(found <= -ALIGNED)),
            "measured": len(found) / len(cosines), "mean": float(found.mean())}

def describe_clip(frames: np.ndarray, span: int = 3) -> str:
    """A world caption read from uint8 frames (T, H, W, 3) by the detector, "" without objects.

    Each object seen in at least half the frames (as in `motion_stats`) is named by its colour
    and most common detected shape, moving in the world direction nearest its displacement over
    its last `span` detections (the motion a continuation of the clip starts from); an object
    that does not move is named without a direction. Objects are listed left to right.
    """
    _check_frames(frames)
    parts = []
    for colour, track in _tracks(detect_clip(frames)).items():
        seen = [d for d in track if d is not None]
        shapes = [d.shape for d in seen]
        shape = max(set(shapes), key=shapes.count)
        first, last = seen[-span:][0], seen[-1]
        shift = np.array([last.x - first.x, last.y - first.y])
        text = f"a {colour} {shape}"
        if np.linalg.norm(shift) >= MIN_SHIFT:
            text += " moving " + max(DIRECTIONS, key=lambda k: float(np.dot(DIRECTIONS[k], shift)))
        parts.append((last.x, text))
    return " and ".join(text for _, text in sorted(parts))


_MIRROR = {"left": "right", "right": "left", "up": "down", "down": "up"}


def mirrored_caption(text: str) -> str:
    """The caption (or direction name) with every direction word replaced by its opposite, e.g.
    "a red circle moving up and left" -> "a red circle moving down and right"."""
    return re.sub(r"\b(left|right|up|down)\b", lambda m: _MIRROR[m.group(1)], text)


def swapped_caption(text: str) -> str:
    """The caption with its two colour words exchanged: "a red circle ... and a blue square ..."
    -> "a blue circle ... and a red square ...", the same words with the colours on the other
    objects. A caption that does not name exactly two different colours is refused."""
    colours = [c for c, _ in caption_objects(text)]
    if len(colours) != 2 or colours[0] == colours[1]:
        raise ValueError(f"a swapped caption needs two different colours, got {text!r}")
    a, b = colours
    return re.sub(rf"\b({a}|{b})\b", lambda m: b if m.group(1) == a else a, text)
