"""The procedural bouncing-shapes world: scenes, captions, exact trajectories and rendering.

A scene holds one or two coloured shapes (circle, square, triangle) moving at constant velocity
in one of eight compass directions and bouncing elastically off the frame walls. Everything is
closed form: the position of an object at any frame is a triangle wave of the frame index, so
any clip can be continued exactly (frames ``[s, s + T)`` equal the slice of frames ``[0, s + T)``).

Coordinates are continuous pixel coordinates: a ``size``-pixel frame spans ``[0, size]`` on both
axes, pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``, x grows to the right and
y grows downwards (so "up" means decreasing y).

Rendering is anti-aliased by supersampling: each pixel's coverage by a shape is the fraction of
a ``4 x 4`` grid of sub-pixel sample points inside the shape, evaluated with vectorised numpy.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from vdm_core.batch import Batch
from vdm_core.video_io import frames_to_tensor

BACKGROUND: tuple[int, int, int] = (12, 12, 16)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 210, 60),
    "blue": (40, 70, 255),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 230, 230),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

_DIAG = float(np.sqrt(0.5))

DIRECTIONS: dict[str, tuple[float, float]] = {
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up and left": (-_DIAG, -_DIAG),
    "up and right": (_DIAG, -_DIAG),
    "down and left": (-_DIAG, _DIAG),
    "down and right": (_DIAG, _DIAG),
}

REFERENCE_SIZE = 32
RADIUS_RANGE = (4.0, 7.0)  # pixels at REFERENCE_SIZE, scaled linearly with the frame size
SPEED_RANGE = (0.6, 1.6)  # pixels per frame at REFERENCE_SIZE, scaled linearly
SUPERSAMPLE = 4
PLACEMENT_TRIES = 20

SQUARE_HALF_SIDE = 0.9  # square half-side / radius: about the same area as the circle
TRIANGLE_CIRCUMRADIUS = 1.35  # equilateral triangle circumradius / radius, apex pointing up

# Training scenes are seeded with integers in [0, TRAIN_SEED_LIMIT); evaluation seeds start at
# TRAIN_SEED_LIMIT, so the training stream can never produce an evaluation scene's seed.
TRAIN_SEED_LIMIT = 2**31
EVAL_SEEDS: tuple[int, ...] = tuple(TRAIN_SEED_LIMIT + i for i in range(256))


@dataclass(frozen=True)
class WorldObject:
    """One moving shape; ``x, y`` is its centre (area centroid) at frame 0, in pixels."""

    shape: str
    colour: str
    radius: float
    x: float
    y: float
    vx: float
    vy: float
    direction: str


@dataclass(frozen=True)
class Scene:
    """A set of objects in a square ``size`` x ``size`` frame."""

    objects: tuple[WorldObject, ...]
    size: int


@dataclass
class Clip:
    """A rendered clip with its caption, true object centres and generating scene."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    caption: str
    positions: np.ndarray  # (T, n_objects, 2) float (x, y)
    scene: Scene


def extent(shape: str, radius: float) -> tuple[float, float, float, float]:
    """Distances ``(left, top, right, bottom)`` from a shape's centre to its bounding box."""
    if shape == "circle":
        return (radius, radius, radius, radius)
    if shape == "square":
        half = SQUARE_HALF_SIDE * radius
        return (half, half, half, half)
    if shape == "triangle":
        circum = TRIANGLE_CIRCUMRADIUS * radius
        half_width = circum * np.sqrt(3.0) / 2.0
        return (half_width, circum, half_width, circum / 2.0)
    raise ValueError(f"unknown shape {shape!r}")


def bounding_radius(shape: str, radius: float) -> float:
    """Radius of the smallest centred disc containing the shape."""
    if shape == "circle":
        return radius
    if shape == "square":
        return SQUARE_HALF_SIDE * radius * float(np.sqrt(2.0))
    if shape == "triangle":
        return TRIANGLE_CIRCUMRADIUS * radius
    raise ValueError(f"unknown shape {shape!r}")


def shape_area(shape: str, radius: float) -> float:
    """Exact area of a shape in square pixels."""
    if shape == "circle":
        return float(np.pi) * radius**2
    if shape == "square":
        return (2.0 * SQUARE_HALF_SIDE * radius) ** 2
    if shape == "triangle":
        return 3.0 * np.sqrt(3.0) / 4.0 * (TRIANGLE_CIRCUMRADIUS * radius) ** 2
    raise ValueError(f"unknown shape {shape!r}")


