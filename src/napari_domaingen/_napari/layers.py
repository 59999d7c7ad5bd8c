"""Turn io objects into napari layer-data tuples and copy geometry between layers.

Every layer the plugin makes carries its source's ``scale``, ``translate``, ``affine`` and the plugin's record
(:mod:`.layer_meta`), so writers and derived layers stay on the source grid. A layer's display affine is
:func:`~napari_domaingen.io.geometry.display_affine_from_layer`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.geometry import layer_geometry
from ..io.histology import HistologyImage
from ..io.intensity_presets import DEFAULT_PRESET, contrast_limits_for
from ..io.nifti import Volume
from ..io.volume_resample import OBLIQUE_DEGREES, obliquity_degrees
from .label_layers import label_table_kwargs
from .layer_meta import META_KEY as META_KEY  # re-exported: the swap widgets import it from here
from .layer_meta import LayerMeta, read_meta, with_meta
from .view import quiet_oblique_slicing

LayerDataTuple = tuple[Any, dict[str, Any], str]


def volume_layer_data(volume: Volume, **kwargs: Any) -> LayerDataTuple:
    """A napari layer-data tuple for a volume: Labels for label volumes, Image otherwise (contrast limits of the
    default preset, :data:`~napari_domaingen.io.intensity_presets.DEFAULT_PRESET`).

    A ``(C, Z, Y, X)`` volume becomes one Image layer per channel (``channel_axis=0``), each with the geometry.
    """
    geometry = layer_geometry(volume.display_affine)
    if obliquity_degrees(volume.display_affine) > OBLIQUE_DEGREES:
        quiet_oblique_slicing()  # the viewer says it once, plainly (view.say_if_oblique)
    meta = LayerMeta(nifti_source=volume.source, display_affine=volume.display_affine)
    attrs: dict[str, Any] = {"name": volume.name, **geometry}
    if volume.is_label and volume.label_table is not None:
        meta["label_table"] = volume.label_table
        attrs.update(label_table_kwargs(volume.label_table))
    attrs["metadata"] = with_meta(None, meta)
    if volume.is_label:
        attrs.update(kwargs)
        return volume.data, attrs, "labels"
    if volume.data.ndim == 4:
        channels = volume.data.shape[0]
        attrs["channel_axis"] = 0
        attrs["name"] = [f"{volume.name} [{c}]" for c in range(channels)]
        attrs["blending"] = "additive"
    elif "contrast_limits" not in kwargs:  # as Load volumes shows it, not napari's dim full range
        low, high = contrast_limits_for(volume.data, DEFAULT_PRESET)
        if high > low:  # a constant volume keeps napari's own
            attrs["contrast_limits"] = (low, high)
    attrs.setdefault("colormap", "gray")
    attrs.update(kwargs)
    return volume.data, attrs, "image"


def rgb_layer_data(
    levels: list[Any], name: str, scale: tuple[float, float], meta: LayerMeta, **kwargs: Any
) -> LayerDataTuple:
    """A napari RGB Image layer-data tuple of ``(Y, X, 3)`` levels (numpy or dask; multiscale when several),
    ``scale`` in µm, ``meta`` as the plugin's record."""
    attrs: dict[str, Any] = {"name": name, "rgb": True, "scale": scale, "metadata": with_meta(None, meta)}
    if len(levels) > 1:
        attrs["multiscale"] = True
    attrs.update(kwargs)
    return (levels if len(levels) > 1 else levels[0]), attrs, "image"


def histology_layer_data(image: HistologyImage, **kwargs: Any) -> LayerDataTuple:
    """A napari RGB Image layer-data tuple (multiscale when the file holds a pyramid), scale in µm."""
    meta = LayerMeta(histology_path=image.path, mpp=image.mpp, downsamples=image.downsamples)
    return rgb_layer_data(image.levels, image.name, image.scale, meta, **kwargs)


def geometry_kwargs(layer: Any) -> dict[str, Any]:
    """``scale``/``translate``/``affine``/``metadata`` of a source layer, for a layer derived from it."""
    return {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "affine": np.asarray(layer.affine.affine_matrix),
        "metadata": with_meta(None, read_meta(layer)),
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
    meta = read_meta(layer)
    meta.pop("features", None)
    return {
        "scale": tuple(layer.scale)[leading_axes:],
        "translate": tuple(layer.translate)[leading_axes:],
        "affine": affine,
        "metadata": with_meta(None, meta),
    }
