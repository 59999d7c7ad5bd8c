"""Stored pixels of one image level → ``(Y, X, 3)`` uint8 RGB, in row strips, optionally reduced by block means.

Conversion to 8-bit RGB (the same rules for every format):

* **Grayscale** is repeated into three identical channels. TIFF ``MinIsWhite`` grayscale is inverted first,
  palette images are looked up in their colour map, CMYK is converted naively (``R = (1 - C)(1 - K)``).
* **Alpha** is composited on white: ``rgb * a + 255 * (1 - a)``. Opaque images (all alpha = 255, e.g. the
  RGBA tiles many tools write) are therefore unchanged: the alpha channel is simply dropped. Transparent
  padding shows as white, like an empty glass slide, rather than black.
* **Integers wider than 8 bits** (16-bit, 32-bit; negatives clipped to 0) are divided by the full range of
  their *effective bit depth*: ``2**b - 1`` with ``b = max(8, bits needed for the image's maximum)``. A 12-bit
  camera image stored as uint16 (max ≤ 4095) uses its 12-bit range and is not left almost black, a full
  16-bit image uses 65535, and a 16-bit file holding 8-bit values is not stretched. One divisor is used for all
  pyramid levels and all colour channels, so colour balance is kept.
* **Floats** within ``[0, 1]`` are multiplied by 255; other floats are min-max scaled over their finite
  values. NaN becomes 0. Booleans become 0/255.
* Pixels are returned as stored: a JPEG's EXIF orientation tag is not applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_STRIP_BYTES = 32 * 2**20  # float32 working memory per strip while converting / reducing


@dataclass
class _Pixels:
    """One level's stored pixels as ``(Y, X, C)`` (possibly a memmap) and how they map to RGB.

    ``mode``: ``gray``, ``gray+alpha``, ``rgb``, ``rgba``, ``cmyk`` or ``palette`` (``colormap`` (N, 3) uint8).
    """

    array: np.ndarray
    mode: str
    colormap: np.ndarray | None = None
    inverted: bool = False  # TIFF MinIsWhite
    premultiplied: bool = False  # associated alpha

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("gray+alpha", "rgba")

    @property
    def colour_channels(self) -> int:
        return {"gray": 1, "gray+alpha": 1, "rgb": 3, "rgba": 3, "cmyk": 4, "palette": 1}[self.mode]


def _row_strips(n_rows: int, row_bytes: int, multiple: int = 1):
    """``(start, stop)`` row ranges of about ``_STRIP_BYTES`` each, starting on multiples of ``multiple``."""
    rows = max(multiple, (_STRIP_BYTES // max(row_bytes, 1)) // multiple * multiple)
    for start in range(0, n_rows, rows):
        yield start, min(start + rows, n_rows)


def _intensity_range(pixels: _Pixels) -> tuple[float, float]:
    """``(low, high)`` of the colour channels mapped to ``[0, 255]`` (rules in the module docstring)."""
    array = pixels.array
    kind = array.dtype.kind
    if pixels.mode == "palette" or kind == "b":
        return 0.0, 1.0
    if kind == "u" and array.dtype.itemsize == 1:
        return 0.0, 255.0
    channels = pixels.colour_channels
    row_bytes = array.shape[1] * array.shape[2] * 4
    if kind in "iu":
        top = 0
        for start, stop in _row_strips(array.shape[0], row_bytes):
            strip = np.asarray(array[start:stop, :, :channels])
            if strip.size:
                top = max(top, int(strip.max()))
        bits = max(8, int(top).bit_length())
        bits = min(bits, array.dtype.itemsize * 8 - (1 if kind == "i" else 0))
        return 0.0, float(2**bits - 1)
    if kind == "f":
        low, high = math.inf, -math.inf
        for start, stop in _row_strips(array.shape[0], row_bytes):
            strip = np.asarray(array[start:stop, :, :channels], dtype=np.float64)
            finite = strip[np.isfinite(strip)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        if not math.isfinite(low):
            return 0.0, 1.0
        if low >= 0.0 and high <= 1.0:
            return 0.0, 1.0
        return low, (high if high > low else low + 1.0)
    raise TypeError(f"unsupported pixel type {array.dtype}")


def _alpha_max(dtype: np.dtype) -> float:
    if dtype.kind == "b":
        return 1.0
    if dtype.kind in "iu":
        return float(np.iinfo(dtype).max)
    return 1.0


def _strip_to_rgb(strip: np.ndarray, pixels: _Pixels, low: float, high: float) -> np.ndarray:
    """A ``(h, w, C)`` strip of stored pixels → ``(h, w, 3)`` float32 in ``[0, 255]``."""
    channels = pixels.colour_channels
    if pixels.mode == "palette":
        assert pixels.colormap is not None
        index = np.clip(strip[..., 0].astype(np.int64), 0, len(pixels.colormap) - 1)
        rgb = pixels.colormap[index].astype(np.float32)
    else:
        colour = strip[..., :channels].astype(np.float32)
        colour = np.nan_to_num(colour, nan=low, posinf=high, neginf=low)
        colour = np.clip((colour - np.float32(low)) * np.float32(255.0 / (high - low)), 0.0, 255.0)
        if pixels.inverted:
            colour = 255.0 - colour
        if pixels.mode == "cmyk":
            ink = colour / 255.0
            rgb = 255.0 * (1.0 - ink[..., :3]) * (1.0 - ink[..., 3:4])
        elif channels == 1:
            rgb = np.repeat(colour, 3, axis=2)
        else:
            rgb = colour
    if pixels.has_alpha:
        alpha = np.clip(strip[..., -1:].astype(np.float32) / np.float32(_alpha_max(strip.dtype)), 0.0, 1.0)
        if pixels.premultiplied:
            rgb = rgb + 255.0 * (1.0 - alpha)
        else:
            rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    return rgb.astype(np.float32, copy=False)


def _block_mean(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor × factor`` blocks (a partial last block is averaged over the pixels it has)."""
    if factor == 1:
        return rgb
    out = rgb
    for axis in (0, 1):
        n = out.shape[axis]
        starts = np.arange(0, n, factor)
        counts = np.diff(np.append(starts, n)).astype(np.float32)
        out = np.add.reduceat(out, starts, axis=axis)
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        out = out / counts.reshape(shape)
    return out


