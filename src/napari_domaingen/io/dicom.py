"""Read DICOM series (a folder, a ``.zip`` or one file of the series) into a :class:`~.nifti.Volume`.

Scanning lives in :mod:`.dicom_series`, geometry and slice checks in :mod:`.dicom_geometry` (LPS → RAS affine,
slice order, spacing tolerance), pixel decoding and rescale in :mod:`.dicom_pixels`, header facts in
:mod:`.volume_info`; this module stacks one series into a volume.

Single images (2D)
    A series with one image (a radiograph, one CT slice) loads as a volume with one slice, named
    ``"<description> (2D)"``. With ``ImagePositionPatient``/``ImageOrientationPatient`` the slice sits at its
    true place (its thickness is ``SpacingBetweenSlices``, ``SliceThickness`` or 1 mm), so the length-1 axis is
    whichever display axis is closest to the slice normal. Projection radiographs (CR/DX/MG…) usually have no
    patient frame: they are then placed in an axial plane at the origin with ``ImagerPixelSpacing`` (or
    ``PixelSpacing``, or 1 mm) so the data are ``(1, rows, columns)`` exactly as stored — row 0 at the top,
    column 0 at the left — and :attr:`DicomSeries.orientation` is ``"none"``.

Not supported (clear errors): multi-frame (enhanced) files, colour images. Compressed pixel data need a
decoder plugin for pydicom; without one the error names the transfer syntax and the packages to install.

Why pydicom directly and not MONAI's ``PydicomReader``: MONAI (1.6) sorts slices by ``InstanceNumber`` and
derives the slice spacing from the z component of ``ImagePositionPatient`` only (wrong for sagittal, coronal
and oblique stacks), silently skips slices without ``InstanceNumber`` and only warns about different sizes or
spacings, and cannot tell a missing slice from a regular one. Reading with pydicom keeps the geometry exact,
lets every problem become a precise error message, scans headers without loading pixels or importing torch,
and routes the result through the same NIfTI display convention as every other volume.

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .dicom_geometry import (
    _NO_FRAME_IOP,
    ORIENTATION_TOL,
    SPACING_ABS_TOL,
    SPACING_REL_TOL,
    _check_same,
    _distinct,
    _has_frame,
    _iop,
    _ipp,
    _normal,
    _pixel_spacing,
    _ras_affine,
    _slice_step,
    _thickness,
)
from .dicom_pixels import DECODER_HINT, _voxels
from .dicom_series import DicomSeries, _read_header, list_series
from .errors import VolumeReadError
from .nifti import Volume, volume_from_image
from .volume_info import format_info, info

__all__ = [
    "DECODER_HINT",
    "ORIENTATION_TOL",
    "PROJECTION_MODALITIES",
    "SPACING_ABS_TOL",
    "SPACING_REL_TOL",
    "DicomSeries",
    "format_info",
    "info",
    "list_series",
    "read_series",
]

PROJECTION_MODALITIES = ("CR", "DX", "MG", "RF", "XA", "IO", "PX")


def read_series(series_or_folder: DicomSeries | str | os.PathLike, uid: str | None = None) -> Volume:
    """Read one series into a :class:`Volume` in display order ``(Z, Y, X)``.

    ``series_or_folder`` is a :class:`DicomSeries` from :func:`list_series`, a folder or ``.zip`` (which must
    hold a single series unless ``uid`` picks one), or one DICOM file (its series is gathered from the files
    in the same folder; a DICOMDIR stands for its folder). Raises :class:`VolumeReadError` naming the file or
    folder and the problem.
    """
    if isinstance(series_or_folder, DicomSeries):
        series = series_or_folder
        if uid is not None and uid != series.uid:
            raise VolumeReadError(series.root or series.files[0], f"series {series.uid} is not series {uid}")
    else:
        series = _pick_series(Path(series_or_folder), uid)
    where = series.archive or series.root or series.files[0].parent
    datasets = _read_datasets(series)
    return _build_volume(series, datasets, where)


def _pick_series(path: Path, uid: str | None) -> DicomSeries:
    if path.is_file() and not zipfile.is_zipfile(path):
        ds = _read_header(lambda: path)
        if ds is None:
            raise VolumeReadError(path, "not a DICOM file")
        if "Rows" not in ds:  # DICOMDIR or another object without an image: read the folder it describes
            return _pick_series(path.parent, uid)
        uid = uid or str(ds.get("SeriesInstanceUID", "")) or None
        candidates = list_series(path.parent, recursive=False)
        if uid is None:
            candidates = [s for s in candidates if path in s.files]
    else:
        candidates = list_series(path)
    if uid is not None:
        chosen = [s for s in candidates if s.uid == uid]
        if not chosen:
            raise VolumeReadError(path, f"no series with SeriesInstanceUID {uid}")
        return chosen[0]
    if len(candidates) > 1:
        listing = "; ".join(f"{s.uid} ({s.name}, {s.n_slices} files)" for s in candidates)
        raise VolumeReadError(
            path, f"contains {len(candidates)} series; choose one by its SeriesInstanceUID: {listing}"
        )
    return candidates[0]


def _read_datasets(series: DicomSeries) -> list[tuple[Path, Dataset]]:
    out = []
    archive = zipfile.ZipFile(series.archive) if series.archive is not None else None
    try:
        for path in series.files:
            try:
                if archive is not None:
                    member = path.relative_to(series.archive).as_posix()
                    source: Any = io.BytesIO(archive.read(member))
                else:
                    source = path
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(source, force=True)
            except Exception as exc:  # missing, truncated or damaged file (pydicom raises many types)
                raise VolumeReadError(path, f"cannot be read as DICOM ({type(exc).__name__}: {exc})") from exc
            out.append((path, ds))
    finally:
        if archive is not None:
            archive.close()
    return out


def _build_volume(series: DicomSeries, members: list[tuple[Path, Dataset]], where: Path) -> Volume:
    for path, ds in members:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise VolumeReadError(
                path, f"multi-frame (enhanced) DICOM with {frames} frames is not supported; export single-frame images"
            )
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            kind = ds.get("PhotometricInterpretation", "")
            raise VolumeReadError(path, f"colour DICOM images ({kind}) are not supported")
    _check_same("size (rows × columns)", members, lambda ds: (int(ds.Rows), int(ds.Columns)), where)
    frame = _has_frame(members)
    if len(members) > 1 and not frame:
        raise VolumeReadError(
            where, "the slices have no ImagePositionPatient/ImageOrientationPatient; they cannot be placed in space"
        )
    two_d = len(members) == 1
    if frame:
        iops = [_iop(ds) for _, ds in members]
        distinct = _distinct(iops, ORIENTATION_TOL)
        if len(distinct) > 1:
            shown = ", ".join("[" + " ".join(f"{v:g}" for v in iop) + "]" for iop in distinct[:3])
            raise VolumeReadError(
                where,
                f"mixed orientations: {len(distinct)} different ImageOrientationPatient values among "
                f"{len(members)} slices ({shown}{', …' if len(distinct) > 3 else ''}); a localizer or a "
                "multi-plane series cannot be stacked into one volume",
            )
        iop = iops[0]
        normal = _normal(iop, where)
        members = sorted(members, key=lambda m: float(_ipp(m[1]) @ normal))
        positions = np.array([_ipp(ds) for _, ds in members])
        spacings = [_pixel_spacing(ds, where if not two_d else None) for _, ds in members]
        _check_same("pixel spacing", members, lambda ds: None, where, values=spacings, tol=1e-4)
        if two_d:
            step = normal * _thickness(members[0][1])
        else:
            step = _slice_step(positions, normal, [p for p, _ in members], where)
        origin = positions[0]
    else:
        iop, origin = _NO_FRAME_IOP, np.zeros(3)
        spacings = [_pixel_spacing(members[0][1], None)]
        step = _normal(iop) * _thickness(members[0][1])
    affine = _ras_affine(iop, spacings[0], origin, step)
    voxels = _voxels(members)
    image = nib.Nifti1Image(voxels, affine)
    image.header.set_xyzt_units("mm")
    # A qform cannot hold the shear of a tilted gantry: nibabel stores the closest rigid geometry there, and
    # the sform (which nibabel and this package prefer) keeps the exact one.
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    name = series.name + (" (2D)" if two_d else "")
    return volume_from_image(image, name, as_label=False, path=where)
