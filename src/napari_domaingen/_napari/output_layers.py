"""How the plugin's outputs look as layers: one style per output kind, shared by the docks that make them and by
the files the jobs write, however they are opened (a finished Batch case, File ▸ Open, drag and drop).

* feature renderings (``*_features_rgb.nii.gz``, ``(3, Z, Y, X)`` on disk) → one RGB layer ``(Z, Y, X, 3)``;
* cosine maps (``cosine_similarity.nii.gz``) → the Compare dock's diverging colour map on [-1, 1];
* feature stacks (``features.nii.gz``, ``*_features.nii.gz``, ``(C, Z, Y, X)``) → one hidden stack layer with a
  channel slider, plus its PCA colour preview (the Extract features dock's two layers);
* probability maps (``*probabilities*.nii.gz``) → one hidden stack layer in ``magma`` on [0, 1];
* anything else → :func:`~napari_domaingen._napari.layers.volume_layer_data` (labels as Labels, with class names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.jobs.compare import COSINE_STEM, RGB_SUFFIX
from ..io.geometry import layer_geometry
from ..io.nifti import Volume, read_nifti
from .layer_meta import LayerMeta, with_meta
from .layers import LayerDataTuple, volume_layer_data

__all__ = [
    "COSINE_COLORMAP",
    "COSINE_LIMITS",
    "cosine_style",
    "output_kind",
    "output_layer_data",
    "probability_style",
]

COSINE_COLORMAP = "PiYG"  # diverging: pink = opposite, white = unrelated (0), green = the same direction
COSINE_LIMITS = (-1.0, 1.0)
FEATURE_NAMES = ("features",)


def cosine_style() -> dict[str, Any]:
    """Layer keywords of a cosine-similarity map ``(Z, Y, X)`` in [-1, 1]."""
    return {"colormap": COSINE_COLORMAP, "contrast_limits": COSINE_LIMITS}


def probability_style() -> dict[str, Any]:
    """Layer keywords of a class-probability stack ``(C, Z, Y, X)`` in [0, 1] (hidden: the labels are on top)."""
    return {"colormap": "magma", "contrast_limits": (0.0, 1.0), "visible": False}


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_kind(path: str | Path) -> str | None:
    """``"rgb"``, ``"cosine"``, ``"features"``, ``"probabilities"`` for a file named as the jobs name their outputs,
    else ``None``."""
    stem = _stem(path).lower()
    if stem.endswith(RGB_SUFFIX):
        return "rgb"
    if stem == COSINE_STEM:
        return "cosine"
    if stem in FEATURE_NAMES or stem.endswith("_features"):
        return "features"
    if "probabilities" in stem:
        return "probabilities"
    return None


def _stack_attrs(volume: Volume, name: str) -> dict[str, Any]:
    """One ``(C, Z, Y, X)`` layer: the volume's geometry behind a leading channel axis."""
    geometry = layer_geometry(volume.display_affine)
    affine = np.eye(5)
    affine[1:, 1:] = geometry["affine"]
    meta = LayerMeta(nifti_source=volume.source, display_affine=volume.display_affine)
    return {
        "name": name,
        "scale": (1.0, *geometry["scale"]),
        "translate": (0.0, *geometry["translate"]),
        "affine": affine,
        "metadata": with_meta(None, meta),
    }


def output_layer_data(path: str | Path) -> list[LayerDataTuple]:
    """The layers of one NIfTI file the plugin may have written, styled by its kind (module docstring)."""
    kind = output_kind(path)
    volume = read_nifti(path)
    data = volume.data
    if kind is None or (kind != "cosine" and data.ndim != 4) or (kind == "cosine" and data.ndim != 3):
        return [volume_layer_data(volume)]
    if kind == "rgb" and data.shape[0] == 3:
        rgb = np.moveaxis(np.asarray(data), 0, -1)
        if rgb.dtype != np.uint8:  # written as floats in [0, 1] by another tool
            rgb = (np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255).round().astype(np.uint8)
        return [(rgb, _rgb_attrs(volume), "image")]
    if kind == "cosine":
        return [volume_layer_data(volume, **cosine_style())]
    if kind == "probabilities":
        return [(data, {**_stack_attrs(volume, volume.name), **probability_style()}, "image")]
    from ..core.rgb import pca_rgb

    stack = (data, {**_stack_attrs(volume, volume.name), "visible": False}, "image")
    return [stack, (pca_rgb(np.asarray(data)), _rgb_attrs(volume, f"{volume.name} RGB"), "image")]


def _rgb_attrs(volume: Volume, name: str | None = None) -> dict[str, Any]:
    """An RGB ``(Z, Y, X, 3)`` layer on the volume's grid."""
    meta = LayerMeta(nifti_source=volume.source, display_affine=volume.display_affine)
    return {
        "name": name or volume.name,
        "rgb": True,
        **layer_geometry(volume.display_affine),
        "metadata": with_meta(None, meta),
    }
