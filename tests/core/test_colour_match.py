"""The style image's tissue colours matched on a render's tissue (CIELAB statistics)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.colour_match import MIN_PIXELS, ColourMap, TissueColours, tissue_lab


def _lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb.reshape(-1, 1, 3).astype(np.float64))[:, 0, :]


def _stained(mean, spread, seed, shape=(96, 96)) -> np.ndarray:
    """A textured 'tissue': a grey pattern times a stain colour, float in [0, 1]."""
    rng = np.random.default_rng(seed)
    pattern = rng.random(shape)[..., None]
    return np.clip(np.asarray(mean) + spread * (pattern - 0.5) * np.asarray([1.0, 1.4, 0.8]), 0, 1)


def test_the_map_takes_the_render_s_tissue_to_the_style_s_colours():
    render, style = _stained((0.62, 0.55, 0.72), 0.3, 0), _stained((0.72, 0.35, 0.55), 0.5, 1)
    weight = np.ones(render.shape[:2], np.float32)
    mapping = ColourMap.fit(tissue_lab(render, weight), TissueColours.of(tissue_lab(style, weight)))
    out = mapping.apply(render)
    assert out.shape == render.shape and out.dtype == np.float32
    before, after, target = _lab(render), _lab(out), _lab(style)
    assert np.abs(after.mean(0) - target.mean(0)).max() < 1.5  # CIELAB units
    assert np.abs(after.std(0) - target.std(0)).max() < 1.5
    assert np.abs(before.mean(0) - target.mean(0)).max() > 10
    # the structure keeps its order: lightness is a monotone function of the render's (up to the 8-bit rounding
    # of the colours, times the map's slope: a few L*)
    order = np.argsort(before[:, 0])
    assert (np.diff(after[order, 0]) >= -3.0).all()
    assert np.corrcoef(before[:, 0], after[:, 0])[0, 1] > 0.99


def test_only_the_chosen_pixels_change_and_too_little_tissue_gives_no_statistics():
    render = _stained((0.6, 0.5, 0.7), 0.3, 2, (40, 40))
    weight = np.zeros((40, 40), np.float32)
    weight[:20] = 1.0
    lab = tissue_lab(render, weight)
    assert lab is not None and len(lab) == 800
    mapping = ColourMap.fit(lab, TissueColours.of(_lab(_stained((0.7, 0.3, 0.5), 0.4, 3, (40, 40)))))
    where = weight > 0
    out = mapping.apply(render, where)
    assert np.array_equal(out[~where], render[~where].astype(np.float32))
    assert np.abs(out[where] - render[where]).mean() > 0.02
    assert tissue_lab(render, np.zeros((40, 40), np.float32)) is None  # no tissue
    small = np.zeros((40, 40), bool)
    small[:10, :10] = True  # 100 < MIN_PIXELS tissue pixels inside the region
    assert MIN_PIXELS > 100 and tissue_lab(render, weight, small) is None
    with pytest.raises(ValueError, match="tissue weight is"):
        tissue_lab(render, weight[:10])


def test_a_map_for_blocks_gives_each_colour_one_result_in_any_order_near_the_exact_map():
    """A slide's map (made ``for_blocks``) keeps the shift of every 8-bit colour it meets: an image mapped whole
    and in pieces, in any order, gives the same pixels, on average within about a grey level of the exact map
    (more where the map is steep: its chroma quantiles stretch a narrow range of the render's colours)."""
    render = _stained((0.62, 0.5, 0.7), 0.5, 5, (64, 64))
    style = _stained((0.7, 0.3, 0.5), 0.4, 6, (64, 64))
    weight = np.ones((64, 64), np.float32)
    fitted = ColourMap.fit(tissue_lab(render, weight), TissueColours.of(tissue_lab(style, weight)))
    pieces = fitted.for_blocks()
    for start in (48, 0, 32, 16):  # another order first: the kept shifts do not depend on it
        pieces.apply(render[start : start + 16])
    in_pieces = np.concatenate([pieces.apply(render[i : i + 16]) for i in range(0, 64, 16)])
    whole = fitted.for_blocks().apply(render)
    assert np.array_equal(in_pieces, whole)
    exact = fitted.apply(render)
    assert np.abs(whole - exact).mean() <= 1.5 / 255 and np.abs(whole - exact).max() <= 0.05
    assert fitted._kept is None  # the fitted map itself maps exactly
