"""DICOM Segmentation (SEG) objects with highdicom: labels on a DICOM series → a SEG that references it, and a
SEG → labels on its own geometry.

Writing (:func:`write_dicom_seg`)
    * A **BINARY** segmentation (the type every PACS and viewer that shows SEG reads), one segment per non-zero
      label value present or named in the table (a model's class found nowhere stays listed, empty), numbered
      1…N in value order as the standard requires. Each segment carries the class name
      (``SegmentLabel``), a coded category and type (:func:`segment_codes`: brain tissues and tumour parts by
      name, otherwise SNOMED "Tissue"), its display colour, the algorithm — ``AUTOMATIC`` with the model's name
      (MaskGen/ERM) and the model file's SHA-256 as version (``SEMIAUTOMATIC`` once corrected by hand in napari),
      or ``MANUAL`` for drawn labels — and the label value
      as ``TrackingID`` ``"label value <v>"`` (our reader restores the values from it).
    * Every slice of the reference series gets a frame (empty ones too), so the SEG alone carries the series'
      full geometry and references all its instances.
    * Checks before anything is written: integer labels with values 1…65535 (a segment number is a DICOM US),
      at least one segment, the labels on the reference series' grid (shape and corners within
      :data:`GRID_TOL_MM`), and, when the labels record the series they were made on, that very series; texts
      and UIDs as DICOM defines them (:mod:`.dicom_vr`): segment labels, the algorithm's name, version and type
      and the description (LO: one line, no backslash, at most 64 characters; a message names the class), the
      source images' UIDs the SEG copies; dates it copies are made ``YYYYMMDD``. Non-ASCII names are stored as
      UTF-8 (``ISO_IR 192``).

Reading (:func:`read_dicom_seg`)
    BINARY and LABELMAP segmentations → one label volume (highdicom's ``get_volume``, the segments combined) in
    display order, with class names and colours in ``label_table``; FRACTIONAL ones are refused (no threshold is
    implied). Segments that overlap cannot be one label volume: a clear error.

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .atomic import atomic_path
from .dicom_vr import check_segment_texts, check_source_values, safe_lo
from .errors import VolumeReadError, VolumeWriteError
from .label_table import LabelClass, LabelTable, default_colour
from .nifti import Volume, to_file_order, volume_from_image
from .output_guard import is_regular_file, require_input_file

__all__ = [
    "GRID_TOL_MM",
    "MAX_SEGMENT_VALUE",
    "SEGMENTATION_STORAGE",
    "grid_mismatch",
    "is_dicom_seg",
    "place_on_grid",
    "read_dicom_seg",
    "segment_codes",
    "write_dicom_seg",
]

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
MAX_SEGMENT_VALUE = 65535
#: Largest distance (mm) between corresponding corners of the labels' grid and the reference series' grid.
GRID_TOL_MM = 1e-2
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_TRACKING = re.compile(r"^label value (\d+)$")


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """True when ``path`` is a DICOM file of the Segmentation Storage class (reads the header only; a FIFO or
    device is never opened)."""
    if not is_regular_file(path):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:
        return False
    return str(ds.get("SOPClassUID", "")) == SEGMENTATION_STORAGE


# ----------------------------------------------------------------------------------------------- codes


def segment_codes(name: str):
    """``(category, type)`` SNOMED CT codes (CID 7150 / 7151) for a class name: brain tissues and tumour parts
    are recognised, anything else is "Tissue"/"Tissue"."""
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    anatomy = codes.SCT.AnatomicalStructure
    abnormal = CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    text = name.lower()
    rules = [
        (("necro",), abnormal, codes.SCT.Necrosis),
        (("edema", "oedema"), abnormal, codes.SCT.Edema),
        (("tumo", "neoplas", "enhancing", "lesion"), abnormal, codes.SCT.Neoplasm),
        (("white matter", "wm"), anatomy, codes.SCT.WhiteMatter),
        (("grey matter", "gray matter", "gm"), anatomy, codes.SCT.GrayMatter),
        (("csf", "cerebrospinal"), anatomy, codes.SCT.CerebrospinalFluid),
    ]
    words = set(re.split(r"[^a-z]+", text))
    for keys, category, kind in rules:
        if any((key in words) if len(key) <= 3 else (key in text) for key in keys):
            return category, kind
    return codes.SCT.Tissue, codes.SCT.Tissue


# ---------------------------------------------------------------------------------------------- write


def _label_values(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.dtype.kind not in "iub":
        raise VolumeWriteError(path, f"labels must be integers, got {labels.dtype}")
    values = np.unique(labels)
    if values.size and values[0] < 0:
        raise VolumeWriteError(path, f"label value {int(values[0])} is negative; DICOM-SEG segments are 1–65535")
    if values.size and values[-1] > MAX_SEGMENT_VALUE:
        raise VolumeWriteError(
            path, f"label value {int(values[-1])} is beyond what DICOM-SEG allows (segment numbers 1–65535)"
        )
    return values[values != 0]


def _corner_error_mm(a: np.ndarray, b: np.ndarray, shape: Sequence[int]) -> float:
    corners = np.array(
        [[z, y, x, 1.0] for z in (0, shape[0] - 1) for y in (0, shape[1] - 1) for x in (0, shape[2] - 1)]
    )
    return float(np.abs((corners @ a.T)[:, :3] - (corners @ b.T)[:, :3]).max())


def grid_mismatch(shape: Sequence[int], affine: np.ndarray, reference: Volume) -> str | None:
    """Why data of display ``shape`` and display ``affine`` (4, 4) are not on ``reference``'s grid, or ``None``
    when they are (same shape, corners within :data:`GRID_TOL_MM`)."""
    ref_shape = reference.spatial_shape
    if tuple(shape) != tuple(ref_shape):
        return (
            f"{' × '.join(str(n) for n in shape)} voxels, but {reference.name} has "
            f"{' × '.join(str(n) for n in ref_shape)}"
        )
    error = _corner_error_mm(np.asarray(affine, float), reference.display_affine, ref_shape)
    if error > GRID_TOL_MM:
        return f"same size as {reference.name}, but corners up to {error:.3g} mm away (tolerance {GRID_TOL_MM} mm)"
    return None


def place_on_grid(labels: Volume, reference: Volume) -> np.ndarray | None:
    """``labels`` that cover only part of ``reference``'s grid (a DICOM-SEG without its empty frames, as dcmqi
    writes them) placed on that grid: a ``reference.spatial_shape`` array, zero elsewhere. ``None`` when they do not
    lie on it (another orientation or spacing, positions between its voxels, or reaching beyond it)."""
    shape = np.asarray(labels.spatial_shape)
    ref_affine = np.asarray(reference.display_affine, float)
    affine = np.asarray(labels.display_affine, float)
    start = np.rint((np.linalg.inv(ref_affine) @ affine[:, 3])[:3]).astype(int)
    if np.any(start < 0) or np.any(start + shape > np.asarray(reference.spatial_shape)):
        return None
    shifted = ref_affine.copy()
    shifted[:3, 3] = (ref_affine @ np.append(start, 1.0))[:3]
    if _corner_error_mm(affine, shifted, labels.spatial_shape) > GRID_TOL_MM:
        return None
    placed = np.zeros(reference.spatial_shape, dtype=labels.data.dtype)
    placed[tuple(slice(a, a + n) for a, n in zip(start, shape))] = labels.data
    return placed


def _reference_series(path: Path, reference: Path, series_uid: str | None, made_on: str | None):
    """The :class:`DicomSeries` to reference: ``series_uid``, else the only one at ``reference``, else the one the
    labels were made on (``made_on``); a clear error when that is not there."""
    from .dicom import _pick_series

    if series_uid:
        return _pick_series(reference, series_uid)
    try:
        series = _pick_series(reference, None)
    except VolumeReadError:
        if made_on is None:
            raise
        try:
            return _pick_series(reference, made_on)
        except VolumeReadError:
            raise VolumeWriteError(
                path, f"{reference} does not hold series {made_on}, the series the labels were made on"
            ) from None
    if made_on and series.uid != made_on:
        raise VolumeWriteError(
            path,
            f"the labels were made on series {made_on}, but {reference} holds series {series.uid} ({series.name}); "
            "give the folder of the series the labels came from",
        )
    return series


#: Patient/study attributes of DICOM type 2 (present, possibly empty) that highdicom copies into the SEG;
#: anonymised series often drop them entirely.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _with_empty_type2(ds: Dataset) -> Dataset:
    """``ds`` with each missing :data:`_TYPE2` attribute present and empty (its value is unknown)."""
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _sorted_sources(datasets: list[Dataset], where: Path) -> list[Dataset]:
    """The series' datasets in the slice order of its volume (the order the series reader stacks them in)."""
    from .dicom_geometry import _place_slices

    order, _affine = _place_slices(datasets, where, [str(i) for i in range(len(datasets))])
    return [datasets[i] for i in order]