def _render(pixels: _Pixels, low: float, high: float, factor: int = 1) -> np.ndarray:
    """Stored pixels → ``(ceil(Y / factor), ceil(X / factor), 3)`` uint8 RGB."""
    array = pixels.array
    plain = pixels.mode in ("gray", "rgb") and not pixels.inverted and array.dtype == np.uint8
    if plain and factor == 1:
        if pixels.mode == "rgb":
            return np.array(array[..., :3], order="C", copy=isinstance(array, np.memmap) or None)
        return np.repeat(np.asarray(array[..., :1]), 3, axis=2)
    n_rows, n_cols = array.shape[:2]
    out = np.empty((-(-n_rows // factor), -(-n_cols // factor), 3), dtype=np.uint8)
    for start, stop in _row_strips(n_rows, n_cols * max(array.shape[2], 3) * 4, multiple=factor):
        rgb = _block_mean(_strip_to_rgb(np.asarray(array[start:stop]), pixels, low, high), factor)
        out[start // factor : start // factor + rgb.shape[0]] = np.rint(np.clip(rgb, 0.0, 255.0))
    return out


def _reduction_factor(shape: tuple[int, int], max_bytes: int) -> int:
    """Smallest integer ``k`` for which the ``ceil(Y/k) × ceil(X/k)`` uint8 RGB image fits in ``max_bytes``."""
    rows, cols = shape
    factor = max(1, int(math.sqrt(rows * cols * 3 / max_bytes)))
    while -(-rows // factor) * -(-cols // factor) * 3 > max_bytes:
        factor += 1
    return factor
