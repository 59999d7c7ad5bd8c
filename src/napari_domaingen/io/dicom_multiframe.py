"""Enhanced (multi-frame) DICOM: one file holding a whole stack of slices, read with the checks of a series.

Supported files
    Enhanced CT/MR/PET, Legacy Converted Enhanced CT/MR/PET and any other grey-level multi-frame image with the
    Multi-frame Functional Groups (``SharedFunctionalGroupsSequence`` / ``PerFrameFunctionalGroupsSequence``).
    Each frame's geometry comes from its functional groups, a per-frame item overriding the shared one:
    ``PlanePositionSequence`` (ImagePositionPatient), ``PlaneOrientationSequence`` (ImageOrientationPatient),
    ``PixelMeasuresSequence`` (PixelSpacing, SliceThickness, SpacingBetweenSlices) and
    ``PixelValueTransformationSequence`` (RescaleSlope/RescaleIntercept; the top-level values when absent).

Checks
    The frames become one small dataset each and go through exactly the code that stacks a series of single-frame
    files (:func:`.dicom_geometry._place_slices`, :func:`.dicom_pixels._stack_rescaled`): ordered by position
    along the slice normal (never by frame number), same orientation, same pixel spacing, evenly spaced within
    the series tolerance, no missing or duplicate positions. The result is the same :class:`~.nifti.Volume` as
    for the equivalent single-frame series. Messages name the file and the frames (1-based frame numbers).

Refused (one-line errors naming the file)
    Frames in several orientations, or several frames at one position because the file holds several stacks,
    temporal positions, echoes, diffusion b-values or cardiac phases (the message says which and how many were
    found); frames without a plane position or orientation; colour frames; a classic multi-frame image without
    functional groups (NM/US cine, multi-frame secondary capture, RT dose), which has no per-frame geometry.

Nothing here imports napari or Qt; headers are enough for :func:`summarize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .dicom_geometry import (
    ORIENTATION_TOL,
    SPACING_ABS_TOL,
    _distinct,
    _frame_of,
    _iop,
    _ipp,
    _normal,
    _pixel_spacing,
    _place_slices,
    _ras_affine,
    _thickness,
    orientations_text,
)
from .dicom_pixels import _pixels, _require_decoder, _rescale, _stack_rescaled, _transfer_syntax
from .errors import VolumeReadError

# Per-frame attributes that tell stacks, phases and echoes apart: (what, keyword, functional group).
_DIMENSIONS: tuple[tuple[str, str, str], ...] = (
    ("stacks", "StackID", "FrameContentSequence"),
    ("temporal positions", "TemporalPositionIndex", "FrameContentSequence"),
    ("temporal offsets", "TemporalPositionTimeOffset", "TemporalPositionSequence"),
    ("echoes", "EffectiveEchoTime", "MREchoSequence"),
    ("diffusion b-values", "DiffusionBValue", "MRDiffusionSequence"),
    ("cardiac trigger delays", "NominalCardiacTriggerDelayTime", "CardiacSynchronizationSequence"),
    # Legacy Converted Enhanced files keep the differing attributes of their source files here.
    ("echoes", "EchoTime", "UnassignedPerFrameConvertedAttributesSequence"),
    ("temporal positions", "TemporalPositionIdentifier", "UnassignedPerFrameConvertedAttributesSequence"),
    ("trigger times", "TriggerTime", "UnassignedPerFrameConvertedAttributesSequence"),
    ("acquisitions", "AcquisitionNumber", "UnassignedPerFrameConvertedAttributesSequence"),
)
_MEASURES = ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices")


@dataclass
class _Frame:
    """One frame: its 1-based number, a dataset with its geometry and rescale, and its dimension values."""

    number: int
    ds: Dataset
    dims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameSummary:
    """Header facts of a multi-frame file (never raises; see :func:`summarize`).

    ``spacing`` is ``(slice, row, column)`` in mm (slice spacing: median step between the frame positions along
    the normal, else SpacingBetweenSlices/SliceThickness); ``orientation`` the axis codes of the voxel axes
    ``(column, row, slice)``, ``"mixed"`` for frames in several orientations or ``"none"`` without a usable
    frame geometry; ``position`` the LPS position (mm) of the first frame along the normal; ``rescale`` that
    frame's ``(slope, intercept)``.
    """

    n_frames: int
    spacing: tuple[float, float, float]
    orientation: str
    position: tuple[float, float, float] | None
    rescale: tuple[float, float]


def n_frames(ds: Dataset) -> int:
    """``NumberOfFrames`` (1 when absent or empty)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def has_functional_groups(ds: Dataset) -> bool:
    """Whether the file carries the Multi-frame Functional Groups (an enhanced or legacy converted image)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def is_multiframe(ds: Dataset) -> bool:
    """More than one frame, or an enhanced image (functional groups) even with a single frame."""
    return n_frames(ds) > 1 or has_functional_groups(ds)


def read_multiframe(ds: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voxels and geometry of one multi-frame file (``ds`` read with its pixel data).

    Returns the rescaled voxels ``(columns, rows, frames)`` with the frames ordered along the slice normal, the
    ``(4, 4)`` RAS affine of those voxel axes, and whether the file holds a single frame (a 2D image). Raises
    :class:`VolumeReadError` naming ``path`` and the problem (see the module docstring).
    """
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    count = n_frames(ds)
    if samples != 1:
        kind = ds.get("PhotometricInterpretation", "")
        raise VolumeReadError(path, f"colour multi-frame DICOM images ({kind}, {count} frames) are not supported")
    frames = _frames(ds, path)
    _require_geometry(frames, path)
    _refuse_several_stacks(frames, path)
    labels = [str(frame.number) for frame in frames]
    order, affine = _place_slices([frame.ds for frame in frames], path, labels, item="frames")
    ts = _transfer_syntax(ds)
    _require_decoder(ts, path)
    pixels = _pixels(ds, ts, path)
    rows, columns = int(ds.Rows), int(ds.Columns)
    if pixels.size != count * rows * columns:
        raise VolumeReadError(
            path, f"pixel data of shape {pixels.shape} do not hold {count} frames of {rows} × {columns} pixels"
        )
    pixels = pixels.reshape(count, rows, columns)
    voxels = _stack_rescaled([pixels[n] for n in order], [_rescale(frames[n].ds) for n in order])
    return voxels, affine, count == 1


