"""A pixel-level object detector for the bouncing-shapes world (no neural network).

Pipeline for one uint8 frame:

1. Colour model: every world pixel is ``background + a * (colour - background)`` for a palette
   colour and a coverage ``a`` in ``[0, 1]`` (anti-aliasing). For each palette colour the pixel
   is projected onto that colour's background-to-colour axis, giving a coverage estimate and a
   residual distance off the axis; the pixel takes the colour with the smallest residual, and
   is background when its coverage is small or its residual too large.
2. Blobs: connected components of confidently covered pixels (coverage >= 0.5) per colour;
   tiny blobs are dropped as noise. Each blob's soft mask is its pixels' coverage over the blob
   grown by one pixel, which recovers the anti-aliased rim.
3. Measurements: area = sum of coverage, centroid = coverage-weighted mean pixel centre.
4. Shape: each candidate shape is rendered (anti-aliased, with the world's own geometry) at
   the measured centroid with the size implied by the measured area, and the shape whose
   template differs least from the soft mask (L1) wins.
"""

import re
from dataclasses import dataclass, replace

import numpy as np

from vdm_core.data import (
    BACKGROUND,
    PALETTE,
    REFERENCE_SIZE,
    SHAPES,
    Scene,
    bounding_radius,
    shape_area,
    shape_coverage,
    world_clip,
)
from vdm_core.data import caption as scene_caption

COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)
_BACKGROUND = np.asarray(BACKGROUND, dtype=np.float32)  # (3,)
_AXES = np.asarray([PALETTE[c] for c in COLOUR_NAMES], dtype=np.float32) - _BACKGROUND  # (K, 3)
_AXIS_SQ = (_AXES**2).sum(axis=1)  # (K,)

MIN_COVERAGE = 0.12  # below this a pixel counts as background
CORE_COVERAGE = 0.5  # pixels at least this covered seed the connected components
RESIDUAL_ABS = 30.0  # residual (RGB distance off the colour axis) always tolerated
RESIDUAL_REL = 0.35  # ... plus this fraction of the pixel's distance from the background
MIN_AREA = 12.0  # smallest blob area in pixels at REFERENCE_SIZE, scaled with frame area

# Held-out validation scenes: seeds above both the training range and EVAL_SEEDS.
VALIDATION_SEED_BASE = 3 * 2**30


@dataclass
class Detection:
    """A detected object: palette colour, shape, centroid (pixels), area (pixels) and peak
    coverage (1 inside a drawn shape; about 1/2 for each blob of a 50% cross-fade)."""

    colour: str
    shape: str
    x: float
    y: float
    area: float
    peak: float = 1.0


