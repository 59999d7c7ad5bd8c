"""Read DICOM series (a folder, a ``.zip`` or one file of the series) into a :class:`~.nifti.Volume`.

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
    Slices are sorted by their position along the slice normal (``dot(ImagePositionPatient, normal)`` with
    ``normal = row × column`` cosines), never by file name or ``InstanceNumber``. A series is refused, with
    a message naming the folder and the problem, when its slices have different orientations ("mixed
    orientations", e.g. a three-plane localizer), sizes or pixel spacings, share a position (several echoes or
    phases in one series), leave a gap of a whole number of slices ("missing slice(s) between positions … and
    …") or are otherwise irregularly spaced ("inconsistent slice spacing"). Nothing is ever interpolated.
    Spacing tolerance: ``max(0.02 mm, 1 %)`` of the median slice spacing (DICOM positions are decimal strings
    that scanners often round to 0.01 mm).

Intensities
    ``RescaleSlope``/``RescaleIntercept`` are applied per slice (CT → Hounsfield units). The result stays an
    integer type when every slope and intercept is integral (``int16`` if the values fit, else ``int32``;
    the stored type when there is no rescale at all) and is ``float32`` otherwise. Modality LUT sequences and
    vendor-private scalings are not applied.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ImplicitVRLittleEndian

from .errors import VolumeReadError
from .nifti import Volume, is_nifti_path, volume_from_image

DECODER_HINT = "install a decoder: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or gdcm)"
ORIENTATION_TOL = 1e-3  # direction cosines written as decimal strings
SPACING_ABS_TOL = 0.02  # mm
SPACING_REL_TOL = 0.01
PROJECTION_MODALITIES = ("CR", "DX", "MG", "RF", "XA", "IO", "PX")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# A 2D image without a patient frame: row direction → R, column direction → A, normal → S (LPS cosines),
# which displays the stored pixels unflipped as (1, rows, columns).
_NO_FRAME_IOP = np.array([-1.0, 0.0, 0.0, 0.0, -1.0, 0.0])


@dataclass
class DicomSeries:
    """One DICOM series found by :func:`list_series` (from headers only).

    ``files`` are sorted by slice position along the normal (by ``InstanceNumber`` then name without a
    patient frame); inside a zip they read ``<archive>/<member>`` and ``archive`` is the zip file.
    ``spacing`` is ``(slice, row, column)`` = ``(z, y, x)`` in mm in DICOM's own axis order (slice spacing from
    the positions; ``SpacingBetweenSlices``/``SliceThickness`` for a single image). ``orientation`` are the
    nibabel axis codes of the voxel axes ``(column, row, slice)`` — ``"LPS"`` for a standard axial stack,
    ``"none"`` without a patient frame. ``dtype`` is the stored pixel type (before rescale).
    """

    uid: str
    description: str
    modality: str
    files: list[Path]
    rows: int
    columns: int
    n_slices: int
    spacing: tuple[float, float, float]
    orientation: str
    dtype: str
    transfer_syntax: str
    series_number: int | None = None
    rescale: tuple[float, float] | None = None
    archive: Path | None = None
    root: Path | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """Display name: the description, else modality and series number."""
        if self.description:
            return self.description
        number = f" {self.series_number}" if self.series_number is not None else ""
        return f"{self.modality or 'DICOM'} series{number}"


# --------------------------------------------------------------------------------------------------- scanning


def list_series(folder_or_zip: str | os.PathLike, recursive: bool = True) -> list[DicomSeries]:
    """Every image series in a folder (recursively by default) or a ``.zip``, from headers only.

    Files that are not DICOM, and DICOM objects without an image (DICOMDIR, reports), are skipped.
    Series are ordered by series number, then description. Raises :class:`VolumeReadError` when nothing is
    found.
    """
    root = Path(folder_or_zip)
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    n_dicom = 0
    with _Container(root, recursive) as container:
        for path, opener in container.members():
            ds = _read_header(opener)
            if ds is None:
                continue
            n_dicom += 1
            if "Rows" not in ds or "Columns" not in ds:
                continue
            uid = str(ds.get("SeriesInstanceUID", "")) or f"(no SeriesInstanceUID) {path.parent}"
            groups.setdefault(uid, []).append((path, ds))
    if not groups:
        if n_dicom:
            raise VolumeReadError(
                root, f"no DICOM images found ({n_dicom} DICOM file(s) without an image, e.g. DICOMDIR or reports)"
            )
        raise VolumeReadError(root, "no DICOM files found")
    archive = root if container.is_zip else None
    series = [_describe(uid, members, archive, root) for uid, members in groups.items()]
    series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.description, s.uid))
    return series


def _describe(uid: str, members: list[tuple[Path, Dataset]], archive: Path | None, root: Path) -> DicomSeries:
    first = members[0][1]
    frame = _has_frame(members)
    if frame:
        normal = _normal(_iop(first))
        members = sorted(members, key=lambda m: (float(_ipp(m[1]) @ normal), str(m[0])))
        positions = np.array([_ipp(ds) @ normal for _, ds in members])
    else:
        members = sorted(members, key=lambda m: (int(m[1].get("InstanceNumber", 0) or 0), str(m[0])))
        positions = np.zeros(0)
    first = members[0][1]
    steps = np.diff(positions)
    slice_spacing = float(np.median(steps)) if steps.size else 0.0
    if slice_spacing <= SPACING_ABS_TOL:  # one image, or slices sharing positions (read_series reports those)
        slice_spacing = _thickness(first)
    row_spacing, column_spacing = _pixel_spacing(first)
    if frame:
        iop = _iop(first)
        affine = _ras_affine(iop, (row_spacing, column_spacing), _ipp(first), _normal(iop) * slice_spacing)
        orientation = "".join(nib.aff2axcodes(affine))
    else:
        orientation = "none"
    slope, intercept = _rescale(first)
    number = first.get("SeriesNumber")
    return DicomSeries(
        uid=uid,
        description=str(first.get("SeriesDescription", "") or "").strip(),
        modality=str(first.get("Modality", "") or ""),
        files=[path for path, _ in members],
        rows=int(first.Rows),
        columns=int(first.Columns),
        n_slices=len(members),
        spacing=(slice_spacing, row_spacing, column_spacing),
        orientation=orientation,
        dtype=_stored_dtype(first),
        transfer_syntax=_transfer_syntax(first).name,
        series_number=int(number) if number not in (None, "") else None,
        rescale=None if (slope, intercept) == (1.0, 0.0) else (slope, intercept),
        archive=archive,
        root=root,
    )


# ---------------------------------------------------------------------------------------------------- reading


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


def _slice_step(positions: np.ndarray, normal: np.ndarray, files: list[Path], where: Path) -> np.ndarray:
    """Step vector between consecutive slices, after checking that the positions are evenly spaced."""
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
            f"{files[duplicates[0]].name}, {files[duplicates[0] + 1].name}); several echoes, phases or acquisitions "
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
            f"normal (files {files[index].name} and {files[index + 1].name}; about {count} slice(s) of "
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


def _voxels(members: list[tuple[Path, Dataset]]) -> np.ndarray:
    """Stored pixels → rescaled ``(columns, rows, slices)`` array."""
    decoder_checked: set[str] = set()
    stored, rescale = [], []
    for path, ds in members:
        ts = _transfer_syntax(ds)
        if ts not in decoder_checked:
            _require_decoder(ts, path)
            decoder_checked.add(ts)
        stored.append(_pixels(ds, ts, path))
        rescale.append(_rescale(ds))
    slopes = np.array([s for s, _ in rescale])
    intercepts = np.array([i for _, i in rescale])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        out = np.stack(stored, axis=-1)
    elif np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)):
        low = min(int(s.min()) * int(m) if m >= 0 else int(s.max()) * int(m) for s, m in zip(stored, slopes)) + int(
            intercepts.min()
        )
        high = max(int(s.max()) * int(m) if m >= 0 else int(s.min()) * int(m) for s, m in zip(stored, slopes)) + int(
            intercepts.max()
        )
        info16 = np.iinfo(np.int16)
        dtype = np.int16 if info16.min <= low and high <= info16.max else np.int32
        out = np.stack(
            [(s.astype(np.int64) * int(m) + int(b)).astype(dtype) for s, m, b in zip(stored, slopes, intercepts)],
            axis=-1,
        )
    else:
        out = np.stack(
            [(s.astype(np.float64) * m + b).astype(np.float32) for s, m, b in zip(stored, slopes, intercepts)],
            axis=-1,
        )
    return np.transpose(out, (1, 0, 2))  # (rows, columns, slices) → (i=column, j=row, k=slice)


def _require_decoder(ts: UID, path: Path) -> None:
    if not _is_compressed(ts):
        return
    try:
        available = pydicom.pixels.get_decoder(ts).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise VolumeReadError(path, f"pixel data are compressed with {ts.name}; {DECODER_HINT}")


def _pixels(ds: Dataset, ts: UID, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise VolumeReadError(path, "has no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types for undecodable or truncated pixel data
        if _is_compressed(ts):
            try:
                plugins = ", ".join(pydicom.pixels.get_decoder(ts).available_plugins) or "none"
            except NotImplementedError:
                plugins = "none"
            raise VolumeReadError(
                path,
                f"pixel data are compressed with {ts.name} and the installed decoder ({plugins}) failed "
                f"({type(exc).__name__}: {_short(exc)}); the file may be damaged, or {DECODER_HINT}",
            ) from exc
        raise VolumeReadError(path, f"pixel data cannot be read ({type(exc).__name__}: {_short(exc)})") from exc


# ---------------------------------------------------------------------------------------------------- info


def info(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Header facts of a NIfTI file, a DICOM folder or zip (one dict per series) or a single DICOM file.

    Every dict has ``path``, ``format``, ``dims`` and ``spacing`` in the voxel order ``(i, j, k)`` of the file
    (for DICOM: column, row, slice), ``orientation`` (axis codes of those axes) and ``dtype``; NIfTI adds the
    value range (the data are read for it), DICOM the series facts.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(path, "no such file or folder")
    if path.is_file() and is_nifti_path(path):
        return [_nifti_info(path)]
    if path.is_dir() or zipfile.is_zipfile(path):
        return [_series_info(s) for s in list_series(path)]
    ds = _read_header(lambda: path)
    if ds is None:
        raise VolumeReadError(path, "not a NIfTI file, a DICOM file, or a folder or zip of DICOM files")
    return [_dicom_file_info(path, ds)]


def format_info(dicts: list[dict[str, Any]]) -> str:
    """Human-readable text of :func:`info` output: one block per dict, ``key: value`` lines."""
    blocks = []
    for facts in dicts:
        lines = [str(facts.get("path", ""))]
        for key, value in facts.items():
            if key == "path":
                continue
            lines.append(f"  {key.replace('_', ' ')}: {_format_value(key, value)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _nifti_info(path: Path) -> dict[str, Any]:
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for broken files
        raise VolumeReadError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    header = image.header
    finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
    value_range = (finite.min().item(), finite.max().item()) if finite.size else (float("nan"), float("nan"))
    slope, intercept = header.get_slope_inter()
    facts: dict[str, Any] = {
        "path": str(path),
        "format": type(image).__name__.replace("Image", ""),
        "dims": tuple(int(s) for s in image.shape),
        "spacing": tuple(round(float(z), 6) for z in header.get_zooms()[:3]),
        "orientation": "".join(nib.aff2axcodes(image.affine)),
        "dtype": str(header.get_data_dtype()),
        "range": value_range,
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
    }
    if slope is not None and (slope, intercept or 0.0) != (1.0, 0.0):
        facts["scaling"] = (float(slope), float(intercept or 0.0))
        facts["scaled_dtype"] = str(data.dtype)
    return facts


def _series_info(series: DicomSeries) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "path": str(series.archive or series.root or series.files[0].parent),
        "format": "DICOM series",
        "uid": series.uid,
        "description": series.description,
        "modality": series.modality,
        "dims": (series.columns, series.rows, series.n_slices),
        "spacing": tuple(round(s, 6) for s in reversed(series.spacing)),
        "orientation": series.orientation,
        "dtype": series.dtype,
        "n_files": len(series.files),
        "transfer_syntax": series.transfer_syntax,
    }
    if series.series_number is not None:
        facts["series_number"] = series.series_number
    if series.rescale is not None:
        facts["rescale"] = series.rescale
    return facts


def _dicom_file_info(path: Path, ds: Dataset) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "path": str(path),
        "format": "DICOM file",
        "uid": str(ds.get("SeriesInstanceUID", "")),
        "description": str(ds.get("SeriesDescription", "") or ""),
        "modality": str(ds.get("Modality", "") or ""),
    }
    if "Rows" in ds:
        row_spacing, column_spacing = _pixel_spacing(ds)
        facts["dims"] = (int(ds.Columns), int(ds.Rows), int(ds.get("NumberOfFrames", 1) or 1))
        facts["spacing"] = (column_spacing, row_spacing, _thickness(ds))
        if _frame_of(ds):
            iop = _iop(ds)
            affine = _ras_affine(iop, (row_spacing, column_spacing), _ipp(ds), _normal(iop) * _thickness(ds))
            facts["orientation"] = "".join(nib.aff2axcodes(affine))
            facts["position"] = tuple(round(float(v), 4) for v in _ipp(ds))
        else:
            facts["orientation"] = "none"
        facts["dtype"] = _stored_dtype(ds)
        slope, intercept = _rescale(ds)
        if (slope, intercept) != (1.0, 0.0):
            facts["rescale"] = (slope, intercept)
    if "InstanceNumber" in ds:
        facts["instance_number"] = ds.InstanceNumber
    facts["transfer_syntax"] = _transfer_syntax(ds).name
    return facts


def _format_value(key: str, value: Any) -> str:
    if isinstance(value, tuple) and key in ("dims", "spacing"):
        text = " × ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        return text + (" mm" if key == "spacing" else "")
    if isinstance(value, tuple):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------------------------------- helpers


class _Container:
    """Files of a folder (optionally recursive) or members of a zip, each with a way to open it."""

    def __init__(self, root: Path, recursive: bool) -> None:
        if not root.exists():
            raise VolumeReadError(root, "no such file or folder")
        self.root = root
        self.recursive = recursive
        self.is_zip = root.is_file() and zipfile.is_zipfile(root)
        if root.is_file() and not self.is_zip:
            raise VolumeReadError(root, "not a folder or a .zip of DICOM files")
        self._zip: zipfile.ZipFile | None = None

    def __enter__(self) -> _Container:
        if self.is_zip:
            try:
                self._zip = zipfile.ZipFile(self.root)
            except (zipfile.BadZipFile, OSError) as exc:
                raise VolumeReadError(self.root, f"cannot open the zip file ({exc})") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._zip is not None:
            self._zip.close()

    def members(self) -> Iterator[tuple[Path, Callable[[], Any]]]:
        if self._zip is not None:
            archive = self._zip
            for item in sorted(archive.infolist(), key=lambda i: i.filename):
                if item.is_dir() or item.filename.startswith("__MACOSX/"):
                    continue
                yield self.root / item.filename, lambda item=item: io.BytesIO(archive.read(item))
        else:
            pattern = self.root.rglob("*") if self.recursive else self.root.glob("*")
            for path in sorted(pattern):
                if path.is_file():
                    yield path, lambda path=path: path


def _read_header(opener: Callable[[], Any]) -> Dataset | None:
    """Header of a DICOM file (pixels not read), or ``None`` when it is not DICOM."""
    try:
        source = opener()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return pydicom.dcmread(source, stop_before_pixels=True)
            except InvalidDicomError:
                # Files without the 128-byte preamble and "DICM" (old or non-conformant writers) start with a
                # group 0x0002/0x0008 element; only those get a forced read.
                if hasattr(source, "seek"):
                    source.seek(0)
                    start = source.read(4)
                    source.seek(0)
                else:
                    with open(source, "rb") as handle:
                        start = handle.read(4)
                if start[:2] not in (b"\x02\x00", b"\x08\x00"):
                    return None
                ds = pydicom.dcmread(source, stop_before_pixels=True, force=True)
                return ds if "SOPClassUID" in ds or "Rows" in ds else None
    except Exception:  # unreadable or not DICOM: skipped by design
        return None


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


def _rescale(ds: Dataset) -> tuple[float, float]:
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0, float(intercept) if intercept not in (None, "") else 0.0)


def _stored_dtype(ds: Dataset) -> str:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    kind = "float" if bits == 32 and "FloatPixelData" in ds else ("int" if signed else "uint")
    text = f"{kind}{max(8, bits)}"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return text if samples == 1 else f"{text} × {samples} ({ds.get('PhotometricInterpretation', '')})"


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(uid)) if uid else ImplicitVRLittleEndian


def _is_compressed(ts: UID) -> bool:
    try:
        return bool(ts.is_compressed)
    except ValueError:  # not a transfer syntax pydicom knows
        return False


def _check_same(
    what: str,
    members: list[tuple[Path, Dataset]],
    key: Callable[[Dataset], Any],
    where: Path,
    values: list[Any] | None = None,
    tol: float = 0.0,
) -> None:
    values = values if values is not None else [key(ds) for _, ds in members]
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


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
