"""Anatomy/style swap on whole images: input conversion, tiling and blending, the style modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_domaingen.core.swap import (
    as_rgb,
    encode,
    mean_style,
    point_style,
    random_styles,
    reconstruct,
    render,
    style_at,
    swap_pair,
)
from napari_domaingen.core.swap_model import SwapModel, default_model_path, load_swap_model
from napari_domaingen.models.dgm import PRESETS, DGMEncoder
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def model() -> SwapModel:
    torch.manual_seed(0)
    return SwapModel(DGMEncoder(PRESETS["small"]).eval(), name="random")


@pytest.fixture(scope="module")
def shipped() -> SwapModel:
    if not default_model_path().is_file():
        pytest.fail("the shipped model is missing")
    return load_swap_model("default")


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


def test_as_rgb_conversions():
    gray = np.full((4, 5), 128, np.uint8)
    assert np.allclose(as_rgb(gray), 128 / 255) and as_rgb(gray).shape == (4, 5, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = [[0, 255], [255, 255]]
    out = as_rgb(rgba)
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[0, 1], 0.0)  # transparent shows as white glass
    twelve_bit = np.full((2, 2, 3), 4095, np.uint16)
    assert np.allclose(as_rgb(twelve_bit), 1.0)
    sixteen = np.full((2, 2, 3), 32768, np.uint16)
    assert np.allclose(as_rgb(sixteen), 32768 / 65535)
    assert np.allclose(as_rgb(np.full((2, 2, 3), 0.5)), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        as_rgb(np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2, 3\)"):
        as_rgb(np.zeros((2, 2, 2, 3)))
    with pytest.raises(ValueError, match="empty"):
        as_rgb(np.zeros((0, 3, 3)))


def test_tiles_cover_any_size_and_outputs_keep_it(model, tissue):
    for shape in [(64, 64), (100, 150), (30, 41)]:  # one tile, several, smaller than a tile (padded)
        encoded = encode(model, tissue[: shape[0], : shape[1]])
        assert encoded.shape == shape
        assert encoded.anatomy.shape[1:] == (64, 96) and len(encoded.origins) >= 1
        out = reconstruct(model, encoded)
        assert out.shape == (*shape, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="smaller than one 8 × 8 patch"):
        encode(model, tissue[:5, :40])


def test_position_wise_swap_with_itself_is_the_reconstruction(model, tissue):
    a = encode(model, tissue[:100, :120])
    assert np.array_equal(render(model, a, a), reconstruct(model, a))
    with pytest.raises(ValueError, match="same size"):
        render(model, a, encode(model, tissue[:64, :64]))


def test_point_styles_pick_the_patch_under_the_point(model, tissue):
    encoded = encode(model, tissue[:128, :128])
    first, second = style_at(encoded, 4, 4), style_at(encoded, 100, 90)
    assert first.shape == (96,) and not torch.equal(first, second)
    assert torch.equal(style_at(encoded, 4, 4), style_at(encoded, 7, 7))  # same 8 px patch
    assert not np.array_equal(render(model, encoded, first), render(model, encoded, second))
    # one tile around the point gives the same vector as a full encoding whose nearest tile is that one
    alone = point_style(model, tissue[:64, :64], 20, 20)
    assert torch.allclose(alone, style_at(encode(model, tissue[:64, :64]), 20, 20))
    with pytest.raises(ValueError, match="outside"):
        point_style(model, tissue[:64, :64], 70, 3)


def test_mean_and_region_styles(model, tissue):
    encoded = encode(model, tissue[:64, :128])  # tiles at x = 0, 48, 64 (centres 32, 80, 96):
    # each patch column is taken from the tile whose centre is nearest, so each position counts once
    everything = np.ones((64, 128), bool)
    owned = torch.cat(
        [
            encoded.style[0].reshape(8, 8, 96)[:, :7],
            encoded.style[1].reshape(8, 8, 96)[:, 1:5],
            encoded.style[2].reshape(8, 8, 96)[:, 3:],
        ],
        dim=1,
    )
    assert [int(x) for x in encoded.origins[:, 1]] == [0, 48, 64]
    assert torch.allclose(mean_style(encoded), owned.reshape(-1, 96).mean(0), atol=1e-6)
    assert torch.allclose(mean_style(encoded, everything), mean_style(encoded))
    small = encode(model, tissue[:40, :40])  # padded to one 64 px tile: the padding's patches are left out
    assert torch.allclose(
        mean_style(small), small.style[0].reshape(8, 8, 96)[:5, :5].reshape(-1, 96).mean(0), atol=1e-6
    )
    left = np.zeros((64, 128), bool)
    left[:, :8] = True
    assert torch.allclose(mean_style(encoded, left), encoded.style[0].reshape(8, 8, 96)[:, 0].mean(0), atol=1e-6)
    assert mean_style(encoded, everything).shape == (96,)
    with pytest.raises(ValueError, match="covers no patch centre"):
        mean_style(encoded, np.zeros((64, 128), bool))
    with pytest.raises(ValueError, match="region mask"):
        mean_style(encoded, np.ones((10, 10), bool))
    variants = random_styles(encoded, 3, seed=1)
    assert len(variants) == 3 and all(v.shape == (96,) for v, _ in variants)


def test_the_shipped_model_reconstructs_tissue_without_seams(shipped, tissue):
    from skimage.metrics import peak_signal_noise_ratio

    image = tissue[:256, :256]
    out = reconstruct(shipped, encode(shipped, image))
    assert peak_signal_noise_ratio(image, out) > 24
    # no seams: the step between neighbouring columns is no larger at tile borders (every 48 px) than elsewhere
    steps = np.abs(np.diff(out.astype(float), axis=1)).mean(axis=(0, 2))
    borders = steps[[47, 95, 143, 191]]
    assert borders.max() < 1.5 * np.median(steps)


def test_the_shipped_model_swaps_a_real_pair_keeping_structure(shipped):
    from skimage import color, io
    from skimage.metrics import structural_similarity

    anatomy = io.imread(shared_file("data", "histology", "torchstain", "source.png"))[:224, :224]
    style = io.imread(shared_file("data", "histology", "torchstain", "target.png"))
    out = swap_pair(shipped, anatomy, style, style_point=None)
    assert out.shape == (224, 224, 3)
    ssim = structural_similarity(color.rgb2gray(as_rgb(anatomy)), color.rgb2gray(out / 255.0), data_range=1.0)
    assert ssim > 0.5


def test_a_16_bit_tiff_and_an_rgba_png_swap_like_their_8_bit_form(model, tissue, tmp_path):
    import tifffile
    from skimage import io

    from napari_domaingen.io.histology import read_histology

    crop = tissue[:64, :64]
    tifffile.imwrite(tmp_path / "deep.tif", crop.astype(np.uint16) * 257, photometric="rgb")
    rgba = np.concatenate([crop, np.full((64, 64, 1), 255, np.uint8)], axis=-1)
    io.imsave(tmp_path / "alpha.png", rgba, check_contrast=False)
    reference = reconstruct(model, encode(model, crop))
    for name in ("deep.tif", "alpha.png"):
        image = read_histology(tmp_path / name).data
        assert np.abs(reconstruct(model, encode(model, image)).astype(int) - reference).max() <= 1
    # the raw arrays too (no reader in between)
    assert np.abs(reconstruct(model, encode(model, crop.astype(np.uint16) * 257)).astype(int) - reference).max() <= 1
    assert np.abs(reconstruct(model, encode(model, rgba)).astype(int) - reference).max() <= 1
