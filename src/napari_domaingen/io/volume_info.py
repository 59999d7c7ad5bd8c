"""Header facts of a NIfTI file, a DICOM folder or zip (one dict per series) or one DICOM file, and their text form.

``dims``/``spacing`` (mm) are in the file's voxel order ``(i, j, k)`` (DICOM: column, row, slice). A multi-frame
(enhanced) DICOM file counts its frames as slices; its spacing and orientation come from the frames' functional
groups.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from .dicom_geometry import _frame_of, _iop, _ipp, _normal, _pixel_spacing, _ras_affine, _thickness
from .dicom_multiframe import is_multiframe, n_frames, summarize
from .dicom_pixels import _rescale, _stored_dtype, _transfer_syntax
from .dicom_series import DicomSeries, _read_header, list_series
from .errors import VolumeReadError
from .nifti import is_nifti_path
from .output_guard import require_input, require_input_file


def info(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Header facts of a NIfTI file, a DICOM folder or zip (one dict per series) or a single DICOM file.

    Every dict has ``path``, ``format``, ``dims`` and ``spacing`` in the voxel order ``(i, j, k)`` of the file
    (for DICOM: column, row, slice), ``orientation`` (axis codes of those axes) and ``dtype``; NIfTI adds the
    value range (the data are read for it), DICOM the series facts.
    """
    # a FIFO, socket or device is refused here, never opened (zipfile.is_zipfile would block on a FIFO)
    path = require_input(path, "input", VolumeReadError)
    if is_nifti_path(path):
        return [_nifti_info(require_input_file(path, "NIfTI file", VolumeReadError))]
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
    if path.stat().st_size == 0:
        raise VolumeReadError(path, "the file is empty (0 bytes); expected a NIfTI volume")
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
        "format": "DICOM multi-frame" if series.multiframe else "DICOM series",
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
    if series.multiframe:
        facts["n_frames"] = series.n_slices
        facts["sop_class"] = series.sop_class
    if series.series_number is not None:
        facts["series_number"] = series.series_number
    if series.rescale is not None:
        facts["rescale"] = series.rescale
    if series.skipped_members:  # the reader never reads them either
        facts["skipped_unsafe_members"] = series.skipped_members
    return facts


def _dicom_file_info(path: Path, ds: Dataset) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "path": str(path),
        "format": "DICOM file",
        "uid": str(ds.get("SeriesInstanceUID", "")),
        "description": str(ds.get("SeriesDescription", "") or ""),
        "modality": str(ds.get("Modality", "") or ""),
    }
    if "Rows" in ds and is_multiframe(ds):
        summary = summarize(ds)
        slice_spacing, row_spacing, column_spacing = summary.spacing
        facts["format"] = "DICOM multi-frame file"
        facts["dims"] = (int(ds.Columns), int(ds.Rows), n_frames(ds))
        facts["spacing"] = (column_spacing, row_spacing, slice_spacing)
        facts["orientation"] = summary.orientation
        if summary.position is not None:
            facts["position"] = tuple(round(v, 4) for v in summary.position)
        facts["dtype"] = _stored_dtype(ds)
        if summary.rescale != (1.0, 0.0):
            facts["rescale"] = summary.rescale
        facts["sop_class"] = str(ds.get("SOPClassUID", "") and ds.SOPClassUID.name)
    elif "Rows" in ds:
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
