"""Turn io objects into napari layer-data tuples and copy geometry between layers.

Every layer the plugin makes carries its source's ``scale``, ``translate``, ``affine`` and the
``metadata["domaingen"]`` geometry entry, so writers and derived layers stay on the source grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.geometry import display_affine_from_layer, layer_geometry
from ..io.histology import HistologyImage
from ..io.nifti import NiftiSource, Volume

META_KEY = "domaingen"

LayerDataTuple = tuple[Any, dict[str, Any], str]


def volume_layer_data(volume: Volume, **kwargs: Any) -> LayerDataTuple:
    """A napari layer-data tuple for a volume: Labels for label volumes, Image otherwise.

    A ``(C, Z, Y, X)`` volume becomes one Image layer per channel (``channel_axis=0``), each with the geometry.
    """
    geometry = layer_geometry(volume.display_affine)
    meta = {META_KEY: {"nifti_source": volume.source, "display_affine": volume.display_affine}}
    attrs: dict[str, Any] = {"name": volume.name, "metadata": meta, **geometry}
    if volume.is_label:
        if volume.label_table is not None:
            from .label_layers import label_table_kwargs

            meta[META_KEY]["label_table"] = volume.label_table
            attrs.update(label_table_kwargs(volume.label_table))
        attrs.update(kwargs)
        return volume.data, attrs, "labels"
    if volume.data.ndim == 4:
        channels = volume.data.shape[0]
        attrs["channel_axis"] = 0
        attrs["name"] = [f"{volume.name} [{c}]" for c in range(channels)]
        attrs["blending"] = "additive"
    attrs.setdefault("colormap", "gray")
    attrs.update(kwargs)
    return volume.data, attrs, "image"


def rgb_layer_data(
    levels: list[Any], name: str, scale: tuple[float, float], entry: dict[str, Any], **kwargs: Any
) -> LayerDataTuple:
    """A napari RGB Image layer-data tuple of ``(Y, X, 3)`` levels (numpy or dask; multiscale when several),
    ``scale`` in µm, ``entry`` as ``metadata["domaingen"]``."""
    attrs: dict[str, Any] = {"name": name, "rgb": True, "scale": scale, "metadata": {META_KEY: entry}}
    if len(levels) > 1:
        attrs["multiscale"] = True
    attrs.update(kwargs)
    return (levels if len(levels) > 1 else levels[0]), attrs, "image"


def histology_layer_data(image: HistologyImage, **kwargs: Any) -> LayerDataTuple:
    """A napari RGB Image layer-data tuple (multiscale when the file holds a pyramid), scale in µm."""
    entry = {"histology_path": image.path, "mpp": image.mpp, "downsamples": image.downsamples}
    return rgb_layer_data(image.levels, image.name, image.scale, entry, **kwargs)


def nifti_source_of(metadata: dict[str, Any] | None) -> NiftiSource | None:
    """The NIfTI file geometry recorded in a layer's metadata, if any."""
    entry = (metadata or {}).get(META_KEY) or {}
    source = entry.get("nifti_source")
    return source if isinstance(source, NiftiSource) else None


def display_affine_of(attributes: dict[str, Any]) -> np.ndarray:
    """(4, 4) display affine of a layer from its ``scale``/``translate``/``affine`` (rotate/shear must be identity)."""
    ndim = 3
    scale = np.asarray(attributes.get("scale", np.ones(ndim)), dtype=float)[-ndim:]
    translate = np.asarray(attributes.get("translate", np.zeros(ndim)), dtype=float)[-ndim:]
    affine = attributes.get("affine")
    if affine is not None:
        affine = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)
        if affine.shape[0] > ndim + 1:  # keep the spatial block of a higher-dimensional layer
            affine = np.block(
                [
                    [affine[-ndim - 1 : -1, -ndim - 1 : -1], affine[-ndim - 1 : -1, -1:]],
                    [np.zeros((1, ndim)), np.ones((1, 1))],
                ]
            )
    for key in ("rotate", "shear"):
        value = attributes.get(key)
        if value is not None and not np.allclose(value, np.eye(ndim) if key == "rotate" else 0):
            raise ValueError(f"layers with a '{key}' transform cannot be written as NIfTI; bake it into 'affine'")
    return display_affine_from_layer(scale, translate, affine)


def geometry_kwargs(layer: Any) -> dict[str, Any]:
    """``scale``/``translate``/``affine``/``metadata`` of a source layer, for a layer derived from it."""
    return {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "affine": np.asarray(layer.affine.affine_matrix),
        "metadata": {META_KEY: dict((layer.metadata or {}).get(META_KEY, {}))},
    }


def stack_geometry_kwargs(layer: Any, leading_axes: int = 1) -> dict[str, Any]:
    """Geometry of a source layer for data with extra leading axes, e.g. a ``(C, Z, Y, X)`` feature stack."""
    base = geometry_kwargs(layer)
    ndim = len(base["scale"])
    affine = np.eye(ndim + leading_axes + 1)
    affine[leading_axes:, leading_axes:] = base["affine"]
    return {
        **base,
        "scale": (1.0,) * leading_axes + base["scale"],
        "translate": (0.0,) * leading_axes + base["translate"],
        "affine": affine,
    }


def spatial_geometry_kwargs(layer: Any, leading_axes: int = 1) -> dict[str, Any]:
    """Inverse of :func:`stack_geometry_kwargs`: the geometry of a ``(C, Z, Y, X)`` layer without its leading
    axes, for a ``(Z, Y, X)`` layer derived from it (the feature-stack entry is not carried over)."""
    affine = np.asarray(layer.affine.affine_matrix, dtype=float)[leading_axes:, leading_axes:]
    entry = dict((layer.metadata or {}).get(META_KEY, {}))
    entry.pop("features", None)
    return {
        "scale": tuple(layer.scale)[leading_axes:],
        "translate": tuple(layer.translate)[leading_axes:],
        "affine": affine,
        "metadata": {META_KEY: entry},
    }