def _bounds(obj: WorldObject, size: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Allowed centre intervals ``((x_lo, x_hi), (y_lo, y_hi))`` keeping the shape in frame."""
    left, top, right, bottom = extent(obj.shape, obj.radius)
    return (left, size - right), (top, size - bottom)


def _reflect(start: float, velocity: float, lo: float, hi: float, t: np.ndarray) -> np.ndarray:
    """Position at times ``t`` of a point bouncing elastically inside ``[lo, hi]``."""
    span = hi - lo
    phase = np.mod(start - lo + velocity * t, 2.0 * span)  # (T,)
    return lo + span - np.abs(phase - span)


def _reflected_velocity(start: float, velocity: float, lo: float, hi: float, t: float) -> float:
    """Velocity of `_reflect`'s point just after time ``t``: ``velocity`` or ``-velocity``.

    The reflected position is a triangle wave of ``phase``; it moves with ``velocity`` on the
    rising half ``phase in [0, span)`` and against it on the falling half. At a wall (``phase``
    0 or ``span``) the point leaves the wall, so the half is the one ``phase`` is entering.
    """
    span = hi - lo
    phase = np.mod(start - lo + velocity * t, 2.0 * span)
    rising = phase < span if velocity >= 0 else 0.0 < phase <= span
    return velocity if rising else -velocity


def positions_at(scene: Scene, times: np.ndarray) -> np.ndarray:
    """True object centres at frame ``times`` (any frames, e.g. strided).  # (T,) -> (T, n, 2)"""
    t = np.asarray(times, dtype=np.float64)  # (T,)
    out = np.zeros((len(t), len(scene.objects), 2))  # (T, n, 2)
    for i, obj in enumerate(scene.objects):
        (x_lo, x_hi), (y_lo, y_hi) = _bounds(obj, scene.size)
        out[:, i, 0] = _reflect(obj.x, obj.vx, x_lo, x_hi, t)
        out[:, i, 1] = _reflect(obj.y, obj.vy, y_lo, y_hi, t)
    return out


def trajectory(scene: Scene, num_frames: int, start_frame: int = 0) -> np.ndarray:
    """True object centres for frames ``[start_frame, start_frame + num_frames)``.

    Returns ``(T, n_objects, 2)`` float64 ``(x, y)`` positions including wall bounces.
    """
    return positions_at(scene, np.arange(start_frame, start_frame + num_frames, dtype=np.float64))


def _sample_axis(num_pixels: int, supersample: int) -> np.ndarray:
    """Sub-pixel sample coordinates along one axis, ``(num_pixels * supersample,)``."""
    return (np.arange(num_pixels * supersample, dtype=np.float32) + 0.5) / supersample


def _inside(shape: str, radius: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Boolean inside-test for sample offsets from the centre; broadcasts ``dx`` with ``dy``."""
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        half = SQUARE_HALF_SIDE * radius
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        circum = TRIANGLE_CIRCUMRADIUS * radius
        # Apex at (0, -circum), base on y = circum / 2; the half-width grows by 1/sqrt(3) per
        # pixel of depth below the apex.
        return (dy <= circum / 2.0) & (np.sqrt(3.0) * np.abs(dx) <= dy + circum)
    raise ValueError(f"unknown shape {shape!r}")


def shape_coverage(
    shape: str,
    radius: float,
    cx: np.ndarray,
    cy: np.ndarray,
    height: int,
    width: int,
    supersample: int = SUPERSAMPLE,
) -> np.ndarray:
    """Anti-aliased pixel coverage of a shape centred at ``(cx[t], cy[t])``.

    Returns ``(T, height, width)`` float32 in ``[0, 1]``: the fraction of each pixel's
    ``supersample x supersample`` sample points inside the shape.
    """
    cx = np.asarray(cx, dtype=np.float32).reshape(-1)  # (T,)
    cy = np.asarray(cy, dtype=np.float32).reshape(-1)  # (T,)
    dx = _sample_axis(width, supersample)[None, None, :] - cx[:, None, None]  # (T, 1, W*s)
    dy = _sample_axis(height, supersample)[None, :, None] - cy[:, None, None]  # (T, H*s, 1)
    inside = _inside(shape, radius, dx, dy)  # (T, H*s, W*s)
    counts = inside.reshape(len(cx), height, supersample, width, supersample).sum(
        axis=(2, 4), dtype=np.float32
    )  # (T, H, W)
    return counts / np.float32(supersample * supersample)


def render_clip(scene: Scene, num_frames: int, start_frame: int = 0) -> np.ndarray:
    """Render frames ``[start_frame, start_frame + num_frames)`` as uint8 ``(T, H, W, 3)``.

    Objects are drawn in order (later ones on top), blending colour by coverage.
    """
    return render_at(scene, np.arange(start_frame, start_frame + num_frames, dtype=np.float64))


def render_at(scene: Scene, times: np.ndarray) -> np.ndarray:
    """Render the frames at ``times`` (any frames, e.g. strided) as uint8 ``(T, H, W, 3)``."""
    size = scene.size
    centres = positions_at(scene, times)  # (T, n, 2)
    image = np.empty((len(centres), size, size, 3), dtype=np.float32)  # (T, H, W, 3)
    image[:] = np.asarray(BACKGROUND, dtype=np.float32)
    for i, obj in enumerate(scene.objects):
        x, y = centres[:, i, 0], centres[:, i, 1]  # (T,), (T,)
        cover = shape_coverage(obj.shape, obj.radius, x, y, size, size)[..., None]  # (T, H, W, 1)
        colour = np.asarray(PALETTE[obj.colour], dtype=np.float32)  # (3,)
        image += cover * (colour - image)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _sample_motion(rng: np.random.Generator, direction: str, size: int) -> tuple[float, float]:
    """Velocity ``(vx, vy)`` in pixels per frame with a random speed along ``direction``."""
    scale = size / REFERENCE_SIZE
    speed = float(rng.uniform(SPEED_RANGE[0] * scale, SPEED_RANGE[1] * scale))
    dx, dy = DIRECTIONS[direction]
    return speed * dx, speed * dy


def place_object(
    rng: np.random.Generator,
    shape: str,
    colour: str,
    radius: float,
    direction: str,
    size: int,
) -> WorldObject:
    """An object with the given identity at a uniformly random in-frame position and speed."""
    left, top, right, bottom = extent(shape, radius)
    x = float(rng.uniform(left, size - right))
    y = float(rng.uniform(top, size - bottom))
    vx, vy = _sample_motion(rng, direction, size)
    return WorldObject(shape, colour, radius, x, y, vx, vy, direction)


def _separated(obj: WorldObject, others: list[WorldObject]) -> bool:
    """Whether ``obj``'s bounding disc at frame 0 is disjoint from every other object's."""
    reach = bounding_radius(obj.shape, obj.radius)
    return all(
        np.hypot(obj.x - o.x, obj.y - o.y) > reach + bounding_radius(o.shape, o.radius)
        for o in others
    )


def _place_all(
    rng: np.random.Generator, identities: list[tuple[str, str, float, str]], size: int
) -> tuple[WorldObject, ...]:
    """Place ``(shape, colour, radius, direction)`` objects, preferring non-overlapping starts.

    Each object gets up to ``PLACEMENT_TRIES`` positions; the first one clear of the objects
    already placed is kept (objects may still cross later while moving).
    """
    placed: list[WorldObject] = []
    for shape, colour, radius, direction in identities:
        for _ in range(PLACEMENT_TRIES):
            obj = place_object(rng, shape, colour, radius, direction, size)
            if _separated(obj, placed):
                break
        placed.append(obj)
    return tuple(placed)


def sample_radius(rng: np.random.Generator, size: int) -> float:
    """An object's radius, uniform in RADIUS_RANGE scaled to a ``size``-pixel frame."""
    scale = size / REFERENCE_SIZE
    return float(rng.uniform(RADIUS_RANGE[0] * scale, RADIUS_RANGE[1] * scale))


def sample_scene(rng: np.random.Generator, size: int = 32, max_objects: int = 2) -> Scene:
    """Sample 1..``max_objects`` objects with distinct colours, sizes, positions and motions."""
    num_objects = int(rng.integers(1, max_objects + 1))
    names = list(PALETTE)
    colour_idx = rng.choice(len(names), size=num_objects, replace=False)
    identities = [
        (
            SHAPES[int(rng.integers(len(SHAPES)))],
            names[int(k)],
            sample_radius(rng, size),
            list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))],
        )
        for k in colour_idx
    ]
    return Scene(objects=_place_all(rng, identities, size), size=size)


