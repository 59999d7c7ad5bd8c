"""Find DICOM series in a folder (recursively) or a ``.zip`` from headers: :class:`DicomSeries`, :func:`list_series`.

Pixels are not read and torch is not imported; files that are not DICOM are skipped, and so are DICOM objects that
are not images to stack: DICOMDIR, structured reports, presentation states, RT structure sets and plans,
registrations, and DICOM Segmentations (SEG has rows, columns and pixel data, but it is read by :mod:`.dicom_seg`).
A multi-frame (enhanced) file is one series of its own frames (see :mod:`.dicom_multiframe`).
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
from pydicom.uid import UID

from .dicom_geometry import SPACING_ABS_TOL, _has_frame, _iop, _ipp, _normal, _pixel_spacing, _ras_affine, _thickness
from .dicom_multiframe import is_multiframe, n_frames, summarize
from .dicom_pixels import _rescale, _stored_dtype, _transfer_syntax
from .errors import VolumeReadError
from .output_guard import is_regular_file, require_input


@dataclass
class DicomSeries:
    """One DICOM series found by :func:`list_series` (from headers only).

    ``files`` are sorted by slice position along the normal (by ``InstanceNumber`` then name without a
    patient frame); inside a zip they read ``<archive>/<member>`` and ``archive`` is the zip file.
    ``spacing`` is ``(slice, row, column)`` = ``(z, y, x)`` in mm in DICOM's own axis order (slice spacing from
    the positions; ``SpacingBetweenSlices``/``SliceThickness`` for a single image). ``orientation`` are the
    nibabel axis codes of the voxel axes ``(column, row, slice)`` — ``"LPS"`` for a standard axial stack,
    ``"none"`` without a patient frame. ``dtype`` is the stored pixel type (before rescale).

    A series of one multi-frame (enhanced) file has ``multiframe`` set, ``files`` holding that file and
    ``n_slices`` its number of frames; ``spacing`` and ``orientation`` come from the frames' functional groups.
    ``sop_class`` is the SOP class name of the first file (e.g. ``"Enhanced MR Image Storage"``).
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
    multiframe: bool = False
    sop_class: str = ""
    archive: Path | None = None
    root: Path | None = field(default=None, repr=False)
    #: zip members skipped because their names could leave the archive (``../x.dcm``, ``/x.dcm``, ``C:x.dcm``)
    skipped_members: tuple[str, ...] = field(default=(), repr=False)

    @property
    def name(self) -> str:
        """Display name: the description, else modality and series number."""
        if self.description:
            return self.description
        number = f" {self.series_number}" if self.series_number is not None else ""
        return f"{self.modality or 'DICOM'} series{number}"


