"""Voxel-to-world geometry shared by every volume layer.

Convention (documented in docs/geometry.md):

* Arrays are in **display order** ``(Z, Y, X)``, obtained from the NIfTI voxel axes ``(i, j, k)`` after
  nibabel's closest-canonical reorientation (RAS+) and a reversal of the axis order, so that
  ``Z`` runs inferior→superior, ``Y`` posterior→anterior and ``X`` left→right.
* World coordinates are scanner **RAS millimetres in the same reversed order** ``(S, A, R)``.
  ``display_affine`` maps a display index ``(z, y, x, 1)`` to ``(S, A, R, 1)``; it is the NIfTI affine with
  rows and columns reversed.
* napari receives it as ``scale`` (voxel spacing, mm), ``translate`` and an extra ``affine`` that holds only
  the residual rotation/shear (the identity for axis-aligned volumes).

Nothing here imports napari or Qt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

_REVERSE = np.array([2, 1, 0, 3])
_AXIS_ALIGNED_TOL = 1e-6
_TRANSFORMS = ("scale", "translate", "affine", "rotate", "shear")


class LayerGeometry(TypedDict):
    """Keyword arguments for a napari layer: ``scale``/``translate`` (3,), ``affine`` (4, 4)."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    affine: np.ndarray


def ras_to_display_affine(ras_affine: np.ndarray) -> np.ndarray:
    """Reverse the axis order of a NIfTI affine ``(i, j, k) → (R, A, S)``: ``(z, y, x) → (S, A, R)``."""
    ras_affine = np.asarray(ras_affine, dtype=float)
    return ras_affine[np.ix_(_REVERSE, _REVERSE)]


def display_to_ras_affine(display_affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ras_to_display_affine` (the reversal is its own inverse)."""
    return ras_to_display_affine(display_affine)


def layer_geometry(display_affine: np.ndarray) -> LayerGeometry:
    """Split a (4, 4) display affine into napari ``scale`` / ``translate`` / ``affine``.

    ``world = affine_lin @ (translate + scale * index)`` reproduces ``display_affine @ index`` exactly.
    """
    display_affine = np.asarray(display_affine, dtype=float)
    linear = display_affine[:3, :3]
    offset = display_affine[:3, 3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"degenerate affine (a zero voxel axis): {display_affine.tolist()}")
    direction = linear / spacing
    residual = np.eye(4)
    if np.allclose(direction, np.eye(3), atol=_AXIS_ALIGNED_TOL):
        translate = offset
    else:
        residual[:3, :3] = direction
        translate = np.linalg.solve(direction, offset)
    return LayerGeometry(
        scale=tuple(float(s) for s in spacing),
        translate=tuple(float(t) for t in translate),
        affine=residual,
    )


def display_affine_from_layer(
    layer: Any,
    translate: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    rotate: np.ndarray | None = None,
    shear: np.ndarray | None = None,
) -> np.ndarray:
    """The (4, 4) display affine (data index → world) of a layer: the inverse of :func:`layer_geometry`.

    ``layer``: a napari layer (or anything with ``scale``/``translate``/``affine``/``rotate``/``shear``
    attributes), a mapping with those keys (layer-data attributes, as npe2 writers receive them), or the ``scale``
    itself with ``translate``/``affine``/``rotate``/``shear`` given beside it. ``affine`` may be a (N+1, N+1)
    matrix or a transform with ``affine_matrix``. A layer with leading non-spatial axes (e.g. ``(C, Z, Y, X)``)
    keeps the spatial block of its last three axes. ``ValueError`` for a non-identity ``rotate``/``shear``
    (napari applies them on top of ``affine``; bake them into ``affine`` instead).
    """
    if isinstance(layer, Mapping):
        scale, translate, affine, rotate, shear = (layer.get(k) for k in _TRANSFORMS)
    elif hasattr(layer, "scale"):
        scale, translate, affine, rotate, shear = (getattr(layer, k, None) for k in _TRANSFORMS)
    else:
        scale = layer
    scale = np.asarray(scale if scale is not None else np.ones(3), dtype=float)
    ndim = min(3, scale.size)
    scale = scale[-ndim:]
    translate = np.zeros(ndim) if translate is None else np.asarray(translate, dtype=float)[-ndim:]
    for name, value in (("rotate", rotate), ("shear", shear)):
        if value is None:
            continue
        value = np.asarray(value, dtype=float)  # an angle / shear vector (0: none) or a matrix (identity: none)
        if not np.allclose(value, np.eye(len(value)) if value.ndim == 2 else 0.0):
            raise ValueError(f"layers with a '{name}' transform cannot be written as NIfTI; bake it into 'affine'")
    base = np.eye(ndim + 1)
    base[:ndim, :ndim] = np.diag(scale)
    base[:ndim, ndim] = translate
    if affine is None:
        return base
    extra = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)
    if extra.shape[0] > ndim + 1:  # keep the spatial block of a higher-dimensional layer
        spatial = np.eye(ndim + 1)
        spatial[:ndim, :ndim] = extra[-ndim - 1 : -1, -ndim - 1 : -1]
        spatial[:ndim, ndim] = extra[-ndim - 1 : -1, -1]
        extra = spatial
    return extra @ base


def voxel_to_world(display_affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """World ``(S, A, R)`` mm of display indices ``(..., 3)``."""
    index = np.asarray(index, dtype=float)
    return index @ display_affine[:3, :3].T + display_affine[:3, 3]


def world_to_voxel(display_affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Display indices (float) of world ``(S, A, R)`` mm points ``(..., 3)``: the inverse of :func:`voxel_to_world`."""
    display_affine = np.asarray(display_affine, dtype=float)
    world = np.asarray(world, dtype=float)
    return np.linalg.solve(display_affine[:3, :3], (world - display_affine[:3, 3]).T).T


def same_grid(
    shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray, atol: float = 1e-4
) -> bool:
    """True when two volumes share shape and voxel-to-world affine (to ``atol`` mm)."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol)


def resample_to_grid(
    data: np.ndarray, affine: np.ndarray, target_shape: tuple[int, ...], target_affine: np.ndarray, order: int = 1
) -> np.ndarray:
    """Resample a ``(Z, Y, X)`` volume with display affine ``affine`` onto another grid (linear; 0 = nearest).

    Voxels of the target grid that fall outside the source get 0.
    """
    from scipy.ndimage import affine_transform

    mapping = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(target_affine, float)  # target idx → source idx
    return affine_transform(
        np.asarray(data, dtype=np.float32 if order else data.dtype),
        mapping[:3, :3],
        offset=mapping[:3, 3],
        output_shape=tuple(target_shape),
        order=order,
        mode="constant",
        cval=0.0,
    )