def caption(scene: Scene) -> str:
    """English caption, e.g. "a red circle moving up and left and a blue square moving right"."""
    parts = [f"a {o.colour} {o.shape} moving {o.direction}" for o in scene.objects]
    return " and ".join(parts)


_DIRECTION_OF_SIGNS: dict[tuple[float, float], str] = {
    (float(np.sign(dx)), float(np.sign(dy))): name for name, (dx, dy) in DIRECTIONS.items()
}


def scene_at(scene: Scene, frame: int, frameskip: int = 1) -> Scene:
    """The scene as seen from ``frame`` on, every ``frameskip``-th frame: its frame 0 is the
    original's ``frame``, its frame k the original's ``frame + frameskip k`` (up to rounding).

    Each object sits at its position at ``frame`` and moves in its direction there, after the
    wall bounces before it (a bounce flips the sign of one velocity component, so "up and left"
    can become "up and right"), at ``frameskip`` times its speed. Its caption is then true of
    the frames from ``frame`` on.
    """
    centres = positions_at(scene, np.array([frame], dtype=np.float64))[0]  # (n, 2)
    objects = []
    for obj, (x, y) in zip(scene.objects, centres, strict=True):
        (x_lo, x_hi), (y_lo, y_hi) = _bounds(obj, scene.size)
        vx = _reflected_velocity(obj.x, obj.vx, x_lo, x_hi, frame)
        vy = _reflected_velocity(obj.y, obj.vy, y_lo, y_hi, frame)
        direction = _DIRECTION_OF_SIGNS[float(np.sign(vx)), float(np.sign(vy))]
        objects.append(WorldObject(obj.shape, obj.colour, obj.radius, float(x), float(y),
                                   frameskip * vx, frameskip * vy, direction))
    return Scene(objects=tuple(objects), size=scene.size)


