"""Resample a volume through its affine: onto another volume's grid, or onto an isotropic grid (spacing in mm).

Images are resampled linearly (→ float32), labels by nearest neighbour (label dtype kept); data ``(Z, Y, X)`` or
``(C, Z, Y, X)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from .geometry import display_to_ras_affine, resample_to_grid
from .nifti import NiftiSource, Volume


def _resample(data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target: np.ndarray, label: bool):
    order = 0 if label else 1
    if data.ndim == 4:
        return np.stack([resample_to_grid(c, affine, shape, target, order) for c in data])
    out = resample_to_grid(data, affine, shape, target, order)
    return out.astype(data.dtype, copy=False) if label else out


def resample_onto(volume: Volume, reference: Volume) -> Volume:
    """``volume`` resampled through both affines onto ``reference``'s grid (linear for images → float32,
    nearest for labels, label dtype kept; outside the volume → 0).

    The result's ``source`` is the reference's, so writing it puts it on the reference's file grid;
    its ``name`` is unchanged.
    """
    data = _resample(
        volume.data, volume.display_affine, reference.spatial_shape, reference.display_affine, volume.is_label
    )
    return Volume(
        data=data,
        display_affine=np.array(reference.display_affine, dtype=float),
        name=volume.name,
        is_label=volume.is_label,
        source=reference.source,
    )


@dataclass(frozen=True)
class ResampledSource(NiftiSource):
    """The grid of a volume resampled in memory: ``resampled_from`` is the original file (or name) and
    ``original_spacing`` its display-order spacing (mm)."""

    resampled_from: str | None = None
    original_spacing: tuple[float, float, float] | None = None


def isotropic_grid(
    display_affine: np.ndarray, shape: Sequence[int], spacing: float, straight: bool = False
) -> tuple[np.ndarray, tuple]:
    """(display affine, shape) of a grid with ``spacing`` mm voxels covering the same field of view: same direction
    cosines and origin (the centre of voxel 0), ``ceil(extent / spacing)`` voxels per axis. ``straight``: along the
    scanner axes instead (display axes = world (S, A, R)), covering the volume's bounding box — an oblique volume
    then shows every plane without napari's stepped out-of-plane slicing."""
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    affine = np.asarray(display_affine, float)
    if straight:
        last = np.asarray(shape[-3:], float) - 1
        corners = np.array([[z, y, x, 1.0] for z in (0, last[0]) for y in (0, last[1]) for x in (0, last[2])])
        world = (affine @ corners.T)[:3].T
        low, high = world.min(axis=0), world.max(axis=0)
        new = np.diag([spacing, spacing, spacing, 1.0])
        new[:3, 3] = low
        new_shape = tuple(int(math.floor((h - lo) / spacing + 1e-6)) + 1 for lo, h in zip(low, high))
        return new, new_shape
    old = np.linalg.norm(affine[:3, :3], axis=0)
    extent = np.asarray(shape[-3:], float) * old
    new_shape = tuple(max(1, int(math.ceil(e / spacing - 1e-6))) for e in extent)
    new = np.eye(4)
    new[:3, :3] = affine[:3, :3] / old * spacing
    new[:3, 3] = affine[:3, 3]
    return new, new_shape


#: a grid tilted by more than this (degrees) from the scanner axes counts as oblique
OBLIQUE_DEGREES = 0.5


def obliquity_degrees(display_affine: np.ndarray) -> float:
    """The largest angle (degrees) between a voxel axis and the nearest scanner axis: 0 for a grid along the
    scanner axes."""
    directions = np.asarray(display_affine, float)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    cosines = np.clip(np.abs(directions).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def resample_isotropic(volume: Volume, spacing: float = 1.0, straight: bool = False) -> Volume:
    """``volume`` on an isotropic grid (see :func:`isotropic_grid`; ``straight``: along the scanner axes), linear
    for images, nearest for labels.

    The result's ``source`` is a :class:`ResampledSource` describing the new grid (RAS-ordered, header dims and
    zooms updated, ``resampled_from`` = the original file), so
    ``write_nifti(path, result.data, source=result.source)`` writes a NIfTI file on the new grid.
    Already isotropic at ``spacing`` (and, with ``straight``, not oblique) → the volume itself.
    """
    oblique = obliquity_degrees(volume.display_affine) > OBLIQUE_DEGREES
    if np.allclose(volume.spacing, spacing, atol=1e-4) and not (straight and oblique):
        return volume
    affine, shape = isotropic_grid(volume.display_affine, volume.spatial_shape, spacing, straight)
    data = _resample(volume.data, volume.display_affine, shape, affine, volume.is_label)
    old = volume.source
    ras = display_to_ras_affine(affine)
    file_shape = tuple(reversed(shape))
    header = nib.Nifti1Header.from_header(old.header) if old is not None else nib.Nifti1Header()
    if data.ndim == 4:
        header.set_data_shape((*file_shape, data.shape[0]))
        header.set_zooms((spacing, spacing, spacing, 1.0))
    else:
        header.set_data_shape(file_shape)
        header.set_zooms((spacing, spacing, spacing))
    header.set_data_dtype(data.dtype)
    qcode = int(header["qform_code"]) if old is not None else 0
    scode = int(header["sform_code"]) if old is not None else 0
    if qcode == 0 and scode == 0:
        scode = 1
    header.set_qform(ras if qcode else None, code=qcode)
    header.set_sform(ras if scode else None, code=scode)
    origin = old.path if old is not None and old.path else volume.name
    header["descrip"] = f"resampled to {spacing:g} mm by napari-domaingen".encode()[:79]
    source = ResampledSource(
        affine=ras,
        shape=file_shape,  # type: ignore[arg-type]
        header=header,
        path=None,
        resampled_from=str(origin),
        original_spacing=volume.spacing,
    )
    if source.display_shape != tuple(data.shape[-3:]) or not np.allclose(source.display_affine, affine, atol=1e-6):
        raise AssertionError("internal error: the resampled grid is not RAS-ordered")  # pragma: no cover
    return Volume(data=data, display_affine=affine, name=volume.name, is_label=volume.is_label, source=source)
