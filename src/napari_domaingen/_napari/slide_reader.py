"""npe2 reader for OME-Zarr folders, and napari layer data for lazily read slides (:mod:`..io.slide`).

A slide becomes one RGB Image layer: multiscale (napari reads only the tiles of the level it shows) when it has
several levels, its scale in µm per pixel when the file states it. Nothing is decoded when the layer is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io.slide import Slide, is_ome_zarr_path, open_slide
from .layer_meta import LayerMeta
from .layers import LayerDataTuple, rgb_layer_data
from .reader_paths import ReaderFunction, reader_paths

__all__ = ["get_ome_zarr_reader", "read_ome_zarr_layers", "slide_layer_data"]


def slide_layer_data(slide: Slide, **kwargs: Any) -> LayerDataTuple:
    """A napari RGB Image layer-data tuple of dask arrays (multiscale when the slide has several levels)."""
    meta = LayerMeta(
        histology_path=slide.path, slide_path=slide.path, mpp=slide.mpp, downsamples=list(slide.downsamples)
    )
    return rgb_layer_data(slide.levels, slide.name, slide.scale, meta, **kwargs)


def get_ome_zarr_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return :func:`read_ome_zarr_layers` when every path is a folder named ``*.zarr`` (OME-Zarr)."""
    paths = reader_paths(path)
    ok = paths and all(is_ome_zarr_path(p) and Path(p).is_dir() for p in paths)
    return read_ome_zarr_layers if ok else None


def read_ome_zarr_layers(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Each OME-Zarr folder → one lazily read RGB Image layer (multiscale for pyramids), scaled in µm."""
    return [slide_layer_data(open_slide(p)) for p in reader_paths(path)]