def summarize(ds: Dataset) -> FrameSummary:
    """Header facts of a multi-frame file for listings (:func:`.dicom_series.list_series`, ``domaingen info``).

    Never raises: without usable per-frame geometry the orientation is ``"none"``; reading the file reports the
    problem.
    """
    try:
        frames = _frames(ds, Path("."))
        _require_geometry(frames, Path("."))
    except VolumeReadError:
        first = _frames_or_top(ds)
        row_spacing, column_spacing = _pixel_spacing(first)
        spacing = (_thickness(first), row_spacing, column_spacing)
        return FrameSummary(n_frames(ds), spacing, "none", None, _rescale(first))
    iop = _iop(frames[0].ds)
    normal = _normal(iop)
    several = len(_distinct([_iop(frame.ds) for frame in frames], ORIENTATION_TOL)) > 1
    along = np.array([float(_ipp(frame.ds) @ normal) for frame in frames])
    first = frames[int(np.argmin(along))].ds
    steps = np.diff(np.sort(along))
    slice_spacing = float(np.median(steps)) if steps.size else 0.0
    if slice_spacing <= SPACING_ABS_TOL:  # one frame, or frames sharing positions (reading reports those)
        slice_spacing = _thickness(first)
    row_spacing, column_spacing = _pixel_spacing(first)
    affine = _ras_affine(iop, (row_spacing, column_spacing), _ipp(first), normal * slice_spacing)
    return FrameSummary(
        n_frames=len(frames),
        spacing=(slice_spacing, row_spacing, column_spacing),
        orientation="mixed" if several else "".join(nib.aff2axcodes(affine)),
        position=tuple(float(v) for v in _ipp(first)),
        rescale=_rescale(first),
    )


# ------------------------------------------------------------------------------------------- functional groups


