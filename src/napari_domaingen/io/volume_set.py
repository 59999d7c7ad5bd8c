"""Several volumes of one subject: find them, recognise their contrast, load them, put them on one grid.

Researchers load the contrasts of one subject (T1, T1c, T2, FLAIR and a segmentation) together; radiologists
bring DICOM series. This module is the pure part of the "Load volumes" dock widget:

* :func:`~.contrast_names.contrast_of` recognises a contrast from a file name or series description
  (:mod:`.contrast_names`).
* :func:`~.volume_scan.scan` turns files, folders and zips into :class:`~.volume_scan.Candidate` rows with their
  header facts.
* :func:`load_group` (or the progress generator :func:`iter_load_group`) reads them into
  :class:`~.nifti.Volume` objects named ``"<subject> <contrast>"``.
* :func:`~.volume_grids.grid_report` says which volumes are not on the reference's grid and why;
  :func:`iter_resample_group`, :func:`~.volume_resample.resample_onto` and
  :func:`~.volume_resample.resample_isotropic` resample through the affines.
* :func:`~.intensity_presets.contrast_limits_for` computes display windows (CT Hounsfield windows, MRI
  percentile clips).

The names of those modules are re-exported here. Nothing here imports napari or Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from .contrast_names import CONTRASTS, LAYER_STYLE, contrast_of, layer_names, subject_of
from .dicom import read_series
from .intensity import label_dtype
from .intensity_presets import PRESETS, contrast_limits_for, preset_problem
from .nifti import Volume, read_nifti
from .volume_grids import grid_report, off_grid, reference_index
from .volume_resample import ResampledSource, isotropic_grid, obliquity_degrees, resample_isotropic, resample_onto
from .volume_scan import Candidate, scan

__all__ = [
    "CONTRASTS",
    "LAYER_STYLE",
    "PRESETS",
    "Candidate",
    "Progress",
    "ResampledSource",
    "contrast_limits_for",
    "contrast_of",
    "grid_report",
    "isotropic_grid",
    "obliquity_degrees",
    "iter_load_group",
    "iter_resample_group",
    "layer_names",
    "load_candidate",
    "load_group",
    "off_grid",
    "preset_problem",
    "reference_index",
    "resample_isotropic",
    "resample_onto",
    "scan",
    "subject_of",
]

Progress = dict[str, Any]


def load_candidate(candidate: Candidate, name: str | None = None) -> Volume:
    """Read one candidate; ``contrast == "labels"`` forces a label volume, a recognised image contrast an image."""
    if candidate.kind == "dicom":
        volume = read_series(candidate.series if candidate.series is not None else candidate.path, uid=candidate.uid)
        if candidate.is_label:
            volume = Volume(
                volume.data.astype(label_dtype(int(volume.data.max()) if volume.data.size else 0)),
                volume.display_affine,
                volume.name,
                True,
                volume.source,
            )
    else:
        as_label = True if candidate.is_label else (False if candidate.contrast is not None else None)
        volume = read_nifti(candidate.path, as_label=as_label)
    if name is not None:
        volume.name = name
    return volume


def iter_load_group(
    candidates: Sequence[Candidate],
    isotropic: float | None = None,
    cancel: Callable[[], bool] | None = None,
    straight: bool = False,
) -> Generator[Progress, None, list[Volume]]:
    """Load candidates one by one (progress dicts between them); ``isotropic`` (mm) resamples each volume (onto
    the scanner axes with ``straight``, see :func:`~.volume_resample.isotropic_grid`).

    Raises :class:`~napari_domaingen.progress.Cancelled` when ``cancel()`` turns true.
    """
    names = layer_names(candidates)
    volumes: list[Volume] = []
    n = max(1, len(candidates))
    for index, (candidate, name) in enumerate(zip(candidates, names)):
        if cancel is not None and cancel():
            from ..progress import Cancelled

            raise Cancelled("loading cancelled")
        yield {"stage": "load", "fraction": index / n, "message": f"reading {name} ({index + 1}/{n})"}
        volume = load_candidate(candidate, name)
        if isotropic is not None:
            yield {
                "stage": "resample",
                "fraction": (index + 0.5) / n,
                "message": f"resampling {name} to {isotropic:g} mm",
            }
            volume = resample_isotropic(volume, isotropic, straight)
        volumes.append(volume)
    yield {"stage": "done", "fraction": 1.0, "message": f"{len(volumes)} volume(s) read"}
    return volumes


def load_group(candidates: Sequence[Candidate], isotropic: float | None = None) -> list[Volume]:
    """Read candidates as volumes named ``"<subject> <contrast>"`` (see :func:`layer_names`)."""
    job = iter_load_group(candidates, isotropic)
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def iter_resample_group(
    volumes: list[Volume], reference: int, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, list[tuple[int, Volume]]]:
    """Resample every volume that is off the reference's grid onto it; returns ``(index, resampled)`` pairs.

    A job (progress dicts, ``cancel()`` checked between volumes).
    """
    from ..progress import Cancelled  # the job convention's exception (pure Python, no torch)

    cancel = cancel or (lambda: False)
    ref = volumes[reference]
    todo = off_grid(volumes, reference)
    out = []
    for n, index in enumerate(todo):
        if cancel():
            raise Cancelled("resampling cancelled")
        yield {
            "stage": "resample",
            "fraction": n / len(todo),
            "message": f"resampling {volumes[index].name} onto {ref.name}",
        }
        out.append((index, resample_onto(volumes[index], ref)))
    yield {"stage": "done", "fraction": 1.0, "message": "resampled"}
    return out
