"""A cohort: many cases, each with its volumes by contrast — from a folder of case folders or a CSV manifest.

* **Folder**: one sub-folder per case (its name is the case name). Inside, NIfTI files and DICOM series (at any
  depth) are recognised by contrast exactly as *Load volumes* does (:func:`~.contrast_names.contrast_of`:
  ``t1``/``t1n``, ``t1c``/``t1ce``, ``t2``/``t2w``, ``flair``/``t2f``/``fla``, ``seg``/``label``/``mask``).
* **DICOMweb query** (``dicomweb+http://host/dicom-web?ModalitiesInStudy=MR&StudyDate=20260101-``): each matching
  study is a case, its series mapped to contrasts by description (:mod:`.dicomweb_cohort`); a volume is the
  address of its series, fetched when a batch case reads it.
* **CSV manifest**: a ``case`` column and one column per contrast (``T1``, ``T1c``, ``T2``, ``FLAIR``,
  ``labels``; for training also ``image``/``label``), each cell a path (relative paths are relative to the
  manifest's folder; an empty cell: no such volume).

Case names are checked where they are read (:func:`~.output_guard.check_case_name`): a manifest name that could
leave the batch folder (``../x``, an absolute path, ``.``, control characters) is refused, naming the row.

Reading headers only (nothing is loaded). Whole-cohort problems (nothing found, duplicate case names, unknown
manifest columns) raise :class:`CohortError`; a case's own problems (two T1 files, a missing file, an unreadable
header) are kept in :attr:`Case.problems`, so a batch records them for that case and goes on with the others.

>>> # read_cohort("brats/")  → Cohort(cases=[Case("BraTS-GLI-00001-000", {"T1": …, "T1c": …, …}), …])
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from .contrast_names import CONTRASTS, contrast_of
from .dicomweb import is_dicomweb
from .dicomweb_cohort import pacs_cases
from .errors import DomaingenIOError, VolumeReadError
from .nifti import is_nifti_path
from .output_guard import OutputError, check_case_name
from .volume_scan import Candidate, _dicom_candidates, scan

__all__ = ["MANIFEST_COLUMNS", "Case", "Cohort", "CohortError", "canonical_contrast", "read_cohort"]

#: manifest columns besides ``case`` (case-insensitive)
MANIFEST_COLUMNS = (*CONTRASTS, "image", "label")
_CANONICAL = {name.lower(): name for name in MANIFEST_COLUMNS}
_ORDER = {name: rank for rank, name in enumerate(MANIFEST_COLUMNS)}


class CohortError(DomaingenIOError):
    """The cohort as a whole cannot be read (``"<folder or manifest>: <problem>"``)."""


def canonical_contrast(name: str) -> str:
    """``"flair"`` → ``"FLAIR"``, ``"t1c"`` → ``"T1c"``; raises ``ValueError`` naming the known contrasts."""
    found = _CANONICAL.get(name.strip().lower())
    if found is None:
        raise ValueError(f"unknown contrast {name!r}; known: {', '.join(MANIFEST_COLUMNS)}")
    return found


@dataclass
class Case:
    """One case: ``volumes`` maps a contrast (``"T1"``, ``"FLAIR"``, ``"labels"``, ``"image"`` …) to its volume
    (a NIfTI file or a DICOM series, header facts only); ``problems`` says what is wrong with it."""

    name: str
    volumes: dict[str, Candidate] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)  # contrast → why its file cannot be used

    def path_of(self, contrast: str) -> str:
        """The file or DICOM folder of ``contrast``; raises ``ValueError`` saying why its file cannot be used, or
        what the case has instead."""
        if contrast not in self.volumes and contrast in self.unusable:
            raise ValueError(f"case {self.name}: its {contrast} file cannot be used: {self.unusable[contrast]}")
        if contrast not in self.volumes:
            have = ", ".join(sorted(self.volumes, key=_ORDER.__getitem__)) or "no recognised volume"
            raise ValueError(f"case {self.name} has no {contrast} volume (it has {have})")
        candidate = self.volumes[contrast]
        if candidate.kind == "dicomweb":
            return str(candidate.facts["uri"])
        return str(candidate.series.root if candidate.kind == "dicom" and candidate.series else candidate.path)

    def grid_text(self, contrast: str) -> str:
        candidate = self.volumes[contrast]
        if not candidate.dims:  # a series on a DICOMweb server: its grid is known once it is fetched
            count = candidate.facts.get("n_instances")
            return f"{'?' if count is None else count} images on the server"
        dims = "×".join(str(n) for n in candidate.dims[:3])
        spacing = "×".join(f"{s:g}" for s in candidate.spacing[:3])
        return f"{dims} @ {spacing} mm"


@dataclass
class Cohort:
    """The cases of a cohort folder or manifest (``source``), or of a DICOMweb query (``source`` is its text), in
    name order."""

    source: Path | str
    cases: list[Case]

    @property
    def remote(self) -> bool:
        """Whether the cases' volumes are series on a DICOMweb server."""
        return isinstance(self.source, str)

    def describe(self) -> str:
        """One block per case: its volumes (contrast, grid, path) and problems."""
        lines = [f"{self.source}: {len(self.cases)} cases"]
        for case in self.cases:
            lines.append(f"  {case.name}")
            for contrast, candidate in sorted(case.volumes.items(), key=lambda item: _ORDER[item[0]]):
                lines.append(f"    {contrast:<7} {case.grid_text(contrast):<28} {candidate.source_text}")
            lines += [f"    problem: {problem}" for problem in case.problems]
        return "\n".join(lines)


