"""The detail carry-over: a guided filter in optical density (core.detail). Its speed against the first version is
measured in ``benchmarks/bench_swap_slide.py``, not here."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.detail import carry_detail


def _density(x: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(x, 1 / 255))


def _reference(grey: np.ndarray, render: np.ndarray, radius: int = 16, eps: float = 1e-3, step: int = 4) -> np.ndarray:
    """The filter written out plainly in float64 NumPy: cell means by loops over the cells, window means by loops
    over the window's offsets (clipped at the edges), the bilinear interpolation by its formula."""
    height, width = grey.shape
    step = max(1, min(step, radius, height, width))
    low_radius = max(1, round(radius / step))
    rows, cols = -(-height // step), -(-width // step)
    guide, target = _density(grey.astype(np.float64)), _density(render.astype(np.float64))

    def cells(x: np.ndarray) -> np.ndarray:
        out = np.empty((rows, cols, *x.shape[2:]))
        for i in range(rows):
            for j in range(cols):
                out[i, j] = x[i * step : (i + 1) * step, j * step : (j + 1) * step].mean((0, 1))
        return out

    def box(x: np.ndarray) -> np.ndarray:
        total, count = np.zeros_like(x), np.zeros((rows, cols))
        for dy in range(-low_radius, low_radius + 1):
            for dx in range(-low_radius, low_radius + 1):
                if abs(dy) >= rows or abs(dx) >= cols:
                    continue
                ys, xs = slice(max(0, -dy), min(rows, rows - dy)), slice(max(0, -dx), min(cols, cols - dx))
                yt, xt = slice(max(0, dy), min(rows, rows + dy)), slice(max(0, dx), min(cols, cols + dx))
                total[ys, xs] += x[yt, xt]
                count[ys, xs] += 1
        return total / count.reshape(rows, cols, *([1] * (x.ndim - 2)))

    g, t = cells(guide), cells(target)
    mean_g, mean_t = box(g), box(t)
    slope = (box(g[..., None] * t) - mean_g[..., None] * mean_t) / (box(g * g) - mean_g**2 + eps)[..., None]
    offset = mean_t - slope * mean_g[..., None]
    slope, offset = box(slope), box(offset)

    def weights(size: int, low: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.maximum((np.arange(size) + 0.5) / step - 0.5, 0.0)
        first = np.floor(source).astype(int)
        return first, np.minimum(first + 1, low - 1), source - first

    y0, y1, wy = weights(height, rows)
    x0, x1, wx = weights(width, cols)

    def fine(v: np.ndarray) -> np.ndarray:
        top = v[y0][:, x0] * (1 - wx)[None, :, None] + v[y0][:, x1] * wx[None, :, None]
        bottom = v[y1][:, x0] * (1 - wx)[None, :, None] + v[y1][:, x1] * wx[None, :, None]
        return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]

    return np.clip(np.exp(-(fine(slope) * guide[..., None] + fine(offset))), 0.0, 1.0)


def _pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A real anatomy image's grey levels and a tinted, smoothed, permuted-view render of it (as swap.render)."""
    from scipy.ndimage import gaussian_filter
    from skimage import data

    ihc = data.immunohistochemistry().astype(np.float32) / 255
    rgb = np.tile(ihc, (-(-height // 512), -(-width // 512), 1))[:height, :width]
    grey = rgb @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    render = np.clip(gaussian_filter(rgb, (2, 2, 0)) * np.array([0.9, 0.6, 0.8], np.float32), 0, 1)
    return grey, np.ascontiguousarray(render.transpose(2, 0, 1)).transpose(1, 2, 0)


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray

    return rgb2gray(data.immunohistochemistry()[:128, :160]).astype(np.float32)


def test_a_render_that_follows_the_anatomy_is_kept(grey):
    slopes, offsets = np.array([1.4, 0.6, 0.9]), np.array([0.05, 0.2, 0.1])
    render = np.exp(-(_density(grey)[..., None] * slopes + offsets)).astype(np.float32)  # a restain, per channel
    assert np.abs(carry_detail(grey, render) - render).mean() < 0.005  # up to the ridge's shrinkage in flat areas


def test_patch_texture_goes_and_the_anatomy_detail_comes_back(grey):
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(grey, 2.0)  # what a rank-limited render keeps
    tint = np.array([0.9, 0.55, 0.75], np.float32)
    y, x = np.mgrid[: grey.shape[0], : grey.shape[1]]
    texture = 0.04 * np.sin(np.pi * x / 2) * np.cos(np.pi * y / 4)  # repeats every 8 px
    render = np.clip(smooth[..., None] * tint + texture[..., None], 0, 1).astype(np.float32)
    truth = grey[..., None] * tint
    out = carry_detail(grey, render)
    assert np.abs(out - truth).mean() < 0.8 * np.abs(render - truth).mean()
    spectrum = np.abs(np.fft.rfft2(out.mean(-1) - out.mean()))
    before = np.abs(np.fft.rfft2(render.mean(-1) - render.mean()))
    peak = (grey.shape[0] // 8, grey.shape[1] // 4)  # the texture's frequency
    assert spectrum[peak] < 0.2 * before[peak]


def test_the_hue_is_the_render_s(grey):
    render = np.stack([0.3 + 0 * grey, 0.4 + 0 * grey, 0.9 + 0 * grey], -1).astype(np.float32)  # blue everywhere
    out = carry_detail(grey, render)
    assert (out[..., 2] > out[..., 0]).all()
    with pytest.raises(ValueError, match="must be"):
        carry_detail(grey[:10], render)
    with pytest.raises(ValueError, match="radius"):
        carry_detail(grey, render, radius=0)


@pytest.mark.parametrize("shape", [(256, 320), (203, 157), (37, 53), (5, 9), (2, 3)])
def test_equals_the_plain_reference(shape):
    """Whole cells and partial last cells, windows wider than the image, a grid of 2 px (tiny images): within
    1e-5 of the float64 reference (measured ≤ 2e-6; against the first version: benchmarks/bench_swap_slide.py)."""
    grey, render = _pair(*shape)
    out = carry_detail(grey, render)
    assert out.dtype == np.float32 and out.shape == (*shape, 3) and out.flags.c_contiguous
    assert np.abs(out - _reference(grey, render)).max() < 1e-5
    exact = carry_detail(grey, render, radius=3, subsample=1)  # the exact guided filter
    assert np.abs(exact - _reference(grey, render, radius=3, step=1)).max() < 1e-5


def test_random_values_too():
    """Noise over the whole range, down to black (optical density 5.5): still within 1e-5 of the float64 reference
    (the first version, in float32 throughout, is 2e-5 off here: its window variances lose digits)."""
    rng = np.random.default_rng(1)
    grey, render = rng.random((96, 80), dtype=np.float32), rng.random((96, 80, 3), dtype=np.float32)
    assert np.abs(carry_detail(grey, render) - _reference(grey, render)).max() < 1e-5
