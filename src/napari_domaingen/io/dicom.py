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

Enhanced (multi-frame) files
    A series made of one multi-frame file with the Multi-frame Functional Groups (Enhanced or Legacy Converted
    Enhanced CT/MR/PET) is read frame by frame by :mod:`.dicom_multiframe` through the same ordering and checks
    as a series of single-frame files, and gives the same :class:`Volume`. A series of several multi-frame files,
    or of multi-frame and single-frame files mixed, is refused.

Not supported (clear errors): colour images, classic multi-frame images without per-frame geometry. Compressed
pixel data need a decoder plugin for pydicom; without one the error names the transfer syntax and the packages to
install. DICOM Segmentations (SEG) are not image series; they are read by :mod:`.dicom_seg`.

Why pydicom directly and not MONAI's ``PydicomReader``: MONAI (1.6) sorts slices by ``InstanceNumber`` and
derives the slice spacing from the z component of ``ImagePositionPatient`` only (wrong for sagittal, coronal
and oblique stacks), silently skips slices without ``InstanceNumber`` and only warns about different sizes or
spacings, and cannot tell a missing slice from a regular one. Reading with pydicom keeps the geometry exact,
lets every problem become a precise error message, scans headers without loading pixels or importing torch,
and routes the result through the same NIfTI display convention as every other volume.

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import pydicom
from pydicom.dataset import Dataset

from .dicom_geometry import ORIENTATION_TOL, SPACING_ABS_TOL, SPACING_REL_TOL, _check_same, _place_slices
from .dicom_multiframe import is_multiframe, read_multiframe
from .dicom_pixels import DECODER_HINT, _voxels
from .dicom_series import DicomSeries, _is_image, _kind, _read_header, list_series
from .errors import VolumeReadError
from .nifti import Volume, volume_from_image
from .output_guard import require_input
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
    try:
        return _build_volume(series, _read_datasets(series), where)
    except VolumeReadError as error:
        if not series.skipped_members:
            raise
        skipped = ", ".join(series.skipped_members[:3])
        raise VolumeReadError(
            error.path,
            f"{error.problem} (the archive's members with unsafe names, which could leave the archive, were not "
            f"read: {skipped})",
        ) from None


def _pick_series(path: Path, uid: str | None) -> DicomSeries:
    require_input(path, "DICOM series (a folder, zip or one of its files)", VolumeReadError)
    if path.is_file() and not zipfile.is_zipfile(path):
        ds = _read_header(lambda: path)
        if ds is None:
            raise VolumeReadError(path, "not a DICOM file")
        if "Rows" not in ds and _is_dicomdir(path, ds):  # a DICOMDIR: read the folder it describes
            return _pick_series(path.parent, uid)
        if "Rows" not in ds:
            raise VolumeReadError(
                path,
                f"holds no image (no Rows/Columns in its header): it is a DICOM {_kind(ds)} object, or the file is "
                "truncated",
            )
        if not _is_image(ds):
            raise VolumeReadError(path, f"is a DICOM {_kind(ds)} object, not an image series")
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
    if not candidates:
        raise VolumeReadError(path, "not part of any image series in its folder")
    if len(candidates) > 1:
        listing = "; ".join(
            f"{s.uid} ({s.name}, {s.n_slices} {'frames' if s.multiframe else 'files'})" for s in candidates
        )
        raise VolumeReadError(
            path, f"contains {len(candidates)} series; choose one by its SeriesInstanceUID: {listing}"
        )
    return candidates[0]


def _is_dicomdir(path: Path, ds: Dataset) -> bool:
    """Whether a DICOM file is a DICOMDIR (Media Storage Directory), which stands for its folder."""
    media = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    return path.name.upper() == "DICOMDIR" or "1.2.840.10008.1.3.10" in (media, str(ds.get("SOPClassUID", "")))


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
    multi = [path for path, ds in members if is_multiframe(ds)]
    if multi and len(members) > 1:
        single = len(members) - len(multi)
        also = f" and {single} single-frame file(s)" if single else ""
        raise VolumeReadError(
            where,
            f"series {series.uid} consists of {len(multi)} multi-frame file(s){also} (e.g. {multi[0].name}); "
            "only one multi-frame file, or single-frame files, can be read as one volume",
        )
    if multi:
        path, ds = members[0]
        voxels, affine, two_d = read_multiframe(ds, path)
    else:
        for path, ds in members:
            if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
                kind = ds.get("PhotometricInterpretation", "")
                raise VolumeReadError(path, f"colour DICOM images ({kind}) are not supported")
        datasets = [ds for _, ds in members]
        _check_same("size (rows × columns)", datasets, lambda ds: (int(ds.Rows), int(ds.Columns)), where)
        order, affine = _place_slices(datasets, where, [path.name for path, _ in members])
        voxels = _voxels([members[n] for n in order])
        two_d = len(members) == 1
    image = nib.Nifti1Image(voxels, affine)
    image.header.set_xyzt_units("mm")
    # A qform cannot hold the shear of a tilted gantry: nibabel stores the closest rigid geometry there, and
    # the sform (which nibabel and this package prefer) keeps the exact one.
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    name = series.name + (" (2D)" if two_d else "")
    volume = volume_from_image(image, name, as_label=False, path=where)
    volume.source = dataclasses.replace(volume.source, dicom_series_uid=series.uid)
    return volume
