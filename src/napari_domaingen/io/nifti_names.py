"""NIfTI file names: which paths are NIfTI files, and their stem (``brain.nii.gz`` → ``brain``).

>>> is_nifti_path("seg.NII.GZ"), strip_nifti_suffix("/data/brain.nii.gz")
(True, 'brain')
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NIFTI_SUFFIXES", "is_nifti_path", "strip_nifti_suffix"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(path: str | os.PathLike) -> str:
    """The file name of ``path`` without ``.nii``/``.nii.gz``."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
