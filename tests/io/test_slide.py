"""Whole-slide images opened lazily (pyramidal TIFF, OME-Zarr), the truncated-level check, and the slide writer
(OME-Zarr / OME-TIFF pyramids). Small synthetic pyramids built from scikit-image's IHC image."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from napari_domaingen.io.errors import ImageReadError
from napari_domaingen.io.histology import read_histology
from napari_domaingen.io.slide import open_lazy_tiff, open_slide, read_in_memory
from napari_domaingen.io.slide_write import SlideWriter, level_shapes, slide_output_kind

PLUGIN = "napari-domaingen"


def _base(shape=(1500, 1700)) -> np.ndarray:
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()
    tiled = np.concatenate([np.concatenate([ihc, ihc[:, ::-1]], 1), np.concatenate([ihc[::-1], ihc], 1)], 0)
    return np.ascontiguousarray(np.tile(tiled, (2, 2, 1))[: shape[0], : shape[1]])


def write_pyramid(path, base, mpp=0.5, compression="zlib", photometric="rgb", extrasamples=None) -> list[np.ndarray]:
    """A SubIFD pyramid of 3 levels (full, ½, ¼), 256 px tiles; returns the stored levels."""
    stored = [base, base[::2, ::2].copy(), base[::4, ::4].copy()]
    options = {"photometric": photometric, "tile": (256, 256), "compression": compression}
    if extrasamples is not None:
        options["extrasamples"] = extrasamples
    with tifffile.TiffWriter(path) as tif:
        tif.write(stored[0], subifds=2, resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER", **options)
        for level in stored[1:]:
            tif.write(level, subfiletype=1, **options)
    return stored


@pytest.fixture
def pyramid(tmp_path):
    base = _base()
    path = tmp_path / "slide.tif"
    return path, write_pyramid(path, base)


@pytest.fixture
def decodes(monkeypatch):
    """How many TIFF tiles were read (chunk requests to tifffile's Zarr store, metadata documents left out)."""
    from tifffile.zarr import ZarrTiffStore

    calls = {"n": 0}
    original = ZarrTiffStore.get

    async def counting(self, key, *args, **kwargs):
        if not key.rsplit("/", 1)[-1].startswith((".z", "zarr.json")):
            calls["n"] += 1
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(ZarrTiffStore, "get", counting)
    return calls


def test_pyramid_opens_lazily(pyramid, decodes):
    path, stored = pyramid
    slide = open_slide(path)
    assert decodes["n"] == 0  # headers only
    assert slide.lazy and slide.name == "slide" and slide.mpp == pytest.approx(0.5)
    assert [tuple(level.shape) for level in slide.levels] == [s.shape for s in stored]
    assert slide.downsamples == [1.0, 2.0, 4.0] and slide.scale == pytest.approx((0.5, 0.5))
    assert all(type(level).__name__ == "Array" and level.dtype == np.uint8 for level in slide.levels)
    crop = slide.levels[0][300:700, 500:900].compute()
    assert np.array_equal(crop, stored[0][300:700, 500:900])
    assert 0 < decodes["n"] <= 9  # only the tiles under the crop (2 × 3 of 256 px, or a few more)
    assert np.array_equal(slide.levels[2].compute(), stored[2])
    slide.close()


@pytest.mark.parametrize("kind", ["rgba", "gray", "planar"])
def test_lazy_conversions_match_the_eager_reader(tmp_path, kind):
    base = _base((600, 520))
    if kind == "rgba":
        alpha = np.linspace(0, 255, base.shape[1]).astype(np.uint8)[None, :, None].repeat(base.shape[0], 0)
        data, options = np.concatenate([base, alpha], -1), {"photometric": "rgb", "extrasamples": [2]}
    elif kind == "gray":
        data, options = base[..., 1].copy(), {"photometric": "minisblack"}
    else:
        data, options = np.moveaxis(base, -1, 0).copy(), {"photometric": "rgb", "planarconfig": "separate"}
    path = tmp_path / f"{kind}.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(data, subifds=1, tile=(128, 128), **options)
        tif.write(
            data[..., ::2, ::2] if kind == "planar" else data[::2, ::2], subfiletype=1, tile=(128, 128), **options
        )
    slide = open_slide(path)
    assert slide.lazy and len(slide.levels) == 2
    np.testing.assert_allclose(slide.levels[0].compute(), read_histology(path).data, atol=1)


def test_16_bit_pyramid_is_read_whole(tmp_path):
    base = _base((300, 260)).astype(np.uint16) * 16  # 12-bit values
    path = tmp_path / "deep.tif"
    write_pyramid(path, base)
    assert open_lazy_tiff(path) is None
    slide = open_slide(path)
    assert not slide.lazy and len(slide.levels) == 3
    assert np.array_equal(slide.levels[0].compute(), read_histology(path).data)
    with pytest.raises(ImageReadError, match="too large to read whole"):
        open_slide(path, max_eager_bytes=1000)


def test_truncated_level_is_named(pyramid, tmp_path):
    path, stored = pyramid
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[2].keyframe
        cut = int(min(page.dataoffsets)) + 10  # inside the smallest level's first tile
    data = path.read_bytes()[:cut]
    broken = tmp_path / "broken.tif"
    broken.write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        open_slide(broken)
    message = str(info.value)
    assert message.startswith(str(broken)) and "level 2 (375 × 425 px) is truncated" in message
    assert f"the file has {len(data)} bytes" in message
    from napari_domaingen._napari.reader import read_histology_layers

    with pytest.raises(ImageReadError, match="level 2 .* is truncated"):
        read_histology_layers(str(broken))


def test_bad_inputs(tmp_path):
    import zarr

    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    no_ms = tmp_path / "plain.zarr"
    zarr.open_group(str(no_ms), mode="w").create_array("0", shape=(10, 10, 3), dtype="uint8")
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)
    cases = [
        (tmp_path / "missing.tif", "no such file"),
        (fifo, r"is a named pipe \(FIFO\), not a file"),  # refused without being opened (which would block)
        (empty, "the file is empty"),
        (no_ms, "no OME-Zarr 'multiscales' metadata"),
    ]
    for path, message in cases:
        with pytest.raises(ImageReadError, match=message):
            open_slide(path)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((4, 64, 64, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError, match="expected one 2D grayscale or RGB image"):
        open_slide(stack)


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tif"])
def test_slide_writer_round_trip(tmp_path, suffix):
    from skimage.transform import downscale_local_mean

    base = _base((1900, 1300))
    out = tmp_path / f"written{suffix}"
    assert slide_output_kind(out) == ("zarr" if suffix.endswith("zarr") else "tiff")
    writer = SlideWriter(out, base.shape[:2], mpp=0.25, name="written")
    for y in range(0, 1900, 1024):
        for x in range(0, 1300, 1024):
            writer.write(y, x, base[y : y + 1024, x : x + 1024])
    from napari_domaingen.progress import run

    assert run(writer.finish()) == out
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left
    slide = open_slide(out)
    assert level_shapes((1900, 1300)) == [(1900, 1300), (950, 650)]
    assert [tuple(level.shape) for level in slide.levels] == [(1900, 1300, 3), (950, 650, 3)]
    assert slide.mpp == pytest.approx(0.25) and slide.downsamples == [1.0, 2.0]
    assert np.array_equal(slide.levels[0].compute(), base)
    expected = np.rint(downscale_local_mean(base.astype(float), (2, 2, 1)))  # 2 × 2 means, half to even
    assert np.array_equal(slide.levels[1].compute(), expected.astype(np.uint8))
    if suffix.endswith("zarr"):
        meta = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
        assert meta["version"] == "0.5"
        axes = meta["multiscales"][0]["axes"]
        assert [a["name"] for a in axes] == ["c", "y", "x"] and axes[1]["unit"] == "micrometer"
        scales = [d["coordinateTransformations"][0]["scale"] for d in meta["multiscales"][0]["datasets"]]
        assert scales == [[1.0, 0.25, 0.25], [1.0, 0.5, 0.5]]
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

        (node, *_) = list(Reader(parse_url(str(out)))())
        assert [tuple(d.shape) for d in node.data] == [(3, 1900, 1300), (3, 950, 650)]
    else:
        with tifffile.TiffFile(out) as tif:
            assert tif.is_ome and 'PhysicalSizeX="0.25"' in tif.ome_metadata
            assert [level.shape for level in tif.series[0].levels] == [(1900, 1300, 3), (950, 650, 3)]


def test_halving_rounds_half_to_even_and_repeats_the_last_odd_row_and_column():
    from napari_domaingen.io.slide_write import _halve

    source = np.random.default_rng(3).integers(0, 256, (3, 37, 23), dtype=np.uint8)
    source[:, :2, :2] = [[10, 11], [11, 10]]  # a mean of 10.5: rounds to 10
    source[:, 2:4, :2] = [[11, 12], [12, 11]]  # 11.5: rounds to 12
    target = np.zeros((3, 19, 12), np.uint8)
    _halve(source, target, None, block=8)  # blocks of 8 px: the result does not depend on them
    padded = np.pad(source.astype(float), ((0, 0), (0, 1), (0, 1)), mode="edge")
    expected = np.rint(padded.reshape(3, 19, 2, 12, 2).mean(axis=(2, 4)))
    assert np.array_equal(target, expected.astype(np.uint8))
    assert target[0, 0, 0] == 10 and target[0, 1, 0] == 12


def test_writer_abort_leaves_nothing_and_keeps_an_old_output(tmp_path):
    out = tmp_path / "old.ome.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("previous")
    writer = SlideWriter(out, (100, 100), mpp=None)
    writer.write(0, 0, np.zeros((100, 100, 3), np.uint8))
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.ome.zarr"]
    assert (out / "keep.txt").read_text() == "previous"


def test_read_in_memory_takes_the_level_that_fits(pyramid):
    path, stored = pyramid
    image, factor = read_in_memory(path, stored[1].nbytes)
    assert factor == 2.0 and np.array_equal(image, stored[1])


# ------------------------------------------------------------------------------------------------ napari


@pytest.mark.slow
def test_viewer_opens_pyramid_and_ome_zarr_as_lazy_multiscale(make_napari_viewer, pyramid, tmp_path, decodes):
    from napari_domaingen._napari.reader import get_dicom_reader, get_histology_reader
    from napari_domaingen._napari.slide_reader import get_ome_zarr_reader

    path, stored = pyramid
    layers = get_histology_reader(str(path))(str(path))
    assert decodes["n"] == 0  # the reader decodes nothing
    data, attrs, kind = layers[0]
    assert kind == "image" and attrs["multiscale"] and attrs["rgb"] and attrs["scale"] == pytest.approx((0.5, 0.5))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.multiscale and layer.rgb
    assert [tuple(level.shape) for level in layer.data] == [s.shape for s in stored]
    assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
    assert decodes["n"] < 6 * 7  # napari shows a few tiles, never the whole of level 0 (6 × 7 tiles)

    out = tmp_path / "copy.ome.zarr"
    writer = SlideWriter(out, stored[0].shape[:2], mpp=0.5)
    writer.write(0, 0, stored[0])
    from napari_domaingen.progress import run

    run(writer.finish())
    assert get_dicom_reader(str(out)) is None and get_ome_zarr_reader(str(out)) is not None
    assert get_ome_zarr_reader(str(path)) is None
    (zlayer,) = viewer.open(str(out), plugin=PLUGIN)
    assert zlayer.multiscale and zlayer.rgb and zlayer.name == "copy"
    assert [tuple(level.shape) for level in zlayer.data] == [(1500, 1700, 3), (750, 850, 3)]
    assert tuple(zlayer.scale) == pytest.approx((0.5, 0.5))
    assert np.array_equal(np.asarray(zlayer.data[0][:300, :300]), stored[0][:300, :300])
