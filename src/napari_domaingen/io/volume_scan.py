"""Scan files, folders and zips for loadable volumes: :class:`Candidate` rows with header facts, nothing loaded.

NIfTI files are found directly inside a folder, DICOM series at any depth; ``dims``/``spacing`` (mm) are in the
file's voxel order ``(i, j, k)``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contrast_names import _RANK, contrast_of
from .dicom_series import DicomSeries, list_series
from .errors import VolumeReadError
from .nifti import is_nifti_path, strip_nifti_suffix
from .output_guard import is_regular_file, require_input
from .volume_info import info


@dataclass
class Candidate:
    """One loadable volume: a NIfTI file or a DICOM series, with header facts (nothing loaded yet).

    ``dims``/``spacing``/``orientation`` are in the file's voxel order ``(i, j, k)`` (DICOM: column, row,
    slice) as :func:`~.volume_info.info` reports them; ``value_range`` is known for NIfTI only (DICOM: ``None``).
    ``stem`` is the file name without suffix (NIfTI) or the series description (DICOM).
    """

    path: Path
    kind: str  # "nifti" | "dicom" | "dicomweb" (a series on a server: ``facts["uri"]``, nothing else known)
    stem: str
    contrast: str | None = None
    uid: str | None = None
    dims: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    orientation: str = ""
    modality: str = ""
    dtype: str = ""
    value_range: tuple[float, float] | None = None
    series: DicomSeries | None = field(default=None, repr=False)
    facts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_label(self) -> bool:
        return self.contrast == "labels"

    @property
    def source_text(self) -> str:
        """The file, or ``<folder> [series description]`` for DICOM."""
        if self.kind == "dicom":
            return f"{self.path} [{self.stem}]"
        if self.kind == "dicomweb":
            return f"{self.facts['uri']} [{self.stem}]"
        return str(self.path)


def scan(paths: Iterable[str | os.PathLike], errors: list[str] | None = None) -> list[Candidate]:
    """Candidates from NIfTI files, folders (the NIfTI files directly inside, DICOM series at any depth) and
    DICOM zips or single DICOM files (their whole series).

    A path that holds nothing loadable raises :class:`VolumeReadError`, or, when ``errors`` is a list, adds
    its message there and goes on. Duplicates (same file or series) are listed once.
    """
    out: list[Candidate] = []
    seen: set[tuple[str, str | None]] = set()
    for raw in paths:
        path = Path(raw)
        try:
            found = _scan_one(path)
        except VolumeReadError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        for candidate in found:
            key = (str(candidate.path.resolve()), candidate.uid)
            if key not in seen:
                seen.add(key)
                out.append(candidate)
    return out


def _scan_one(path: Path) -> list[Candidate]:
    require_input(path, "input", VolumeReadError)  # a FIFO is never opened
    if is_nifti_path(path):  # a folder or FIFO named *.nii.gz: info() says what it is
        return [_nifti_candidate(path)]
    if path.is_dir():
        niftis = [_nifti_candidate(p) for p in sorted(path.iterdir()) if is_regular_file(p) and is_nifti_path(p)]
        niftis.sort(key=lambda c: (_RANK.get(c.contrast, len(_RANK)), c.stem.lower()))
        try:
            series = _dicom_candidates(path)
        except VolumeReadError as exc:
            if niftis and "no DICOM" in exc.problem:
                series = []
            elif niftis:
                raise
            else:
                raise VolumeReadError(path, f"no NIfTI files and {exc.problem}") from exc
        return niftis + series
    if zipfile.is_zipfile(path):
        return _dicom_candidates(path)
    # one DICOM file: its series, from the files next to it
    series = [s for s in list_series(path.parent, recursive=False) if path in s.files]
    if not series:
        raise VolumeReadError(path, "not a NIfTI file, a DICOM file, or a folder or zip of DICOM files")
    return [_series_candidate(s, path.parent) for s in series]


def _nifti_candidate(path: Path) -> Candidate:
    facts = info(path)[0]
    stem = strip_nifti_suffix(path)
    return Candidate(
        path=path,
        kind="nifti",
        stem=stem,
        contrast=contrast_of(path),
        dims=tuple(facts["dims"]),
        spacing=tuple(facts["spacing"]),
        orientation=str(facts["orientation"]),
        dtype=str(facts["dtype"]),
        value_range=tuple(facts["range"]),  # type: ignore[arg-type]
        facts=facts,
    )


def _dicom_candidates(root: Path) -> list[Candidate]:
    return [_series_candidate(s, root) for s in list_series(root)]


def _series_candidate(series: DicomSeries, root: Path) -> Candidate:
    return Candidate(
        path=root,
        kind="dicom",
        stem=series.name,
        contrast=contrast_of(series.name),
        uid=series.uid,
        dims=(series.columns, series.rows, series.n_slices),
        spacing=tuple(round(s, 6) for s in reversed(series.spacing)),
        orientation=series.orientation,
        modality=series.modality,
        dtype=series.dtype,
        series=series,
        facts={
            "uid": series.uid,
            "n_files": len(series.files),
            "transfer_syntax": series.transfer_syntax,
            "rescale": series.rescale,
        },
    )
