"""The detail carry-over: a guided filter in optical density (core.detail)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.detail import carry_detail


def _density(x: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(x, 1 / 255))


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
