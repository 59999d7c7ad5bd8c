"""PNG previews of volumes: a montage of the three mid slices, at true aspect ratio (no napari, no Qt)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .nifti import Volume

# Label colours (RGB, uint8) for values 1..; background stays black.
_LABEL_COLOURS = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ],
    dtype=np.uint8,
)


def scale_to_uint8(data: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5) -> np.ndarray:
    """Robust min-max to ``[0, 255]`` uint8 using percentiles of the finite values."""
    data = np.asarray(data, dtype=np.float32)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, np.uint8)
    low, high = np.percentile(finite, [low_percentile, high_percentile])
    if high <= low:
        high = low + 1.0
    scaled = np.clip((np.nan_to_num(data, nan=low) - low) / (high - low), 0, 1)
    return (scaled * 255).astype(np.uint8)


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """Integer labels ``(...)`` → RGB ``(..., 3)`` uint8 with a fixed palette."""
    return _LABEL_COLOURS[np.asarray(labels).astype(np.int64) % len(_LABEL_COLOURS) * (np.asarray(labels) > 0)]


def colour_map(values: np.ndarray, low: float, high: float, name: str = "viridis") -> np.ndarray:
    """Scalar volume ``(...)`` → RGB ``(..., 3)`` uint8 through a matplotlib colour map over ``[low, high]``."""
    from matplotlib import colormaps

    scaled = np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0, 1)
    return (colormaps[name](scaled)[..., :3] * 255).astype(np.uint8)


def mid_slice_montage(volume: Volume) -> np.ndarray:
    """Axial | coronal | sagittal mid slices of a volume (labels coloured), ``(H, W, 3)`` uint8."""
    data = volume.data if volume.data.ndim == 3 else volume.data[0]
    rgb = colour_labels(data) if volume.is_label else np.repeat(scale_to_uint8(data)[..., None], 3, axis=-1)
    return rgb_montage(rgb, volume.spacing)


def rgb_montage(rgb: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Mid slices of an RGB volume ``(Z, Y, X, 3)`` uint8 side by side at true aspect (mm), superior/anterior up."""
    from skimage.transform import resize

    sz, sy, sx = spacing
    z, y, x = (n // 2 for n in rgb.shape[:3])
    views = [
        (rgb[z], (sy, sx)),  # axial: rows = posterior→anterior
        (rgb[:, y], (sz, sx)),  # coronal: rows = inferior→superior
        (rgb[:, :, x], (sz, sy)),  # sagittal
    ]
    height = max(int(round(v.shape[0] * s[0])) for v, s in views)
    tiles = []
    for view, (row_mm, col_mm) in views:
        shape = (int(round(view.shape[0] * row_mm)), int(round(view.shape[1] * col_mm)))
        tile = resize(view, shape + (3,), order=0, preserve_range=True, anti_aliasing=False).astype(np.uint8)
        tile = tile[::-1]  # anterior / superior at the top
        pad = np.zeros((height - tile.shape[0], tile.shape[1], 3), np.uint8)
        tiles.append(np.concatenate([pad, tile], axis=0))
    return np.concatenate(tiles, axis=1)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` or ``(H, W)`` uint8 array as an image (format from the suffix: PNG, TIFF, JPEG),
    atomically."""
    from skimage.io import imsave

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        imsave(str(tmp), np.asarray(rgb, dtype=np.uint8), check_contrast=False)
    return path
