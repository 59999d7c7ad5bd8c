"""Volumes as SimpleITK images in physical space, the frame registration and the ITK/ANTs transform files use.

ITK works in **LPS** millimetres (x to the patient's left, y posterior, z superior) with voxel index order
``(i, j, k)``; our volumes are display-order ``(Z, Y, X)`` arrays with a display affine to ``(S, A, R)`` mm
(:mod:`napari_domaingen.io.geometry`). A display array is already ITK's ``(k, j, i)`` array order, so only the
affine changes: LPS = diag(−1, −1, 1) · RAS.

Example::

    >>> import numpy as np
    >>> image = as_sitk(np.zeros((4, 5, 6), np.float32), np.diag([2.0, 1.0, 1.0, 1.0]))
    >>> image.GetSize(), image.GetSpacing()
    ((6, 5, 4), (1.0, 1.0, 2.0))
    >>> np.allclose(display_affine_of(image), np.diag([2.0, 1.0, 1.0, 1.0]))
    True
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from ..io.geometry import display_to_ras_affine, ras_to_display_affine

__all__ = ["LPS_FROM_RAS", "as_array", "as_sitk", "display_affine_of", "isotropic_grid", "physical_box"]

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def as_sitk(data: np.ndarray, display_affine: np.ndarray, dtype: type = np.float32) -> sitk.Image:
    """A ``(Z, Y, X)`` display-order array with its (4, 4) display affine → a SimpleITK image in LPS mm."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {data.shape}")
    lps = LPS_FROM_RAS @ display_to_ras_affine(np.asarray(display_affine, float))
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=dtype))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    return image


def display_affine_of(image: sitk.Image) -> np.ndarray:
    """The (4, 4) display affine (``(z, y, x)`` → ``(S, A, R)`` mm) of a 3D SimpleITK image."""
    lps = np.eye(4)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), float)
    lps[:3, 3] = image.GetOrigin()
    return ras_to_display_affine(LPS_FROM_RAS @ lps)


def as_array(image: sitk.Image) -> np.ndarray:
    """The voxels of a SimpleITK image in display order ``(Z, Y, X)`` (a copy)."""
    return sitk.GetArrayFromImage(image)


def physical_box(image: sitk.Image, mask: np.ndarray | None = None, margin_mm: float = 0.0) -> np.ndarray:
    """The corners ``(8, 3)`` LPS mm of ``image`` (or of the box around ``mask`` ``(Z, Y, X)``, grown by
    ``margin_mm``), for overlap checks and crops."""
    size = np.asarray(image.GetSize())
    low, high = np.zeros(3), size - 1.0
    if mask is not None:
        where = np.argwhere(mask)
        if len(where):
            low, high = where.min(0)[::-1].astype(float), where.max(0)[::-1].astype(float)
    spacing = np.asarray(image.GetSpacing())
    low, high = low - margin_mm / spacing, high + margin_mm / spacing
    corners = itertools.product(*zip(low.tolist(), high.tolist()))
    return np.array([image.TransformContinuousIndexToPhysicalPoint(list(c)) for c in corners])


def isotropic_grid(image: sitk.Image, spacing_mm: float, mask: np.ndarray | None = None, margin_mm: float = 10.0):
    """``image`` resampled (linear) onto a grid of ``spacing_mm`` voxels with its own direction, cropped to the box
    around ``mask`` ``(Z, Y, X)`` grown by ``margin_mm`` (the whole image without a mask)."""
    spacing = np.asarray(image.GetSpacing(), float)
    size = np.asarray(image.GetSize(), float)
    low, high = np.zeros(3), size - 1.0
    if mask is not None and mask.any():
        where = np.argwhere(mask)
        low = np.maximum(where.min(0)[::-1] - margin_mm / spacing, 0.0)
        high = np.minimum(where.max(0)[::-1] + margin_mm / spacing, size - 1.0)
    origin = image.TransformContinuousIndexToPhysicalPoint(low.tolist())
    new_size = [max(int(np.floor((h - lo) * s / spacing_mm)) + 1, 4) for lo, h, s in zip(low, high, spacing)]
    return sitk.Resample(
        image,
        new_size,
        sitk.Transform(),
        sitk.sitkLinear,
        origin,
        [float(spacing_mm)] * 3,
        image.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