def read_cohort(path: str | os.PathLike) -> Cohort:
    """Read a cohort folder, a ``.csv`` manifest or a DICOMweb query (module docstring)."""
    if is_dicomweb(path):
        return _read_pacs(str(path))
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _read_manifest(path)
    if not path.is_dir():
        raise CohortError(path, "no such folder or CSV manifest")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CohortError(path, "contains no case folders (expected one sub-folder per case, or give a CSV manifest)")
    cases = [_case_from_folder(folder) for folder in folders]
    for case in cases:  # a real sub-folder, but its name may hold control characters: the batch refuses that case
        try:
            check_case_name(case.name)
        except OutputError as exc:
            case.problems.append(f"{exc.problem}; rename the folder")
    return Cohort(path, cases)


def _read_pacs(uri: str) -> Cohort:
    shown, found = pacs_cases(uri)
    cases = []
    for name, volumes, problems in sorted(found, key=lambda case: case[0]):
        case = Case(name, volumes, problems)
        try:
            check_case_name(name)
        except OutputError as exc:
            case.problems.append(exc.problem)
        cases.append(case)
    return Cohort(shown, cases)


def _case_from_folder(folder: Path) -> Case:
    case = Case(folder.name)
    errors: list[str] = []
    # file by file, so one unreadable volume does not hide the case's others, and its contrast is known
    candidates = []
    for file in sorted(p for p in folder.iterdir() if p.is_file() and is_nifti_path(p)):
        file_errors: list[str] = []
        candidates += scan([file], file_errors)
        contrast = contrast_of(file)
        if file_errors and contrast is not None:
            case.unusable.setdefault(contrast, file_errors[0])
        errors += file_errors
    if any(p.is_file() and not is_nifti_path(p) for p in folder.rglob("*")):
        try:
            candidates += _dicom_candidates(folder)
        except VolumeReadError as exc:
            if "no DICOM" not in exc.problem:
                errors.append(str(exc))
    case.problems += errors
    for candidate in candidates:
        contrast = candidate.contrast
        if contrast is None:
            continue
        if contrast in case.volumes:
            case.problems.append(
                f"two {contrast} volumes ({case.volumes[contrast].source_text} and {candidate.source_text}); keep one"
            )
            continue
        case.volumes[contrast] = candidate
    if not case.volumes and not case.problems:
        case.problems.append("no volume with a recognised contrast name (t1, t1c, t2, flair, seg …)")
    return case


def _read_manifest(path: Path) -> Cohort:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            columns = [c.strip() for c in (rows[0].keys() if rows else [])]
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise CohortError(path, f"cannot be read as CSV ({exc})") from exc
    if not rows:
        raise CohortError(path, "the manifest has no rows")
    if "case" not in [c.lower() for c in columns]:
        raise CohortError(path, f"the manifest needs a 'case' column; its columns are {', '.join(columns)}")
    unknown = [c for c in columns if c.lower() != "case" and c.lower() not in _CANONICAL]
    if unknown:
        raise CohortError(path, f"unknown column(s) {', '.join(unknown)}; allowed: case, {', '.join(MANIFEST_COLUMNS)}")
    seen: dict[str, int] = {}
    cases = []
    for number, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        name = next(v for k, v in row.items() if k.lower() == "case")
        if not name:
            raise CohortError(path, f"row {number} has no case name")
        try:
            check_case_name(name, f"{path}, row {number}")
        except OutputError as exc:
            raise CohortError(path, f"row {number}: case name {name!r}: {exc.problem}") from None
        if name in seen:
            raise CohortError(
                path, f"case {name!r} appears twice (rows {seen[name]} and {number}); names must be unique"
            )
        seen[name] = number
        case = Case(name)
        for column, value in row.items():
            if column.lower() == "case" or not value:
                continue
            file = Path(value) if Path(value).is_absolute() else path.parent / value
            errors: list[str] = []
            found = scan([file], errors) if file.exists() else []
            contrast = _CANONICAL[column.lower()]
            if not file.exists():
                case.problems.append(f"{contrast}: {file}: no such file or folder")
                case.unusable[contrast] = f"{file}: no such file or folder"
            elif not found:
                case.problems += errors or [f"{file}: no NIfTI volume or DICOM series"]
                case.unusable[contrast] = (errors or [f"{file}: no NIfTI volume or DICOM series"])[0]
            else:
                case.volumes[_CANONICAL[column.lower()]] = found[0]
        cases.append(case)
    return Cohort(path, cases)
