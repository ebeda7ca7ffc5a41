"""No-model baselines for the conditional tasks: what a reviewer compares a method against.

- `hold_nearest`: every frame is the nearest given frame (interpolation, extension).
- `linear_blend`: a cross-fade between the two given frames around each frame (interpolation).
- `bicubic` and `bicubic_projected`: upsampling a low-res clip, the second corrected so that
  its area downsampling equals the input exactly (x + U(y - D(x)), as in eq. 8's low-pass case).
- `constant_velocity`: the objects detected in the last two given frames carried on at their
  velocity, bouncing off the walls as the world's objects do: the physics a video model of this
  world should match.

All take and return uint8 frames (T, H, W, 3).
"""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vdm_core.data import Scene, WorldObject, render_clip, shape_area
from vdm_core.detect import Detection, detect_objects


def _check_given(indices: Sequence[int], frames: np.ndarray, num_frames: int) -> list[int]:
    """The given frame indices, checked against the frames and the output length."""
    idx = [int(i) for i in indices]
    if len(idx) != len(frames) or not idx:
        raise ValueError(f"got {len(frames)} frames for {len(idx)} indices")
    if idx != sorted(set(idx)) or idx[0] < 0 or idx[-1] >= num_frames:
        raise ValueError(f"indices must increase within [0, {num_frames}), got {idx}")
    return idx


def hold_nearest(frames: np.ndarray, indices: Sequence[int], num_frames: int) -> np.ndarray:
    """Frame t = the given frame nearest in time to t (the earlier one on a tie)."""
    idx = np.asarray(_check_given(indices, frames, num_frames))
    nearest = np.abs(np.arange(num_frames)[:, None] - idx[None, :]).argmin(axis=1)  # (T,)
    return frames[nearest].copy()


def linear_blend(frames: np.ndarray, indices: Sequence[int], num_frames: int) -> np.ndarray:
    """Frame t = (1 - a) x_i + a x_j for the given frames i <= t <= j around t, a = (t-i)/(j-i);
    frames after the last given frame hold it."""
    idx = _check_given(indices, frames, num_frames)
    x = frames.astype(np.float64)
    out = np.empty((num_frames, *frames.shape[1:]))
    for t in range(num_frames):
        j = int(np.searchsorted(idx, t))
        if j == len(idx):
            out[t] = x[-1]
        elif idx[j] == t or j == 0:
            out[t] = x[j]
        else:
            a = (t - idx[j - 1]) / (idx[j] - idx[j - 1])
            out[t] = (1 - a) * x[j - 1] + a * x[j]
    return np.round(out).astype(np.uint8)


def _as_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (1, 3, T, H, W) in [0, 255]."""
    return torch.from_numpy(frames).double().permute(3, 0, 1, 2)[None]


def _as_frames(x: torch.Tensor) -> np.ndarray:
    """float (1, 3, T, H, W) in [0, 255] -> uint8 (T, H, W, 3), rounded and clipped."""
    return x[0].permute(1, 2, 3, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _bicubic(lowres: np.ndarray, size: int) -> torch.Tensor:
    """Bicubic upsampling of every frame to size x size, (1, 3, T, size, size) unclipped."""
    y = torch.from_numpy(lowres).double().permute(0, 3, 1, 2)  # (T, 3, h, w)
    up = F.interpolate(y, size=(size, size), mode="bicubic", align_corners=False)
    return up.permute(1, 0, 2, 3)[None]  # (1, 3, T, H, W)


def bicubic(lowres: np.ndarray, size: int) -> np.ndarray:
    """Bicubic upsampling of a low-res clip (T, h, h, 3) to (T, size, size, 3)."""
    return _as_frames(_bicubic(lowres, size))


def bicubic_projected(lowres: np.ndarray, size: int, iterations: int = 10) -> np.ndarray:
    """Bicubic upsampling projected onto {x : D(x) = y} for D = f x f block means: repeat
    x <- clip(x + U(y - D(x))) with U nearest upsampling (D(U(r)) = r), so that D(x) = y up to
    the clipping to [0, 255] and rounding."""
    x = _bicubic(lowres, size)  # (1, 3, T, H, W)
    y = _as_float(lowres)  # (1, 3, T, h, w)
    for _ in range(iterations):
        residual = y - F.adaptive_avg_pool3d(x, y.shape[2:])
        x = (x + F.interpolate(residual, size=x.shape[2:], mode="nearest")).clamp(0, 255)
    return _as_frames(x)


def _radius(detection: Detection) -> float:
    """The radius of a world shape whose area is the detection's."""
    return float(np.sqrt(detection.area / shape_area(detection.shape, 1.0)))


def _moving_objects(before: list[Detection], last: list[Detection]) -> list[WorldObject]:
    """Objects of the last frame with the velocity from the same colour's detection before it
    (at rest where the colour was not seen before)."""
    objects = []
    for d in last:
        same = [b for b in before if b.colour == d.colour]
        prev = min(same, key=lambda b: (b.x - d.x) ** 2 + (b.y - d.y) ** 2) if same else d
        objects.append(WorldObject(d.shape, d.colour, _radius(d), d.x, d.y, d.x - prev.x,
                                   d.y - prev.y, ""))
    return objects


def constant_velocity(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """The given frames (T0, H, W, 3), then objects detected in the last two carried on at
    constant velocity with elastic wall bounces, rendered by the world's renderer, to
    num_frames frames."""
    t0, size = len(frames), frames.shape[1]
    if t0 < 2:
        raise ValueError("constant-velocity extrapolation needs at least 2 given frames")
    if num_frames < t0:
        raise ValueError(f"num_frames ({num_frames}) is shorter than the {t0} given frames")
    objects = _moving_objects(detect_objects(frames[-2]), detect_objects(frames[-1]))
    future = render_clip(Scene(tuple(objects), size), num_frames - t0 + 1)[1:]
    return np.concatenate([frames, future])
