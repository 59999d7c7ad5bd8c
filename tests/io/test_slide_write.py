"""The whole-slide writer's outputs are valid: OME-NGFF 0.5 (checked by ome-zarr-models) and OME-TIFF whose OME-XML
tifffile parses, with the pixels, levels and pixel size written."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.io.slide_write import AXES, SlideWriter
from napari_domaingen.progress import run


def _write(path, mpp) -> np.ndarray:
    rgb = np.random.default_rng(0).integers(0, 256, (1300, 900, 3), dtype=np.uint8)
    writer = SlideWriter(path, rgb.shape[:2], mpp=mpp, name="swapped")
    for y in range(0, rgb.shape[0], 512):  # in blocks, as the slide swap writes
        writer.write(y, 0, rgb[y : y + 512])
    run(writer.finish())
    return rgb


@pytest.mark.parametrize("mpp", [0.5, None])
def test_ome_zarr_output_is_valid_ome_ngff_05(tmp_path, mpp):
    import zarr
    from ome_zarr_models.v05 import Image

    out = tmp_path / "s.ome.zarr"
    rgb = _write(out, mpp)
    group = zarr.open_group(str(out), mode="r")
    image = Image.from_zarr(group)  # raises on anything the spec refuses (e.g. missing dimension_names)
    multiscale = image.attributes.ome.multiscales[0]
    assert [axis.name for axis in multiscale.axes] == list(AXES)
    assert [axis.unit for axis in multiscale.axes] == [None, *(["micrometer"] * 2 if mpp else [None, None])]
    assert [dataset.path for dataset in multiscale.datasets] == ["0", "1"]
    scales = [dataset.coordinateTransformations[0].scale for dataset in multiscale.datasets]
    step = mpp or 1.0
    assert scales == [[1.0, step, step], [1.0, 2 * step, 2 * step]]
    for key in ("0", "1"):
        assert group[key].metadata.zarr_format == 3 and tuple(group[key].metadata.dimension_names) == AXES
    assert np.array_equal(np.moveaxis(group["0"][:], 0, -1), rgb)
    assert group["1"].shape == (3, 650, 450)


def test_ome_tiff_output_has_valid_ome_xml(tmp_path):
    import tifffile

    out = tmp_path / "s.ome.tif"
    rgb = _write(out, 0.25)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.is_bigtiff
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
        pixels = ome["Image"]["Pixels"]
        assert (pixels["SizeX"], pixels["SizeY"], pixels["SizeC"]) == (900, 1300, 3)
        assert pixels["PhysicalSizeX"] == pixels["PhysicalSizeY"] == 0.25
        assert pixels["PhysicalSizeXUnit"] == "µm" and pixels["Type"] == "uint8"
        assert ome["Image"]["Name"] == "swapped"
        series = tif.series[0]
        assert [level.shape for level in series.levels] == [(1300, 900, 3), (650, 450, 3)]
        assert np.array_equal(series.levels[0].asarray(), rgb)
