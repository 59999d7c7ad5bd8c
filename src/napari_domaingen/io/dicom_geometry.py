"""DICOM patient geometry: direction cosines, pixel and slice spacing, the RAS affine, slice-position checks.

Geometry
    DICOM patient coordinates are LPS millimetres. For a series of single-frame images the voxel array is built
    with the axes ``(i, j, k) = (column, row, slice)``; the LPS affine has the columns

    * ``i``: row direction cosine (``ImageOrientationPatient[:3]``, the direction of increasing *column* index)
      × column spacing (``PixelSpacing[1]``),
    * ``j``: column direction cosine (``ImageOrientationPatient[3:]``) × row spacing (``PixelSpacing[0]``),
    * ``k``: the step between consecutive slice positions (``ImagePositionPatient``), so a gantry tilt stays
      an exact (sheared) affine (exact in the sform; the qform, which cannot shear, gets the closest rigid one),
    * origin: ``ImagePositionPatient`` of the first slice,

    and ``diag(-1, -1, 1)`` turns it into the RAS affine of an in-memory NIfTI image. That image goes through
    :func:`~.nifti.volume_from_image`, so a DICOM volume has exactly the display convention of a NIfTI volume
    (``(Z, Y, X)``, RAS+, world ``(S, A, R)``) and ``write_nifti(path, volume.data, source=volume.source)``
    writes it as a NIfTI file on the DICOM grid.

Slice order and checks
    :func:`_place_slices` does all of this for a series of single-frame files and, identically, for the frames of
    one enhanced multi-frame file (:mod:`.dicom_multiframe`). Slices are sorted by their position along the slice
    normal (``dot(ImagePositionPatient, normal)`` with ``normal = row × column`` cosines), never by file name,
    ``InstanceNumber`` or frame number. A series is refused, with
    a message naming the folder and the problem, when its slices have different orientations ("mixed
    orientations", e.g. a three-plane localizer), sizes or pixel spacings, share a position (several echoes or
    phases in one series), leave a gap of a whole number of slices ("missing slice(s) between positions … and
    …") or are otherwise irregularly spaced ("inconsistent slice spacing"). Nothing is ever interpolated.
    Spacing tolerance: ``max(0.02 mm, 1 %)`` of the median slice spacing (DICOM positions are decimal strings
    that scanners often round to 0.01 mm).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from .errors import VolumeReadError

ORIENTATION_TOL = 1e-3  # direction cosines written as decimal strings
SPACING_ABS_TOL = 0.02  # mm
SPACING_REL_TOL = 0.01
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# A 2D image without a patient frame: row direction → R, column direction → A, normal → S (LPS cosines),
# which displays the stored pixels unflipped as (1, rows, columns).
_NO_FRAME_IOP = np.array([-1.0, 0.0, 0.0, 0.0, -1.0, 0.0])


def _frame_of(ds: Dataset) -> bool:
    return "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds


def _has_frame(members: list[tuple[Path, Dataset]]) -> bool:
    return all(_frame_of(ds) for _, ds in members)


def _iop(ds: Dataset) -> np.ndarray:
    return np.array([float(v) for v in ds.ImageOrientationPatient], dtype=float)


def _ipp(ds: Dataset) -> np.ndarray:
    return np.array([float(v) for v in ds.ImagePositionPatient], dtype=float)


def _normal(iop: np.ndarray, where: Path | None = None) -> np.ndarray:
    row, column = iop[:3], iop[3:]
    row_norm, column_norm = np.linalg.norm(row), np.linalg.norm(column)
    if row_norm == 0 or column_norm == 0 or abs(row @ column) / (row_norm * column_norm) > 0.01:
        if where is not None:
            raise VolumeReadError(where, f"ImageOrientationPatient {iop.tolist()} is not two orthogonal directions")
        return np.array([0.0, 0.0, 1.0])
    normal = np.cross(row / row_norm, column / column_norm)
    return normal / np.linalg.norm(normal)


def _ras_affine(
    iop: np.ndarray, pixel_spacing: tuple[float, float], origin: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """RAS affine of the voxel axes ``(i=column, j=row, k=slice)``."""
    row_cosine = iop[:3] / np.linalg.norm(iop[:3])
    column_cosine = iop[3:] / np.linalg.norm(iop[3:])
    row_spacing, column_spacing = pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * column_spacing
    lps[:3, 1] = column_cosine * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return _LPS_TO_RAS @ lps


def _pixel_spacing(ds: Dataset, where: Path | None = None) -> tuple[float, float]:
    """``(row spacing, column spacing)`` in mm; ``where`` set → required (a 3D series must have it)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    if where is not None:
        raise VolumeReadError(where, "the slices have no PixelSpacing")
    return 1.0, 1.0


