"""npe2 writer contributions: Image and Labels layers → NIfTI on their source volume's grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.errors import VolumeWriteError
from ..io.nifti import write_nifti
from .layers import display_affine_of, nifti_source_of


def write_labels_nifti(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a Labels layer as ``.nii.gz`` with its source volume's affine (integer voxels)."""
    return [str(_write(path, data, attributes, is_label=True))]


def write_image_nifti(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a 3D Image layer as ``.nii.gz`` with its source volume's affine."""
    if attributes.get("rgb"):
        raise VolumeWriteError(path, "RGB images cannot be written as NIfTI volumes; save them as PNG")
    if attributes.get("multiscale"):
        data = data[0]
    return [str(_write(path, data, attributes, is_label=False))]


def _write(path: str, data: Any, attributes: dict[str, Any], is_label: bool):
    array = np.asarray(data)
    if array.ndim != 3:
        raise VolumeWriteError(path, f"only 3D layers can be written as NIfTI, this one has shape {array.shape}")
    source = nifti_source_of(attributes.get("metadata"))
    if source is not None:
        return write_nifti(path, array, source=source, is_label=is_label)
    # A layer made in napari (e.g. "new labels") has no file geometry: use its own world transform.
    return write_nifti(path, array, display_affine=display_affine_of(attributes), is_label=is_label)
