"""Carrying the anatomy image's fine detail into a swapped render: a guided filter in optical density.

The DGM-DR synthesizer renders every 8 px patch as a rank-L product, so a swap loses fine detail and, with one
style broadcast to every patch, shows a faint texture that repeats with the patch. :func:`carry_detail` keeps the
render's colours and takes the structure from the anatomy image: in every ``(2r + 1)²`` window, each colour
channel's optical density ``OD = −ln(max(I, 1/255))`` of the output is the affine function ``a · G + b`` of the
anatomy image's grey-level optical density ``G`` that best fits the render there (least squares with ridge
``eps``), and the per-pixel ``a, b`` are the averages of the fits of the windows holding the pixel: the guided
filter of He, Sun and Tang (2013), computed as their fast guided filter (He and Sun, 2015: ``a, b`` on a
``subsample``-times coarser grid, bilinearly interpolated, then applied to the full-resolution ``G``). The colours
come only from the render (``a, b`` are fitted to it, ``G`` is grey), so the old stain's hue does not come back;
the structure at scales under the window is the anatomy image's; anything that repeats with the patch in the
render but not in the anatomy image averages out.

Example::

    >>> import numpy as np
    >>> grey = np.linspace(0.2, 0.9, 40 * 40, dtype=np.float32).reshape(40, 40)
    >>> render = np.repeat(grey[..., None], 3, axis=-1) * np.array([1.0, 0.6, 0.8], np.float32)  # tinted
    >>> out = carry_detail(grey, render)
    >>> bool(np.abs(out - render).max() < 0.02)
    True
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DETAIL_EPS", "DETAIL_RADIUS", "carry_detail"]

#: ridge of the local fits, in squared optical density: smaller follows the anatomy image more closely
DETAIL_EPS = 1e-3
#: window half-side of the local fits, px (twice the shipped model's patch)
DETAIL_RADIUS = 16
_MIN = 1.0 / 255.0


def _density(values: np.ndarray) -> torch.Tensor:
    return -torch.log(torch.from_numpy(np.maximum(values, _MIN)))


def _coarse(x: torch.Tensor, step: int) -> torch.Tensor:
    """Means over ``step × step`` cells anchored at pixel (0, 0); the last, partial cells average their pixels.
    Anchored cells (rather than cells stretched over the image) make the filter commute with crops whose origin is
    a multiple of ``step``: a slide block gives the whole image's values."""
    return F.avg_pool2d(x, step, stride=step, ceil_mode=True) if step > 1 else x


def _fine(x: torch.Tensor, step: int, height: int, width: int) -> torch.Tensor:
    """Bilinear interpolation of cell values back to ``(height, width)`` px, cell ``i`` centred on pixel
    ``(i + ½) · step − ½`` (clamped at the edges), so again anchored at pixel (0, 0)."""
    if step == 1:
        return x
    size = (x.shape[-2] * step, x.shape[-1] * step)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[..., :height, :width]


def carry_detail(
    grey: np.ndarray, render: np.ndarray, radius: int = DETAIL_RADIUS, eps: float = DETAIL_EPS, subsample: int = 4
) -> np.ndarray:
    """``(Y, X, 3)`` float32 in [0, 1]: ``render`` ``(Y, X, 3)`` in [0, 1] with the structure of the anatomy image
    whose grey levels are ``grey`` ``(Y, X)`` in [0, 1] (module docstring). ``radius``: window half-side, px;
    ``subsample``: the coarser grid of the fits (1: the exact guided filter)."""
    grey, render = np.asarray(grey, np.float32), np.asarray(render, np.float32)
    if render.ndim != 3 or render.shape[:2] != grey.shape:
        raise ValueError(f"the render {render.shape} and the grey image {grey.shape} must be (Y, X, C) and (Y, X)")
    if radius < 1 or eps <= 0 or subsample < 1:
        raise ValueError(f"radius and subsample must be ≥ 1 and eps > 0, got {radius}, {subsample} and {eps}")
    height, width = grey.shape
    step = max(1, min(subsample, radius, height, width))
    low_radius = max(1, round(radius / step))

    def box(x: torch.Tensor) -> torch.Tensor:
        size = 2 * low_radius + 1
        return F.avg_pool2d(x, size, stride=1, padding=low_radius, count_include_pad=False)

    with torch.inference_mode():
        guide = _density(grey)[None, None]  # (1, 1, Y, X)
        target = _density(render).permute(2, 0, 1)[None]  # (1, C, Y, X)
        guide_low, target_low = _coarse(guide, step), _coarse(target, step)
        mean_guide, mean_target = box(guide_low), box(target_low)
        variance = box(guide_low * guide_low) - mean_guide**2
        covariance = box(guide_low * target_low) - mean_guide * mean_target
        slope = covariance / (variance + eps)
        offset = mean_target - slope * mean_guide
        slope, offset = _fine(box(slope), step, height, width), _fine(box(offset), step, height, width)
        out = torch.exp(-(slope * guide + offset)).clamp(0.0, 1.0)
    return out[0].permute(1, 2, 0).numpy().astype(np.float32)