def _thickness(ds: Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def _slice_step(
    positions: np.ndarray, normal: np.ndarray, labels: list[str], where: Path, item: str = "files"
) -> np.ndarray:
    """Step vector (LPS mm) between consecutive slices, after checking that the positions are evenly spaced.

    ``positions`` ``(n, 3)`` LPS mm, sorted along ``normal``; ``labels`` name the slices in messages (file names,
    or frame numbers with ``item="frames"``).
    """
    along = positions @ normal
    gaps = np.diff(along)
    spacing = float(np.median(gaps))
    tol = max(SPACING_ABS_TOL, SPACING_REL_TOL * abs(spacing))
    duplicates = np.flatnonzero(gaps <= tol)
    if duplicates.size:
        at = along[duplicates[0]]
        raise VolumeReadError(
            where,
            f"{duplicates.size + 1} slices share a position (e.g. {at:.2f} mm along the slice normal: "
            f"{item} {labels[duplicates[0]]}, {labels[duplicates[0] + 1]}); several echoes, phases or acquisitions "
            "in one series cannot be stacked into one volume",
        )
    irregular, missing = [], []
    for index, gap in enumerate(gaps):
        if abs(gap - spacing) <= tol:
            continue
        multiple = round(gap / spacing)
        if multiple >= 2 and abs(gap - multiple * spacing) <= tol * multiple:
            missing.append((index, multiple - 1))
        else:
            irregular.append(index)
    if irregular:
        found = sorted({round(float(g), 3) for g in gaps})
        first = irregular[0]
        raise VolumeReadError(
            where,
            f"inconsistent slice spacing (gaps of {', '.join(f'{g:g}' for g in found[:6])} mm along the slice "
            f"normal; typical {spacing:g} mm; first irregular gap {gaps[first]:g} mm between positions "
            f"{along[first]:.2f} and {along[first + 1]:.2f} mm)",
        )
    if missing:
        index, count = missing[0]
        more = f"; {len(missing) - 1} more gap(s)" if len(missing) > 1 else ""
        raise VolumeReadError(
            where,
            f"missing slice(s) between positions {along[index]:.2f} and {along[index + 1]:.2f} mm along the slice "
            f"normal ({item} {labels[index]} and {labels[index + 1]}; about {count} slice(s) of "
            f"{spacing:g} mm missing{more}); the series is incomplete",
        )
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    deviation = np.abs(positions - (positions[0] + np.arange(len(positions))[:, None] * step)).max()
    if deviation > tol:
        raise VolumeReadError(
            where,
            "inconsistent slice positions: the slices do not lie on one straight line "
            f"(off by up to {deviation:.3f} mm)",
        )
    return step


def orientations_text(orientations: list[np.ndarray]) -> str:
    """The first three ImageOrientationPatient values as ``[1 0 0 0 1 0], […], …``."""
    shown = ", ".join("[" + " ".join(f"{v:g}" for v in iop) + "]" for iop in orientations[:3])
    return shown + (", …" if len(orientations) > 3 else "")


def _place_slices(
    datasets: list[Dataset], where: Path, labels: list[str], item: str = "files"
) -> tuple[list[int], np.ndarray]:
    """Order and RAS affine of a stack of slices (single-frame files, or the frames of one multi-frame file).

    Each dataset carries one slice's ``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing`` and
    ``SpacingBetweenSlices``/``SliceThickness``. Returns the slice order along the normal (indices into
    ``datasets``) and the ``(4, 4)`` RAS affine of the voxel axes ``(i=column, j=row, k=slice)`` in that order.
    Raises :class:`VolumeReadError` for mixed orientations, different pixel spacings, shared positions, missing
    slices or irregular spacing; ``labels`` name the slices in those messages (``item`` says what they are).
    One slice without a patient frame is placed axially at the origin (see :data:`_NO_FRAME_IOP`).
    """
    two_d = len(datasets) == 1
    if not all(_frame_of(ds) for ds in datasets):
        if not two_d:
            raise VolumeReadError(
                where, "the slices have no ImagePositionPatient/ImageOrientationPatient; they cannot be placed in space"
            )
        ds = datasets[0]
        step = _normal(_NO_FRAME_IOP) * _thickness(ds)
        return [0], _ras_affine(_NO_FRAME_IOP, _pixel_spacing(ds, None), np.zeros(3), step)
    iops = [_iop(ds) for ds in datasets]
    distinct = _distinct(iops, ORIENTATION_TOL)
    if len(distinct) > 1:
        raise VolumeReadError(
            where,
            f"mixed orientations: {len(distinct)} different ImageOrientationPatient values among "
            f"{len(datasets)} slices ({orientations_text(distinct)}); a localizer or a "
            "multi-plane series cannot be stacked into one volume",
        )
    iop = iops[0]
    normal = _normal(iop, where)
    order = sorted(range(len(datasets)), key=lambda n: float(_ipp(datasets[n]) @ normal))
    positions = np.array([_ipp(datasets[n]) for n in order])
    spacings = [_pixel_spacing(datasets[n], where if not two_d else None) for n in order]
    _check_same("pixel spacing", datasets, lambda ds: None, where, values=spacings, tol=1e-4)
    if two_d:
        step = normal * _thickness(datasets[0])
    else:
        step = _slice_step(positions, normal, [labels[n] for n in order], where, item)
    return order, _ras_affine(iop, spacings[0], positions[0], step)


def _check_same(
    what: str,
    datasets: list[Dataset],
    key: Callable[[Dataset], Any],
    where: Path,
    values: list[Any] | None = None,
    tol: float = 0.0,
) -> None:
    """Raise "the slices differ in <what>" when ``key(ds)`` (or ``values``) differ by more than ``tol``."""
    values = values if values is not None else [key(ds) for ds in datasets]
    distinct = _distinct([np.asarray(v, dtype=float) for v in values], tol)
    if len(distinct) > 1:
        shown = ", ".join(" × ".join(f"{x:g}" for x in v) for v in distinct[:4])
        raise VolumeReadError(where, f"the slices differ in {what}: {shown}")


def _distinct(values: list[np.ndarray], tol: float) -> list[np.ndarray]:
    distinct: list[np.ndarray] = []
    for value in values:
        if not any(value.shape == d.shape and np.allclose(value, d, atol=tol, rtol=0) for d in distinct):
            distinct.append(value)
    return distinct
