"""npe2 writer contributions: Labels layers → NIfTI (with class-name sidecars) or DICOM Segmentation on their
source grid, Image layers → NIfTI."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from ..io.errors import VolumeWriteError
from ..io.geometry import display_affine_from_layer
from ..io.nifti import save_labels_nifti, write_nifti
from .label_layers import label_table_of
from .label_series import series_for_labels
from .layer_meta import nifti_source_of


def write_labels_nifti(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a Labels layer as ``.nii.gz`` with its source volume's affine (integer voxels), plus its class names
    and colours as ``<stem>.json`` and the ITK-SNAP ``<stem>.txt`` beside it."""
    array = _array_3d(path, data)
    source = nifti_source_of(attributes.get("metadata"))
    geometry = {"source": source} if source is not None else {"display_affine": display_affine_from_layer(attributes)}
    written, notes = save_labels_nifti(path, array, label_table_of(array, attributes), **geometry)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return [str(p) for p in written]


def write_labels_dicom_seg(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a Labels layer drawn or segmented on a volume read from a DICOM series as a DICOM Segmentation that
    references that series (:func:`~napari_domaingen.io.dicom_seg.write_dicom_seg`)."""
    from ..io.dicom_seg import write_dicom_seg

    array = _array_3d(path, data)
    source = series_for_labels(path, data, attributes)
    table = label_table_of(array, attributes)
    if table.source_series_uid != source.dicom_series_uid:
        table = replace(table, source_series_uid=source.dicom_series_uid)
    name = str(attributes.get("name") or "segmentation")
    written = write_dicom_seg(
        path,
        array,
        source.path,
        table,
        labels_affine=display_affine_from_layer(attributes),
        series_uid=source.dicom_series_uid,
        description=name,
    )
    return [str(written)]


def write_image_nifti(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a 3D Image layer as ``.nii.gz`` with its source volume's affine."""
    if attributes.get("rgb"):
        raise VolumeWriteError(path, "RGB images cannot be written as NIfTI volumes; save them as PNG")
    if attributes.get("multiscale"):
        data = data[0]
    array = _array_3d(path, data)
    source = nifti_source_of(attributes.get("metadata"))
    if source is not None:
        return [str(write_nifti(path, array, source=source))]
    # A layer made in napari (e.g. "new labels") has no file geometry: use its own world transform.
    return [str(write_nifti(path, array, display_affine=display_affine_from_layer(attributes)))]


def _array_3d(path: str, data: Any) -> np.ndarray:
    array = np.asarray(data)
    if array.ndim != 3:
        raise VolumeWriteError(path, f"only 3D layers can be written as NIfTI, this one has shape {array.shape}")
    return array
