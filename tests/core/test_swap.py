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
)
from napari_domaingen.core.swap_job import swap_pair
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
    assert np.array_equal(render(model, a, a, detail=False), reconstruct(model, a))
    with pytest.raises(ValueError, match="same size"):
        render(model, a, encode(model, tissue[:64, :64]))
    with pytest.raises(ValueError, match="encoded alike"):
        render(model, a, encode(model, tissue[:100, :120], seamless=False))


def test_the_two_seamless_tilings_cover_every_pixel_once_each(model, tissue):
    from napari_domaingen.core.swap_encoding import grid_shift, patch_window

    assert grid_shift(64, 8) == 28 and grid_shift(224, 16) == 104  # ≡ half a patch (mod patch)
    for shape in [(64, 64), (100, 150), (30, 41), (224, 224)]:
        encoded = encode(model, tissue[: shape[0], : shape[1]])
        assert encoded.seamless and sorted(set(encoded.grids.tolist())) == [0, 1]
        m, window = encoded.margin, patch_window(64, 8).numpy()
        total = np.zeros(encoded.padded)
        for tiling in range(2):  # each tiling covers the image once, without overlap
            count = np.zeros(encoded.padded)
            for y, x in encoded.origins[encoded.grids == tiling]:
                count[y : y + 64, x : x + 64] += 1
                total[y : y + 64, x : x + 64] += window
            assert (count[m : m + shape[0], m : m + shape[1]] == 1).all()
        inside = total[m : m + shape[0], m : m + shape[1]]
        assert inside.min() > 0.07 and inside.max() <= 1.0 + 1e-6
        # on a patch border of the first tiling the second tiling's weight dominates, except where borders cross
        border = np.zeros(shape, bool)
        border[:, ::8] = True
        share = np.zeros(encoded.padded)
        for y, x in encoded.origins[encoded.grids == 1]:
            share[y : y + 64, x : x + 64] += window
        share = share[m : m + shape[0], m : m + shape[1]] / inside
        assert np.mean(share[border] > 0.9) > 0.7


@pytest.mark.parametrize("seamless", [True, False])
def test_the_blend_puts_every_tile_back_in_place(model, tissue, monkeypatch, seamless):
    """With a synthesizer that returns each tile's own pixels, blending gives the image back exactly."""
    import napari_domaingen.core.swap as swap

    image = as_rgb(tissue[:100, :150])
    encoded = encode(model, image, seamless=seamless)
    m = encoded.margin
    canvas = np.pad(image, ((m, encoded.padded[0] - m - 100), (m, encoded.padded[1] - m - 150), (0, 0)), "symmetric")

    def tiles_themselves(model, encoded, styles, tiles):
        return torch.stack(
            [torch.from_numpy(canvas[y : y + 64, x : x + 64]).permute(2, 0, 1) for y, x in encoded.origins[tiles]]
        )

    monkeypatch.setattr(swap, "_synthesized", tiles_themselves)
    out = swap._blend(model, encoded, encoded.style).permute(1, 2, 0).numpy()
    assert np.allclose(out, image, atol=1e-5)


def test_detail_carry_over_keeps_the_colours_of_the_render(model, tissue):
    """(That it brings the anatomy's structure back is tested with the shipped model below and in test_detail.)"""
    from scipy.ndimage import uniform_filter

    image = tissue[:96, :128]
    encoded = encode(model, image)  # an untrained model: its render is far from the image
    style = mean_style(encode(model, tissue[200:300, 200:300], seamless=False))
    kept, plain = render(model, encoded, style), render(model, encoded, style, detail=False)
    assert not np.array_equal(kept, plain)
    # the colours are the render's: window means (17 px) of the optical densities agree
    density = [-np.log(np.maximum(x / 255.0, 1 / 255)) for x in (kept, plain, image)]
    means = [uniform_filter(d, size=(17, 17, 1)) for d in density]
    assert np.abs(means[0] - means[1]).mean() < 0.25 * np.abs(means[2] - means[1]).mean()


def test_point_styles_pick_the_patch_under_the_point(model, tissue):
    encoded = encode(model, tissue[:128, :128])
    first, second = style_at(encoded, 4, 4), style_at(encoded, 100, 90)
    assert first.shape == (96,) and not torch.equal(first, second)
    assert torch.equal(style_at(encoded, 4, 4), style_at(encoded, 7, 7))  # same 8 px patch
    assert not np.array_equal(render(model, encoded, first), render(model, encoded, second))
    # one tile around the point gives the same vector as a full encoding whose nearest tile is that one
    alone = point_style(model, tissue[:64, :64], 20, 20, precision="fp32")
    assert torch.allclose(alone, style_at(encode(model, tissue[:64, :64], precision="fp32"), 20, 20), atol=1e-5)
    # one rule: on an image of several tiles (not a multiple of the tile), in inner and last (mirrored) tiles
    image = tissue[:150, :170]
    whole = encode(model, image, precision="fp32")
    for y, x in ((20, 20), (70.5, 100), (149, 169), (130, 3), (63.5, 127)):
        expected = style_at(whole, y, x)
        assert torch.allclose(point_style(model, image, y, x, precision="fp32"), expected, atol=1e-5), (y, x)
    with pytest.raises(ValueError, match="outside"):
        point_style(model, tissue[:64, :64], 70, 3)


