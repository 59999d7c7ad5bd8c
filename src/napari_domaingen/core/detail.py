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

Computation (1.4–1.6 × faster than the first version on a 2304² px block, 2 cores, same output within 4e-6:
``benchmarks/bench_swap_slide.py``, ``tests/core/test_detail.py``):
the full-resolution work is one logarithm per value (in log intensity ``L = −OD``, so that no pass negates
anything), the cell means of the coarse grid by contiguous float32 adds, the bilinear interpolation of ``a, b``
and one fused multiply-add and exponential per output value; on the coarse grid (``subsample²`` times fewer
values) everything is float64 and every window mean is a difference of two cumulative sums, one pass per axis for
all channels at once, whatever the radius.

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


def _log_intensity(values: np.ndarray) -> np.ndarray:
    """``ln(max(I, 1/255))`` of ``values`` in [0, 1], float32, the input's shape: minus the optical density."""
    out = np.empty(values.shape, np.float32)  # C order whatever the input's (a render is often a permuted view)
    np.maximum(values, np.float32(_MIN), out=out)
    return np.log(out, out=out)


def _coarse(x: np.ndarray, step: int) -> np.ndarray:
    """``(C, ⌈Y/step⌉, ⌈X/step⌉)`` float64: means of ``x`` ``(Y, X, C)`` float32 over ``step × step`` cells anchored
    at pixel (0, 0); the last, partial cells average their own pixels. Anchored cells (rather than cells stretched
    over the image) make the filter commute with crops whose origin is a multiple of ``step``: a slide block gives
    the whole image's values. Summed ``step`` rows, then ``step`` columns at a time (contiguous float32 adds)."""
    height, width, channels = x.shape
    rows, cols = -(-height // step), -(-width // step)
    if rows * step != height or cols * step != width:
        x = np.pad(x, ((0, rows * step - height), (0, cols * step - width), (0, 0)))
    parts = x.reshape(rows, step, cols * step * channels)
    sums = parts[:, 0].copy()
    for k in range(1, step):
        sums += parts[:, k]
    parts = sums.reshape(rows, cols, step, channels)
    sums = parts[:, :, 0].copy()
    for k in range(1, step):
        sums += parts[:, :, k]
    counts = [np.full(n, float(step)) for n in (rows, cols)]
    counts[0][-1], counts[1][-1] = height - step * (rows - 1), width - step * (cols - 1)
    return sums.transpose(2, 0, 1) / np.outer(*counts)


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Means of ``x`` ``(C, H, W)`` float64 over ``(2·radius + 1)²`` windows clipped at the edges (only the cells
    inside count): differences of cumulative sums along the last axis, whatever the radius, then the same along
    the other (float64: sums of a few hundred cells lose nothing that matters)."""
    for _ in range(2):
        size = x.shape[-1]
        # ext[..., i + 2r + 1] − ext[..., i] is the sum over the window of i clipped to [0, size)
        ext = np.zeros((*x.shape[:-1], size + 2 * radius + 1))
        np.cumsum(x, -1, out=ext[..., radius + 1 : radius + 1 + size])
        ext[..., radius + 1 + size :] = ext[..., radius + size : radius + 1 + size]
        index = np.arange(size)
        counts = np.minimum(index + radius, size - 1) - np.maximum(index - radius, 0) + 1.0
        x = ((ext[..., 2 * radius + 1 :] - ext[..., :size]) / counts).swapaxes(-1, -2)
    return x


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
    height, width, channels = render.shape
    step = max(1, min(subsample, radius, height, width))
    low_radius = max(1, round(radius / step))

    with torch.inference_mode():
        # in log intensity L = −OD throughout: the fit of OD_render on OD_grey has the same slope and the offset's
        # sign flips, so out = exp(slope · L_grey + offset), with no negation pass over the pixels
        guide = _log_intensity(grey)  # (Y, X)
        guide_low = _coarse(guide[..., None], step)  # (1, H, W); float64 on the coarse grid
        target_low = _coarse(_log_intensity(render), step)  # (C, H, W)
        centre = guide_low.mean()  # variances and covariances do not depend on it; centred, they round less
        centred = guide_low - centre
        stats = _box(np.concatenate([centred, target_low, centred**2, centred * target_low]), low_radius)
        mean_guide, mean_target = stats[:1], stats[1 : 1 + channels]
        variance = stats[1 + channels : 2 + channels] - mean_guide**2
        covariance = stats[2 + channels :] - mean_guide * mean_target
        slope = covariance / (variance + eps)
        offset = mean_target - slope * (mean_guide + centre)
        fits = torch.from_numpy(np.ascontiguousarray(_box(np.concatenate([slope, offset]), low_radius), np.float32))
        if step > 1:  # cell i centred on pixel (i + ½)·step − ½, clamped at the edges: anchored at pixel (0, 0)
            size = (fits.shape[-2] * step, fits.shape[-1] * step)
            fits = F.interpolate(fits[None], size=size, mode="bilinear", align_corners=False)[0]
        fits = fits[:, :height, :width]  # (2C, Y, X)
        out = torch.empty(height, width, channels)
        torch.addcmul(fits[channels:], fits[:channels], torch.from_numpy(guide), out=out.permute(2, 0, 1))
        out.clamp_max_(0.0).exp_()  # OD ≥ 0: intensities ≤ 1
    return out.numpy()