def list_series(folder_or_zip: str | os.PathLike, recursive: bool = True) -> list[DicomSeries]:
    """Every image series in a folder (recursively by default) or a ``.zip``, from headers only.

    Files that are not DICOM, and DICOM objects that are not images (DICOMDIR, reports, presentation states,
    RT structure sets, segmentations; see :func:`_is_image`), are skipped. A multi-frame file is listed as a
    series of its frames.
    Series are ordered by series number, then description. Raises :class:`VolumeReadError` when nothing is
    found. Zip members whose names could leave the archive (:func:`unsafe_member`) are never read; each series
    lists them in ``skipped_members``.
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
            if not _is_image(ds):
                continue
            uid = str(ds.get("SeriesInstanceUID", "")) or f"(no SeriesInstanceUID) {path.parent}"
            groups.setdefault(uid, []).append((path, ds))
    skipped = tuple(container.skipped)
    unsafe = f"; {len(skipped)} zip member(s) with unsafe names skipped ({', '.join(skipped[:3])})" if skipped else ""
    if not groups:
        if n_dicom:
            raise VolumeReadError(
                root,
                f"no DICOM images found ({n_dicom} DICOM file(s) without an image to stack, e.g. DICOMDIR, reports "
                f"or segmentations){unsafe}",
            )
        raise VolumeReadError(root, f"no DICOM files found{unsafe}")
    archive = root if container.is_zip else None
    series = [_describe(uid, members, archive, root) for uid, members in groups.items()]
    for item in series:
        item.skipped_members = skipped
    series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.description, s.uid))
    return series


def _describe(uid: str, members: list[tuple[Path, Dataset]], archive: Path | None, root: Path) -> DicomSeries:
    if any(is_multiframe(ds) for _, ds in members):
        return _describe_multiframe(uid, members, archive, root)
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
    return _series(
        uid,
        members,
        archive,
        root,
        n_slices=len(members),
        spacing=(slice_spacing, row_spacing, column_spacing),
        orientation=orientation,
        rescale=_rescale(first),
    )


def _series(
    uid: str,
    members: list[tuple[Path, Dataset]],
    archive: Path | None,
    root: Path,
    rescale: tuple[float, float],
    **facts,
) -> DicomSeries:
    """A :class:`DicomSeries` of ``members`` (the first one's header for the shared facts) with ``facts``."""
    first = members[0][1]
    number = first.get("SeriesNumber")
    return DicomSeries(
        uid=uid,
        description=str(first.get("SeriesDescription", "") or "").strip(),
        modality=str(first.get("Modality", "") or ""),
        files=[path for path, _ in members],
        rows=int(first.Rows),
        columns=int(first.Columns),
        dtype=_stored_dtype(first),
        transfer_syntax=_transfer_syntax(first).name,
        series_number=int(number) if number not in (None, "") else None,
        rescale=None if tuple(rescale) == (1.0, 0.0) else tuple(rescale),
        sop_class=_sop_class(first),
        archive=archive,
        root=root,
        **facts,
    )


def _describe_multiframe(
    uid: str, members: list[tuple[Path, Dataset]], archive: Path | None, root: Path
) -> DicomSeries:
    """A series holding multi-frame files: described from the first one's frames (``n_slices`` counts the frames
    of all files; reading refuses more than one file)."""
    members = sorted(members, key=lambda m: (not is_multiframe(m[1]), str(m[0])))
    first = members[0][1]
    summary = summarize(first)
    return _series(
        uid,
        members,
        archive,
        root,
        n_slices=sum(n_frames(ds) for _, ds in members),
        spacing=summary.spacing,
        orientation=summary.orientation,
        rescale=summary.rescale,
        multiframe=True,
    )


# SOP classes with rows and columns (some with pixel data) that are not images to stack. SEG
# (1.2.840.10008.5.1.4.1.1.66.4) is read by io/dicom_seg.py, never as an image series.
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registrations, fiducials, segmentations (SEG, surface), tractography
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA/STL
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
)
_NON_IMAGE_RT = {f"1.2.840.10008.5.1.4.1.1.481.{n}" for n in range(3, 20)}  # structure sets, plans, records
_NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "SR", "KO", "REG", "FID", "DOC", "PLAN"}


def _is_image(ds: Dataset) -> bool:
    """Whether a DICOM object is an image to stack: it has rows and columns and is not a segmentation, RT
    structure set, presentation state, report or other non-image object."""
    if "Rows" not in ds or "Columns" not in ds:
        return False
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class.startswith(_NON_IMAGE_SOP_PREFIXES) or sop_class in _NON_IMAGE_RT:
        return False
    return str(ds.get("Modality", "") or "").upper() not in _NON_IMAGE_MODALITIES


def _kind(ds: Dataset) -> str:
    """What a DICOM object is, for messages: its SOP class name, else its modality."""
    sop_class = _sop_class(ds)
    modality = str(ds.get("Modality", "") or "")
    return f"{sop_class} ({modality})" if sop_class and modality else sop_class or modality or "non-image"


def _sop_class(ds: Dataset) -> str:
    uid = str(ds.get("SOPClassUID", "") or "")
    return UID(uid).name if uid else ""


class _Container:
    """Files of a folder (optionally recursive) or members of a zip, each with a way to open it."""

    def __init__(self, root: Path, recursive: bool) -> None:
        require_input(root, "DICOM folder or zip", VolumeReadError)  # a FIFO or device is never opened
        self.root = root
        self.recursive = recursive
        self.is_zip = root.is_file() and zipfile.is_zipfile(root)
        if root.is_file() and not self.is_zip:
            raise VolumeReadError(root, "not a folder or a .zip of DICOM files")
        self._zip: zipfile.ZipFile | None = None
        self.skipped: list[str] = []

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
                if unsafe_member(item.filename):
                    self.skipped.append(item.filename)
                    continue
                yield self.root / item.filename, lambda item=item: io.BytesIO(archive.read(item))
        else:
            pattern = self.root.rglob("*") if self.recursive else self.root.glob("*")
            for path in sorted(pattern):
                if is_regular_file(path):  # a FIFO, socket or device in the folder is never opened
                    yield path, lambda path=path: path


def unsafe_member(name: str) -> bool:
    """Whether a zip member's name could leave the archive's folder when extracted or joined to a path: absolute
    (``/x``, ``\\x``), with a drive (``C:x``) or with a ``..`` component (either slash)."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts


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
