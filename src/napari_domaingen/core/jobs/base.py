"""What every job shares: the result it returns, reading its inputs (checked before they are opened), the output
guard's arguments, and the checks of the feature options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...io.nifti import Volume, is_nifti_path
from ...io.output_guard import check_outputs, require_input, require_input_file
from ..features import LAYER_DESCRIPTIONS, FeatureSettings

__all__ = [
    "JobResult",
    "as_path",
    "check_feature_settings",
    "check_labels_path",
    "guard",
    "read_image",
    "read_labels",
    "require_choice",
    "series_folder",
]


@dataclass(kw_only=True)
class JobResult:
    """What a job did: ``written`` files in order, ``lines`` for people (what the command prints, e.g.
    ``"wrote …"``), ``warnings`` (also among the lines), ``figures`` (numbers a batch puts in ``results.csv``)."""

    written: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def as_path(value: str | os.PathLike[str] | None) -> Path | None:
    """``value`` as a :class:`~pathlib.Path` (``None`` stays ``None``)."""
    return None if value is None else Path(value)


def require_choice(name: str, value: Any, choices: tuple | list) -> None:
    """``ValueError`` naming ``name`` and the choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_feature_settings(settings: FeatureSettings) -> None:
    """Refuse feature options that cannot work, before any volume is read (``ValueError`` naming the option)."""
    from ...io.intensity import CT_WINDOWS

    if not isinstance(settings, FeatureSettings):
        raise TypeError(f"expected FeatureSettings, got {type(settings).__name__}")
    if not str(settings.weights).strip():
        raise ValueError("weights: give a registry name (anatomix, anatomix-dev) or a .pth file")
    require_choice("layer", settings.layer, list(LAYER_DESCRIPTIONS))
    require_choice("normalisation", settings.normalisation, ("auto", "instance", "unit", "none"))
    require_choice("precision", settings.precision, ("auto", "fp32", "bf16"))
    require_choice("strategy", settings.strategy, ("auto", "whole", "sliding"))
    require_choice("output data type", settings.output_dtype, ("float32", "float16"))
    if int(settings.roi) < 1:
        raise ValueError(f"roi must be a positive number of voxels, got {settings.roi}")
    if not 0.0 <= float(settings.overlap) < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {settings.overlap}")
    clip = settings.clip_percentiles
    if clip is not None and not (len(clip) == 2 and 0.0 <= clip[0] < clip[1] <= 100.0):
        raise ValueError(f"clip percentiles must be LOW < HIGH within 0…100, got {clip}")
    window = settings.ct_window
    if isinstance(window, str):
        require_choice("CT window", window, list(CT_WINDOWS))
    elif window is not None and not (len(window) == 2 and window[0] < window[1]):
        raise ValueError(f"a CT window must be (low, high) in HU with low < high, got {window}")


def series_folder(path: Path) -> Path | None:
    """The folder of a DICOM series read from one of its files or a ``.zip`` (writing there would add to the
    series); ``None`` for a NIfTI file or a folder (a folder input is guarded as such)."""
    if is_nifti_path(path) or not path.is_file():
        return None
    return path.parent


def guard(outputs: list[Path | None], images: list[Path | None], segs: list[Path | None] = ()) -> None:
    """The output guard of a job: ``images`` are NIfTI files or DICOM series (a series' folder is guarded, also
    when read from a file or a zip), ``segs`` stand-alone files (DICOM Segmentations, NIfTI labels)."""
    folders = [series_folder(p) for p in images if p is not None]
    check_outputs(outputs, [*images, *segs], series_folders=folders)


def read_image(path: Path, uid: str | None = None) -> Volume:
    """A 3D image volume (never labels): a NIfTI file, or a DICOM series (folder, zip or one of its files)."""
    from ...io.nifti import read_nifti

    if is_nifti_path(path):
        require_input_file(path, "image")
        volume = read_nifti(path, as_label=False)
    else:
        from ...io.dicom import read_series

        require_input(path, "image")
        volume = read_series(path, uid=uid)
    if volume.data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {volume.data.shape}")
    return volume


def check_labels_path(path: Path) -> None:
    """Labels must be a NIfTI file or a DICOM Segmentation (``.dcm``), a regular file."""
    if not (is_nifti_path(path) or str(path).lower().endswith(".dcm")):
        raise ValueError(f"{path}: labels must be a NIfTI file (.nii, .nii.gz) or a DICOM Segmentation (.dcm)")


def read_labels(path: Path) -> Volume:
    """A 3D label volume with its class names when known: a NIfTI file (names from its ``.json``/``.txt``
    sidecars) or a DICOM Segmentation (``.dcm``)."""
    from ...io.nifti import read_nifti

    check_labels_path(path)
    require_input_file(path, "labels")
    if is_nifti_path(path):
        volume = read_nifti(path, as_label=True)
    else:
        from ...io.dicom_seg import read_dicom_seg

        volume = read_dicom_seg(path)
    if volume.data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D label volume, got shape {volume.data.shape}")
    return volume
