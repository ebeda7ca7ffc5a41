"""Labelled images for the app's two "look at the paper" views (numpy + Pillow, no Gradio):

- the guidance sweep: one row of frames per guidance weight w, each under a band that names w
  and the detector's verdict (green: matches the caption, red: does not);
- the guidance field: what the model is given, then for each noise level the model's estimate
  x_hat (upper row) and, under each frame, a heat map of the size of the correction that
  reconstruction guidance adds to it (eq. 7 / eq. 8), on the row's own colour scale.

Every image is a stack of sections: a text band of BAND pixels, then rows of tiles (frames
upscaled by SCALE, GAP pixels apart and around). `section_height` and `image_width` give the
layout, so tests can check it.
"""

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from vdm_core.guidance_field import GuidanceField
from vdm_core.video_io import tensor_to_frames

SCALE = 3
GAP = 2
BAND = 18
MIN_WIDTH = 680  # room for the longest band text and the colour bar
COLOUR_BAR = 96  # width of the colour bar at the right end of a field band
WHITE = 255
KNOWN_GREY = 150  # heat tile of a known frame: eq. 7 adds nothing there
BAND_COLOURS = {True: (214, 240, 214), False: (246, 218, 218), None: (232, 232, 232)}
HEAT = colormaps["inferno"]


def section_height(rows: int, frame_size: int) -> int:
    """Height of a section: its text band and `rows` rows of tiles."""
    return BAND + rows * (frame_size * SCALE + GAP) + GAP


def image_width(columns: int, frame_size: int) -> int:
    """Width of an image with `columns` tiles per row (at least MIN_WIDTH, for the text)."""
    return max(columns * (frame_size * SCALE + GAP) + GAP, MIN_WIDTH)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at 12 px (its small bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=12)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def _band(text: str, width: int, colour: tuple[int, int, int] = (WHITE,) * 3,
          colour_bar: bool = False) -> np.ndarray:
    """A band (BAND, width, 3) uint8 with `text` written on it and, with colour_bar, the heat
    colours from 0 (left, black) to the row's maximum (right, yellow) at its right end."""
    image = Image.new("RGB", (width, BAND), colour)
    ImageDraw.Draw(image).text((GAP + 2, 2), text, fill=(25, 25, 35), font=_font())
    band = np.array(image)
    if colour_bar:
        ramp = heat(np.linspace(0.0, 1.0, COLOUR_BAR)[None, :], 1.0)  # (1, COLOUR_BAR, 3)
        band[3:BAND - 3, width - COLOUR_BAR - GAP:width - GAP] = ramp
    return band


def _upscale(frame: np.ndarray, size: int) -> np.ndarray:
    """A uint8 frame (h, w, 3) upscaled by nearest neighbour to a tile (size S, size S, 3)."""
    factor = size * SCALE // frame.shape[0]
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)


def _row(tiles: list[np.ndarray | None], width: int, size: int) -> np.ndarray:
    """Tiles (None: left blank) side by side, framed by GAP pixels: (S + GAP, width, 3)."""
    tile = size * SCALE
    out = np.full((tile + GAP, width, 3), WHITE, dtype=np.uint8)
    for i, image in enumerate(tiles):
        if image is not None:
            left = GAP + i * (tile + GAP)
            out[GAP:, left:left + tile] = _upscale(image, size)
    return out


def _section(text: str, rows: list[list[np.ndarray | None]], width: int, size: int,
             colour: tuple[int, int, int] = (WHITE,) * 3, colour_bar: bool = False) -> np.ndarray:
    """A text band above rows of tiles, closed by a GAP of white."""
    parts = [_band(text, width, colour, colour_bar)] + [_row(r, width, size) for r in rows]
    parts.append(np.full((GAP, width, 3), WHITE, dtype=np.uint8))
    return np.concatenate(parts, axis=0)


def spread(count: int, limit: int) -> np.ndarray:
    """At most `limit` indices of `count` frames, evenly spaced, first and last included."""
    return np.round(np.linspace(0, count - 1, min(count, limit))).astype(int)


def sweep_image(weights: list[float], videos: list[np.ndarray], matches: list[bool | None],
                max_frames: int = 8) -> np.ndarray:
    """One section per w: a band "w = 2 · matches the caption" and up to max_frames frames."""
    size = videos[0].shape[1]
    picks = spread(len(videos[0]), max_frames)
    width = image_width(len(picks), size)
    sections = []
    for w, frames, match in zip(weights, videos, matches, strict=True):
        text = f"w = {w:g}  -  {verdict(match)}  (frames {', '.join(map(str, picks))})"
        sections.append(_section(text, [[frames[i] for i in picks]], width, size,
                                 BAND_COLOURS[match]))
    return np.concatenate(sections, axis=0)


def verdict(match: bool | None) -> str:
    """The detector's verdict in words."""
    if match is None:
        return "cannot be checked (the prompt names no coloured shape)"
    return "matches the caption" if match else "does not match the caption"


def heat(magnitude: np.ndarray, vmax: float) -> np.ndarray:
    """A magnitude map (H, W) as inferno colours, black at 0 and yellow at vmax: (H, W, 3)."""
    scaled = np.clip(magnitude / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(magnitude)
    return (HEAT(scaled)[..., :3] * 255).round().astype(np.uint8)


def row_scales(result: GuidanceField) -> list[float]:
    """Each snapshot's colour-scale maximum: its largest applied correction (first sample)."""
    return [float(shot.magnitude()[0].max()) for shot in result.snapshots]


def field_image(result: GuidanceField, given: np.ndarray, given_at: list[int]) -> np.ndarray:
    """The guidance field of one window as one image.

    First section: `given` (uint8 (n, h, w, 3): known frames, or the low-res clip) at the
    window positions `given_at`. Then per snapshot: a band naming the step, t, log-SNR and the
    colour scale; the model's estimate x_hat per frame; under each frame the heat map of the
    applied correction's size (grey for known frames, which eq. 7 leaves to x^a).
    """
    frames_hat = [tensor_to_frames(shot.x_hat[0]) for shot in result.snapshots]
    num_frames, size = frames_hat[0].shape[:2] if frames_hat else (len(given_at), given.shape[1])
    width = image_width(num_frames, size)
    tiles: list[np.ndarray | None] = [None] * num_frames
    for frame, index in zip(given, given_at, strict=True):
        tiles[index] = frame
    label = ("Given: the low-res clip x^a (eq. 8)" if not result.known else
             f"Given: frames {given_at[0]}-{given_at[-1]} (x^a, eq. 7)")
    sections = [_section(label, [tiles], width, size)]
    grey = np.full((size, size, 3), KNOWN_GREY, dtype=np.uint8)
    for shot, frames, vmax in zip(result.snapshots, frames_hat, row_scales(result), strict=True):
        magnitude = shot.magnitude()[0].numpy()  # (T, H, W)
        heats = [grey if t in result.known else heat(magnitude[t], vmax)
                 for t in range(num_frames)]
        text = (f"step {shot.step + 1}/{shot.num_steps}   t = {shot.t:.2f}   "
                f"log-SNR = {shot.logsnr:.1f}   top: estimate x_hat   bottom: size of the "
                f"correction, 0 to {vmax:.3g}")
        sections.append(_section(text, [list(frames), heats], width, size, colour_bar=True))
    return np.concatenate(sections, axis=0)