def write_dicom_seg(
    path: str | os.PathLike,
    labels: np.ndarray,
    reference: str | os.PathLike,
    table: LabelTable | None = None,
    labels_affine: np.ndarray | None = None,
    series_uid: str | None = None,
    description: str | None = None,
    labels_source: str | os.PathLike | None = None,
) -> Path:
    """Write display-order ``(Z, Y, X)`` integer ``labels`` as a DICOM-SEG referencing the DICOM series at
    ``reference`` (a folder, zip or one of its files; ``series_uid`` picks one of several), atomically.

    ``labels_affine``: the labels' (4, 4) display affine (default: assumed to be the series'); ``table``: class
    names, colours, the series the labels were made on and the algorithm (``{"name", "version"}``; ``None`` →
    drawn by hand); ``labels_source``: the file the labels were read from, named by errors about their values or
    grid (default: ``path``). Raises :class:`VolumeWriteError` naming the file and the problem; nothing is written
    then.
    """
    import highdicom as hd

    from .dicom import _build_volume, _read_datasets

    path = Path(path)
    if path.suffix.lower() != ".dcm":
        raise VolumeWriteError(path, "a DICOM Segmentation's file name must end in .dcm")
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise VolumeWriteError(path, f"expected 3D labels, got shape {labels.shape}")
    subject = Path(labels_source) if labels_source is not None else path  # what a problem of the labels names
    present = _label_values(labels, subject)
    table = table or LabelTable.from_names(present)
    named = [c.value for c in table.classes if 0 < c.value <= MAX_SEGMENT_VALUE]
    values = np.union1d(present, np.asarray(named, dtype=present.dtype)).astype(np.int64)
    if values.size == 0:
        raise VolumeWriteError(subject, "the labels are empty (every voxel is 0) and name no class: nothing to export")
    names = table.names()
    names = {v: names.get(v, f"class {v}") for v in values.tolist()}
    check_segment_texts(path, names, table.algorithm, description)  # DICOM VRs: before any file is read
    series = _reference_series(path, Path(reference), series_uid, table.source_series_uid)
    where = series.archive or series.root or series.files[0].parent
    members = _read_datasets(series)
    datasets = [ds for _, ds in members]
    check_source_values(path, members)  # UIDs the SEG copies must be UIDs; dates it copies become YYYYMMDD
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise VolumeWriteError(path, f"{reference}: DICOM-SEG export references single-frame series only")
    volume = _build_volume(series, members, where)  # the grid the series reader gives it, from the same files
    problem = grid_mismatch(labels.shape, volume.display_affine if labels_affine is None else labels_affine, volume)
    if problem:
        raise VolumeWriteError(subject, f"the labels are not on the reference series' grid: {problem}")
    sources = _sorted_sources([_with_empty_type2(ds) for ds in datasets], where)

    numbers = np.zeros(int(values[-1]) + 1, dtype=np.uint16)
    numbers[values] = np.arange(1, values.size + 1)
    frames = np.transpose(to_file_order(numbers[labels], volume.source), (2, 1, 0))  # (slices, rows, columns)
    colours = table.colours()
    algorithm = table.algorithm
    identification = None
    if algorithm:
        from pydicom.sr.codedict import codes

        identification = hd.AlgorithmIdentificationSequence(
            name=str(algorithm.get("name") or "napari-domaingen"),
            family=codes.cid7162.ArtificialIntelligence,
            version=str(algorithm.get("version") or "unknown"),
            source="napari-domaingen",
        )
    descriptions = []
    for number, value in enumerate(values.tolist(), start=1):
        name = names[value]
        category, kind = segment_codes(name)
        colour = colours.get(value, default_colour(value))
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=str(algorithm.get("type", "AUTOMATIC")) if algorithm else "MANUAL",
                algorithm_identification=identification,
                tracking_uid=hd.UID(),
                tracking_id=f"label value {value}",
                display_color=hd.color.CIELabColor.from_rgb(*colour),
            )
        )
    from .. import __version__

    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type="BINARY",
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(sources[0].get("SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="napari-domaingen",
            manufacturer_model_name=str(algorithm.get("name") or "napari-domaingen") if algorithm else "manual",
            software_versions=f"napari-domaingen {__version__}",
            device_serial_number="none",
            content_description=description or "segmentation",
            content_label="SEGMENTATION",
            omit_empty_frames=False,
        )
    except (ValueError, AttributeError, TypeError) as exc:
        raise VolumeWriteError(path, f"highdicom cannot build the segmentation from {reference}: {exc}") from exc
    seg.SeriesDescription = description or safe_lo(f"Segmentation of {series.name}")
    if not all(str(s).isascii() for s in (*names.values(), seg.SeriesDescription, seg.ContentDescription)):
        seg.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names such as "œdème" are stored as they are
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(tmp)
    return path


# ----------------------------------------------------------------------------------------------- read


def read_dicom_seg(path: str | os.PathLike) -> Volume:
    """Read a BINARY or LABELMAP DICOM-SEG as a label :class:`Volume` in display order, with its class names,
    colours and referenced series in ``label_table`` (and ``source.dicom_series_uid``)."""
    import highdicom as hd

    path = require_input_file(path, "DICOM Segmentation", VolumeReadError)  # a FIFO is never opened
    if path.stat().st_size == 0:
        raise VolumeReadError(path, "the file is empty (0 bytes); expected a DICOM Segmentation")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
    except Exception as exc:
        raise VolumeReadError(path, f"not a readable DICOM Segmentation ({type(exc).__name__}: {exc})") from exc
    kind = str(seg.SegmentationType)
    if kind == "FRACTIONAL":
        raise VolumeReadError(path, "FRACTIONAL (probability) segmentations cannot be shown as labels")
    try:
        geometry = seg.get_volume(combine_segments=True, relabel=False, dtype=np.uint16)
    except Exception as exc:  # overlapping segments, frames without a position, tiled slides ...
        raise VolumeReadError(path, f"its segments cannot form one label volume ({exc})") from exc
    classes, mapping = [], {}
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        match = _TRACKING.match(str(description.tracking_id or ""))
        value = int(match.group(1)) if match else int(number)
        if value > MAX_SEGMENT_VALUE or value == 0:
            raise VolumeReadError(
                path, f"segment {number} records label value {value} (TrackingID), outside 1–{MAX_SEGMENT_VALUE}"
            )
        mapping[int(number)] = value
        colour = description.get("RecommendedDisplayCIELabValue")
        rgb = hd.color.CIELabColor.from_dicom_value(colour).to_rgb() if colour is not None else default_colour(value)
        classes.append(LabelClass(value, str(description.segment_label), tuple(int(c) for c in rgb)))
    array = np.asarray(geometry.array)
    lookup = np.zeros(max(int(array.max()), max(mapping, default=0)) + 1, dtype=np.int64)
    for number, value in mapping.items():
        lookup[number] = value
    values = lookup[array]
    ras = _LPS @ np.asarray(geometry.affine, float)
    image = nib.Nifti1Image(values.astype(np.uint16), ras)
    name = str(seg.get("SeriesDescription", "") or path.stem)
    volume = volume_from_image(image, name, as_label=True, path=path)
    referenced = _referenced_series(seg)
    volume.source = replace(volume.source, dicom_series_uid=referenced)
    algorithm = _algorithm(seg, seg.segment_numbers[0]) if seg.segment_numbers else None
    volume.label_table = LabelTable(tuple(classes), source_series_uid=referenced, algorithm=algorithm)
    return volume


def _referenced_series(seg: Dataset) -> str | None:
    for item in seg.get("ReferencedSeriesSequence", []):
        return str(item.SeriesInstanceUID)
    return None


def _algorithm(seg, number: int) -> dict[str, str] | None:
    items = seg.get_segment_description(number).get("SegmentationAlgorithmIdentificationSequence")
    if not items:
        return None
    return {"name": str(items[0].AlgorithmName), "version": str(items[0].AlgorithmVersion)}