def resample_motion(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same objects (shape, colour, radius, direction) with fresh positions and speeds."""
    identities = [(o.shape, o.colour, o.radius, o.direction) for o in scene.objects]
    return Scene(objects=_place_all(rng, identities, scene.size), size=scene.size)


def image_frames(scene: Scene, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` independent single frames of re-placed copies of the scene, ``(n, H, W, 3)`` uint8.

    Each frame shows the same objects at new positions, so the scene's caption stays true.
    """
    frames = np.empty((n, scene.size, scene.size, 3), dtype=np.uint8)  # (n, H, W, 3)
    for i in range(n):
        frames[i] = render_clip(resample_motion(scene, rng), 1)[0]
    return frames


def world_clip(seed: int, num_frames: int = 16, size: int = 32) -> Clip:
    """The clip of the scene sampled from ``np.random.default_rng(seed)``: deterministic."""
    scene = sample_scene(np.random.default_rng(seed), size=size)
    return Clip(
        frames=render_clip(scene, num_frames),
        caption=caption(scene),
        positions=trajectory(scene, num_frames),
        scene=scene,
    )


def world_window(
    seed: int, num_frames: int = 16, size: int = 32, start: int = 0, frameskip: int = 1
) -> Clip:
    """Frames ``start, start + frameskip, ..., start + (num_frames - 1) frameskip`` of the
    scene of ``world_clip(seed)``, captioned with the motion at frame ``start``.

    The frames are exactly those of one long render (``render_clip(scene, N)[start::frameskip]``)
    and ``positions`` the true centres at those frames. ``caption`` and ``scene`` come from
    ``scene_at(scene, start, frameskip)``: each object's direction after any bounces before
    ``start`` (so the caption never contradicts the window's first frames, as ``world_clip``'s
    caption of frame 0 would), and a scene whose own frames match the window's. (The paper
    trains its text-to-video models on clips at frameskip 1 and 4, Table 5.)
    ``world_window(seed)`` has the frames, caption and positions of ``world_clip(seed)``.
    """
    scene = sample_scene(np.random.default_rng(seed), size=size)
    times = start + frameskip * np.arange(num_frames, dtype=np.float64)  # (T,)
    window = scene_at(scene, start, frameskip)
    return Clip(
        frames=render_at(scene, times),
        caption=caption(window),
        positions=positions_at(scene, times),
        scene=window,
    )


def training_seeds(seed: int, batch_index: int, batch_size: int) -> np.ndarray:
    """Scene seeds of one training batch, ``(B,)`` integers in ``[0, TRAIN_SEED_LIMIT)``."""
    rng = np.random.default_rng([seed, batch_index])
    return rng.integers(0, TRAIN_SEED_LIMIT, size=batch_size)


def window_draws(
    seed: int, batch_index: int, batch_size: int, start_max: int, frameskips: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Window starts in ``[0, start_max]`` and frameskips from ``frameskips`` of one training
    batch, ``(B,)`` each; from their own generator, so the scene seeds stay those of
    `training_seeds`."""
    rng = np.random.default_rng([seed, batch_index, 1])
    starts = rng.integers(0, start_max + 1, size=batch_size)
    skips = rng.choice(np.asarray(frameskips), size=batch_size)
    return starts, skips


def _training_example(
    scene_seed: int, num_frames: int, num_images: int, size: int, start: int = 0,
    frameskip: int = 1
) -> tuple[torch.Tensor, str]:
    """Video plus image frames of one training scene, ``(3, T + N, H, W)``, and its caption.

    The video is `world_window`'s; the image frames re-place its objects with their directions
    at the window's start, so the caption stays true of every frame.
    """
    clip = world_window(scene_seed, num_frames, size, start, frameskip)
    images = image_frames(clip.scene, num_images, np.random.default_rng([scene_seed, 1]))
    frames = np.concatenate([clip.frames, images], axis=0)  # (T + N, H, W, 3)
    return frames_to_tensor(frames), clip.caption


class WorldStream(Iterator[Batch]):
    """Infinite deterministic stream of training batches with exact resume.

    Batch ``b`` depends only on ``(seed, b)``: its scene seeds come from
    ``np.random.default_rng([seed, b])``, so restoring the batch counter resumes exactly. Each
    example is the `world_window` of its scene at a start in ``[0, window_start_max]`` and a
    frameskip drawn from ``frameskips`` (`window_draws`); the defaults (0 and ``(1,)``) give
    the `world_clip` of every scene, the stream's original batches.
    """

    def __init__(
        self,
        seed: int,
        batch_size: int,
        num_frames: int = 16,
        image_frames: int = 0,
        size: int = 32,
        window_start_max: int = 0,
        frameskips: tuple[int, ...] = (1,),
    ) -> None:
        if window_start_max < 0:
            raise ValueError(f"window_start_max must be >= 0, got {window_start_max}")
        if not frameskips or min(frameskips) < 1:
            raise ValueError(f"frameskips must be positive integers, got {frameskips}")
        self.seed = seed
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.image_frames = image_frames
        self.size = size
        self.window_start_max = int(window_start_max)
        self.frameskips = tuple(int(f) for f in frameskips)
        self.batch_index = 0

    def __iter__(self) -> "WorldStream":
        return self

    def __next__(self) -> Batch:
        batch = self.batch_at(self.batch_index)
        self.batch_index += 1
        return batch

    def batch_at(self, index: int) -> Batch:
        """Batch number `index` of this stream (a pure function of seed and index)."""
        seeds = training_seeds(self.seed, index, self.batch_size)
        starts, skips = window_draws(
            self.seed, index, self.batch_size, self.window_start_max, self.frameskips
        )
        examples = [
            _training_example(
                int(s), self.num_frames, self.image_frames, self.size, int(start), int(skip)
            )
            for s, start, skip in zip(seeds, starts, skips, strict=True)
        ]
        return Batch(
            video=torch.stack([video for video, _ in examples]),
            captions=[text for _, text in examples],
            num_video_frames=self.num_frames,
            frameskip=torch.from_numpy(skips).long(),
        )

    def state_dict(self) -> dict:
        """JSON-serialisable resume state."""
        return {
            "seed": self.seed,
            "batch_index": self.batch_index,
            "window_start_max": self.window_start_max,
            "frameskips": list(self.frameskips),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; the seed and window options must match this
        stream's (a state saved before the options existed had them off)."""
        if int(state["seed"]) != self.seed:
            raise ValueError(f"stream seed {self.seed} != saved seed {state['seed']}")
        saved = (int(state.get("window_start_max", 0)), tuple(state.get("frameskips", (1,))))
        if saved != (self.window_start_max, self.frameskips):
            raise ValueError(
                f"stream window options (window_start_max, frameskips) = "
                f"{(self.window_start_max, self.frameskips)} != saved {saved}"
            )
        self.batch_index = int(state["batch_index"])