def test_mean_and_region_styles(model, tissue):
    encoded = encode(model, tissue[:64, :128], seamless=False)  # tiles at x = 0, 48, 64 (centres 32, 80, 96):
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
    assert torch.allclose(mean_style(encoded, tissue_only=False), owned.reshape(-1, 96).mean(0), atol=1e-6)
    assert torch.allclose(mean_style(encoded, everything), mean_style(encoded, tissue_only=False))
    small = encode(model, tissue[:40, :40], seamless=False)  # padded to one 64 px tile: padding patches left out
    assert torch.allclose(
        mean_style(small, tissue_only=False),
        small.style[0].reshape(8, 8, 96)[:5, :5].reshape(-1, 96).mean(0),
        atol=1e-6,
    )
    seamless = encode(model, tissue[:64, :128])  # the first of the seamless tilings: tiles at x = 0, 64
    first = seamless.first_tiling()
    assert torch.allclose(
        mean_style(seamless, tissue_only=False), seamless.style[first].reshape(-1, 96).mean(0), atol=1e-6
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


def test_the_mean_style_is_the_tissue_s_not_the_glass_s(model, tissue):
    image = np.full((64, 128, 3), 242, np.uint8)  # glass on the right half
    image[:, :64] = tissue[:64, :64]
    encoded = encode(model, image, seamless=False, overlap=0.0)  # two tiles: tissue, glass
    assert encoded.tissue[:, 64:].sum() == 0 and encoded.tissue[:, :64].mean() > 0.5
    patches = encoded.style[0].reshape(64, 96)
    kept = torch.from_numpy(
        np.array(
            [encoded.tissue[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8].mean() >= 0.5 for r in range(8) for c in range(8)]
        )
    )
    assert torch.allclose(mean_style(encoded), patches[kept].mean(0), atol=1e-6)
    assert not torch.allclose(mean_style(encoded), mean_style(encoded, tissue_only=False), atol=1e-3)
    glass = encode(model, np.full((64, 64, 3), 242, np.uint8), seamless=False)  # no tissue: every patch
    assert torch.allclose(mean_style(glass), mean_style(glass, tissue_only=False))


def _grid_ratio(rgb: np.ndarray, phase: int = 7) -> float:
    """Mean |grey step| across the 8 px patch borders from the origin / elsewhere (benchmarks/bench_swap_quality)."""
    grey = rgb.astype(float).mean(-1)
    dx, dy = np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0))
    on_x, on_y = np.arange(dx.shape[1]) % 8 == phase, np.arange(dy.shape[0]) % 8 == phase
    border = np.concatenate([dx[:, on_x].ravel(), dy[on_y].ravel()]).mean()
    return float(border / np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y].ravel()]).mean())


def test_the_shipped_model_reconstructs_and_swaps_tissue_without_seams(shipped, tissue):
    from skimage.metrics import peak_signal_noise_ratio

    image = tissue[:256, :256]
    out = reconstruct(shipped, encode(shipped, image))
    assert peak_signal_noise_ratio(image, out) > 28
    style = mean_style(encode(shipped, tissue[256:, 256:], seamless=False))
    default = render(shipped, encode(shipped, image), style)
    seamless = render(shipped, encode(shipped, image), style, detail=False)
    plain = render(shipped, encode(shipped, image, seamless=False), style, detail=False)
    # the single tiling shows the 8 px patch grid; the seamless tilings draw its borders from the other tiling's
    # patch middles; with the detail carry-over no phase shows more of a grid than the (JPEG-compressed) input does
    assert _grid_ratio(plain) > 1.3 and _grid_ratio(seamless) < 1.0
    worst_input = max(_grid_ratio(image, phase) for phase in range(8))
    assert max(_grid_ratio(default, phase) for phase in range(8)) < max(1.1, worst_input + 0.05)


def test_the_shipped_model_swaps_a_real_pair_keeping_structure(shipped):
    from skimage import color, io
    from skimage.metrics import structural_similarity

    anatomy = io.imread(shared_file("data", "histology", "torchstain", "source.png"))[:224, :224]
    style = io.imread(shared_file("data", "histology", "torchstain", "target.png"))
    out = swap_pair(shipped, anatomy, style, style_point=None)
    plain = swap_pair(
        shipped,
        anatomy,
        style,
        style_point=None,
        seamless=False,
        detail=False,
        tissue_only=False,
        glass=False,
        colours=False,
    )
    assert out.shape == plain.shape == (224, 224, 3)

    def ssim(image):
        return structural_similarity(color.rgb2gray(as_rgb(anatomy)), color.rgb2gray(image / 255.0), data_range=1.0)

    assert ssim(out) > 0.85 and ssim(out) > ssim(plain) + 0.1
    # the stain moved: the output's mean colour is nearer the style image's than the anatomy image's
    lab = [color.rgb2lab(as_rgb(x)).reshape(-1, 3).mean(0) for x in (anatomy, style, out)]
    assert np.linalg.norm(lab[2] - lab[1]) < 0.6 * np.linalg.norm(lab[0] - lab[1])


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