def _frames(ds: Dataset, path: Path) -> list[_Frame]:
    """One :class:`_Frame` per frame, from the functional groups (per-frame items override shared ones)."""
    count = n_frames(ds)
    if not has_functional_groups(ds):
        raise VolumeReadError(
            path,
            f"classic multi-frame image ({_sop_class_name(ds)}, {count} frames) without per-frame geometry (no "
            "Multi-frame Functional Groups with PlanePositionSequence/PlaneOrientationSequence); its frames "
            "cannot be placed in space as a volume",
        )
    shared_sequence = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_sequence[0] if len(shared_sequence) else Dataset()
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != count:
        raise VolumeReadError(
            path, f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for NumberOfFrames {count}"
        )
    frames = []
    for index in range(count):
        item = per_frame[index] if per_frame else Dataset()
        frame = Dataset()
        frame.Rows, frame.Columns = int(ds.Rows), int(ds.Columns)
        _copy(_macro("PlanePositionSequence", item, shared), frame, ("ImagePositionPatient",))
        _copy(_macro("PlaneOrientationSequence", item, shared), frame, ("ImageOrientationPatient",))
        _copy(_macro("PixelMeasuresSequence", item, shared), frame, _MEASURES)
        transform = _macro("PixelValueTransformationSequence", item, shared)
        _copy(transform if transform is not None else ds, frame, ("RescaleSlope", "RescaleIntercept"))
        dims = {}
        for _, keyword, group in _DIMENSIONS:
            macro = _macro(group, item, shared)
            if macro is not None and macro.get(keyword) not in (None, ""):
                dims[keyword] = macro.get(keyword)
        frames.append(_Frame(index + 1, frame, dims))
    return frames


def _frames_or_top(ds: Dataset) -> Dataset:
    """The first frame's dataset when the functional groups can be read, else the top-level dataset."""
    try:
        return _frames(ds, Path("."))[0].ds
    except (VolumeReadError, AttributeError, TypeError, ValueError):
        return ds


def _macro(keyword: str, item: Dataset, shared: Dataset) -> Dataset | None:
    for source in (item, shared):
        sequence = source.get(keyword)
        if sequence is not None and len(sequence):
            return sequence[0]
    return None


def _copy(source: Dataset | None, target: Dataset, keywords: tuple[str, ...]) -> None:
    if source is None:
        return
    for keyword in keywords:
        if source.get(keyword) not in (None, ""):
            target[keyword] = source[keyword]


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    return UID(str(uid)).name if uid else "unknown SOP class"


# ---------------------------------------------------------------------------------------------------- checks


def _require_geometry(frames: list[_Frame], path: Path) -> None:
    """Every frame needs a plane position and orientation (from per-frame or shared functional groups)."""
    missing = [frame.number for frame in frames if not _frame_of(frame.ds)]
    if missing:
        shown = ", ".join(str(n) for n in missing[:8]) + (", …" if len(missing) > 8 else "")
        raise VolumeReadError(
            path,
            f"{len(missing)} of {len(frames)} frames (frame {shown}) have no plane position or orientation "
            "(PlanePositionSequence/PlaneOrientationSequence); the frames cannot be placed in space",
        )


def _refuse_several_stacks(frames: list[_Frame], path: Path) -> None:
    """Several orientations, or frames sharing positions: say which stacks/phases/echoes the file holds."""
    iops = [_iop(frame.ds) for frame in frames]
    distinct = _distinct(iops, ORIENTATION_TOL)
    if len(distinct) > 1:
        raise VolumeReadError(
            path,
            f"the {len(frames)} frames have {len(distinct)} orientations ({orientations_text(distinct)})"
            f"{_found(frames)}; several stacks or planes in one file cannot form one volume",
        )
    normal = _normal(iops[0], path)
    along = np.sort([float(_ipp(frame.ds) @ normal) for frame in frames])
    shared = np.diff(along) <= SPACING_ABS_TOL
    found = _found(frames)
    if shared.any() and found:
        n_positions = int(len(along) - shared.sum())
        raise VolumeReadError(
            path,
            f"the {len(frames)} frames lie at only {n_positions} position(s) along the slice normal{found}; "
            "several stacks, phases or echoes in one file cannot form one volume",
        )


def _found(frames: list[_Frame]) -> str:
    """``"; found 2 echoes (EffectiveEchoTime 10, 20), …"`` for every dimension with several values, else ``""``."""
    parts, seen = [], set()
    for what, keyword, _ in _DIMENSIONS:
        values = {str(frame.dims[keyword]) for frame in frames if keyword in frame.dims}
        if len(values) > 1 and what not in seen:
            seen.add(what)
            shown = sorted(values, key=_number_or_text)
            listed = ", ".join(shown[:6]) + (", …" if len(shown) > 6 else "")
            parts.append(f"{len(values)} {what} ({keyword} {listed})")
    return "; found " + ", ".join(parts) if parts else ""


def _number_or_text(value: str) -> tuple[float, str]:
    try:
        return float(value), ""
    except ValueError:
        return float("inf"), value