def colour_coverage(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette colour per pixel and its coverage.

    Returns ``labels`` ``(H, W)`` int (index into :data:`COLOUR_NAMES`, -1 for background) and
    ``coverage`` ``(H, W)`` float32 in ``[0, 1]`` (0 for background).
    """
    offset = frame.astype(np.float32) - _BACKGROUND  # (H, W, 3)
    alpha = np.clip(offset @ _AXES.T / _AXIS_SQ, 0.0, 1.0)  # (H, W, K)
    residual = np.linalg.norm(offset[..., None, :] - alpha[..., None] * _AXES, axis=-1)  # (H, W, K)
    labels = residual.argmin(axis=-1)  # (H, W)
    best_alpha = np.take_along_axis(alpha, labels[..., None], axis=-1)[..., 0]  # (H, W)
    best_residual = np.take_along_axis(residual, labels[..., None], axis=-1)[..., 0]  # (H, W)
    tolerance = RESIDUAL_ABS + RESIDUAL_REL * np.linalg.norm(offset, axis=-1)  # (H, W)
    foreground = (best_alpha >= MIN_COVERAGE) & (best_residual <= tolerance)  # (H, W)
    return np.where(foreground, labels, -1), np.where(foreground, best_alpha, 0.0)


def _window(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Row and column slices of the mask's bounding box grown by ``margin`` (clipped)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, height)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, width)),
    )


def _centroid(weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean pixel centre ``(x, y)`` of a ``(H, W)`` weight map."""
    total = weights.sum()
    ys = np.arange(weights.shape[0]) + 0.5  # (H,)
    xs = np.arange(weights.shape[1]) + 0.5  # (W,)
    return float(weights.sum(axis=0) @ xs / total), float(weights.sum(axis=1) @ ys / total)


def classify_shape(soft: np.ndarray, x: float, y: float) -> str:
    """The shape whose area-matched template at ``(x, y)`` best fits the soft mask ``(H, W)``."""
    area = float(soft.sum())
    margin = 2 + int(np.ceil(np.sqrt(area)))
    rows, cols = _window(soft > 0, margin)
    observed = soft[rows, cols]  # (h, w)
    height, width = observed.shape
    errors = []
    for shape in SHAPES:
        radius = np.sqrt(area / shape_area(shape, 1.0))
        template = shape_coverage(
            shape, radius, np.array([x - cols.start]), np.array([y - rows.start]), height, width
        )[0]  # (h, w)
        errors.append(float(np.abs(template - observed).sum()))
    return SHAPES[int(np.argmin(errors))]


def _max3x3(x: np.ndarray) -> np.ndarray:
    """3 x 3 maximum filter of a 2-D array ``(H, W)``, zero padded at the borders."""
    height, width = x.shape
    padded = np.pad(x, 1)  # (H + 2, W + 2)
    shifted = [padded[i : i + height, j : j + width] for i in range(3) for j in range(3)]
    return np.max(shifted, axis=0)  # (H, W)


def dilate(mask: np.ndarray) -> np.ndarray:
    """Grow a boolean mask ``(H, W)`` by one pixel in all eight directions."""
    return _max3x3(mask)


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask ``(H, W)``.

    Returns ``(labels, count)``: labels ``(H, W)`` int in ``0..count`` (0 outside the mask).
    Every pixel starts with its own id and repeatedly takes the largest id among its masked
    neighbours until nothing changes, so each component ends up sharing one id.
    """
    ids = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)  # (H, W)
    while True:
        grown = np.where(mask, _max3x3(ids), 0)  # (H, W)
        if np.array_equal(grown, ids):
            break
        ids = grown
    unique, labels = np.unique(ids, return_inverse=True)
    labels = labels.reshape(mask.shape)  # (H, W)
    has_background = unique[0] == 0
    return (labels if has_background else labels + 1), len(unique) - int(has_background)


def _soft_mask(colour: int, core: np.ndarray, labels: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Coverage of one blob: its ``core`` ``(H, W)`` grown by a pixel, within its colour."""
    region = dilate(core) & (labels == colour)
    return np.where(region, cover, 0.0).astype(np.float32)  # (H, W)


def _measure(colour: int, soft: np.ndarray) -> Detection:
    """Centroid, area and shape of one blob's soft mask ``(H, W)``."""
    x, y = _centroid(soft)
    return Detection(
        colour=COLOUR_NAMES[colour],
        shape=classify_shape(soft, x, y),
        x=x,
        y=y,
        area=float(soft.sum()),
        peak=float(soft.max()),
    )


def detect_objects(frame: np.ndarray) -> list[Detection]:
    """Detect the coloured shapes in a uint8 ``(H, W, 3)`` frame, largest first."""
    labels, cover = colour_coverage(frame)  # (H, W), (H, W)
    min_area = MIN_AREA * frame.shape[0] * frame.shape[1] / REFERENCE_SIZE**2
    detections = []
    for colour in np.unique(labels[labels >= 0]):
        components, count = connected_components((labels == colour) & (cover >= CORE_COVERAGE))
        for index in range(1, count + 1):
            soft = _soft_mask(int(colour), components == index, labels, cover)  # (H, W)
            if soft.sum() >= min_area:
                detections.append(_measure(int(colour), soft))
    return sorted(detections, key=lambda d: -d.area)


def detect_clip(frames: np.ndarray) -> list[list[Detection]]:
    """Per-frame detections for uint8 frames ``(T, H, W, 3)``."""
    return [detect_objects(frame) for frame in frames]


_CAPTION_OBJECT = re.compile(r"\b(" + "|".join(COLOUR_NAMES) + r")\s+(" + "|".join(SHAPES) + r")\b")


def caption_objects(caption: str) -> list[tuple[str, str]]:
    """``(colour, shape)`` pairs named in a world caption, in order."""
    return [(m.group(1), m.group(2)) for m in _CAPTION_OBJECT.finditer(caption.lower())]


def detected_fraction(detections: list[list[Detection]], colour: str, shape: str | None) -> float:
    """Fraction of frames with a detection of ``colour`` (and ``shape`` unless None)."""
    hits = [
        any(d.colour == colour and shape in (None, d.shape) for d in frame) for frame in detections
    ]
    return float(np.mean(hits)) if hits else 0.0


def detections_match(
    detections: list[list[Detection]], caption: str, min_fraction: float = 0.5
) -> bool:
    """:func:`caption_match` on precomputed per-frame detections."""
    return bool(caption_objects(caption)) and not any(
        caption_mismatches(detections, caption, min_fraction).values())


def caption_mismatches(
    detections: list[list[Detection]], caption: str, min_fraction: float = 0.5
) -> dict[str, bool]:
    """Why a clip fails its caption (:func:`caption_match`), as three independent reasons.

    ``absent``: a captioned colour is detected in fewer than ``min_fraction`` of the frames;
    ``shape``: a captioned colour is there but not in its captioned shape; ``extra``: a colour
    the caption does not name is detected in ``min_fraction`` of the frames or more.
    """
    wanted = caption_objects(caption)
    present = {c: detected_fraction(detections, c, None) >= min_fraction for c in COLOUR_NAMES}
    return {
        "absent": any(not present[c] for c, _ in wanted),
        "shape": any(present[c] and detected_fraction(detections, c, s) < min_fraction
                     for c, s in wanted),
        "extra": any(present[c] for c in set(COLOUR_NAMES) - {c for c, _ in wanted}),
    }


def caption_match(frames: np.ndarray, caption: str, min_fraction: float = 0.5) -> bool:
    """Whether a uint8 clip ``(T, H, W, 3)`` shows what its caption says.

    Every captioned (colour, shape) must be detected in at least ``min_fraction`` of the frames,
    and no other colour may be detected in ``min_fraction`` of the frames or more.
    """
    return detections_match(detect_clip(frames), caption, min_fraction)


def visible_mask(scene: Scene, positions: np.ndarray) -> np.ndarray:
    """Which objects are unoccluded per frame, ``(T, n)`` bool.

    An object is visible when its bounding disc is disjoint from every other object's.
    """
    reach = np.array([bounding_radius(o.shape, o.radius) for o in scene.objects])  # (n,)
    gaps = np.linalg.norm(positions[:, :, None] - positions[:, None, :], axis=-1)  # (T, n, n)
    clear = gaps > reach[:, None] + reach[None, :]  # (T, n, n)
    clear |= np.eye(len(reach), dtype=bool)
    return clear.all(axis=2)


def _with_first(scene: Scene, colour: str, shape: str) -> Scene:
    """The scene with its first object's colour and shape replaced."""
    first = replace(scene.objects[0], colour=colour, shape=shape)
    return Scene(objects=(first, *scene.objects[1:]), size=scene.size)


def _wrong_colour_caption(scene: Scene) -> str:
    """The scene's caption with the first object's colour replaced by an unused colour."""
    used = {o.colour for o in scene.objects}
    wrong = next(c for c in COLOUR_NAMES if c not in used)
    return scene_caption(_with_first(scene, wrong, scene.objects[0].shape))


def _wrong_shape_caption(scene: Scene) -> str:
    """The scene's caption with the first object's shape replaced by the next shape."""
    first = scene.objects[0]
    wrong = SHAPES[(SHAPES.index(first.shape) + 1) % len(SHAPES)]
    return scene_caption(_with_first(scene, first.colour, wrong))


def _score_objects(
    scene: Scene, positions: np.ndarray, detections: list[list[Detection]]
) -> tuple[int, int, list[float]]:
    """Visible object count, correctly classified count and centroid errors for one clip."""
    visible = visible_mask(scene, positions)  # (T, n)
    total, correct, errors = 0, 0, []
    for t, frame in enumerate(detections):
        for i, obj in enumerate(scene.objects):
            if not visible[t, i]:
                continue
            total += 1
            same = [d for d in frame if d.colour == obj.colour]
            if not same:
                continue
            gaps = [np.hypot(d.x - positions[t, i, 0], d.y - positions[t, i, 1]) for d in same]
            best = int(np.argmin(gaps))
            correct += same[best].shape == obj.shape
            errors.append(float(gaps[best]))
    return total, correct, errors


def validate_detector(num_clips: int = 200, num_frames: int = 16) -> dict:
    """Score the detector on held-out ground-truth world clips.

    Returns the number of clips and visible objects, the fraction of visible objects whose
    colour and shape are detected correctly, the mean and max centroid error (pixels) of the
    detections matched to them, the fraction of clips whose true caption matches, and the
    fractions of clips whose caption with a wrong colour / wrong shape is rejected.
    """
    total, correct, errors = 0, 0, []
    matched, wrong_colour_rejected, wrong_shape_rejected = 0, 0, 0
    for i in range(num_clips):
        clip = world_clip(VALIDATION_SEED_BASE + i, num_frames)
        detections = detect_clip(clip.frames)
        n, c, e = _score_objects(clip.scene, clip.positions, detections)
        total, correct, errors = total + n, correct + c, errors + e
        matched += detections_match(detections, clip.caption)
        wrong_colour_rejected += not detections_match(detections, _wrong_colour_caption(clip.scene))
        wrong_shape_rejected += not detections_match(detections, _wrong_shape_caption(clip.scene))
    return {
        "num_clips": num_clips,
        "visible_objects": total,
        "object_accuracy": correct / max(total, 1),
        "mean_centroid_error_px": float(np.mean(errors)) if errors else float("nan"),
        "max_centroid_error_px": float(np.max(errors)) if errors else float("nan"),
        "caption_match_rate": matched / num_clips,
        "wrong_colour_reject_rate": wrong_colour_rejected / num_clips,
        "wrong_shape_reject_rate": wrong_shape_rejected / num_clips,
    }
