"""A cohort from a DICOMweb query: each matching study is a case, its image series mapped to contrasts by their
descriptions exactly as a case folder's series are (:func:`~.contrast_names.contrast_of`: ``T1 axial`` → T1,
``t2_flair`` → FLAIR …).

``dicomweb+http://host:8042/dicom-web?ModalitiesInStudy=MR&StudyDate=20260101-`` (``dicomweb://`` for HTTPS): the
part before ``?`` is the server, the query is QIDO-RS study filters by keyword. Nothing is retrieved here: a case's
volumes are the addresses of its series (:func:`~.dicomweb.series_uri`), fetched into the cache by the batch case
that reads them. Case names are ``<PatientID>_<StudyDate>`` (with the accession number, or the end of the study
UID, when two studies would share one), characters other than letters, digits, ``.``, ``-`` and ``_`` replaced by
``_``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .contrast_names import contrast_of
from .dicomweb import SeriesInfo, StudyInfo, find_series, find_studies, parse_query_uri, series_uri, server_from
from .dicomweb_server import PacsError
from .volume_scan import Candidate

__all__ = ["PacsCase", "pacs_cases"]

PacsCase = tuple[str, dict[str, Candidate], list[str]]  # (case name, volumes by contrast, problems)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "study"


def _names(studies: list[StudyInfo]) -> list[str]:
    base = [_safe(f"{s.patient_id or 'patient'}_{s.date or 'nodate'}") for s in studies]
    names = []
    for study, name in zip(studies, base, strict=True):
        if base.count(name) > 1:
            name = _safe(f"{name}_{study.accession}") if study.accession else f"{name}_{study.uid[-8:]}"
        names.append(name)
    for index, name in enumerate(names):  # still shared (same accession): the study UID's end decides
        if names.count(name) > 1:
            names[index] = f"{name}_{studies[index].uid[-8:]}"
    return names


def _candidate(uri: str, series: SeriesInfo) -> Candidate:
    return Candidate(
        path=Path(series.uid),
        kind="dicomweb",
        stem=series.name,
        contrast=contrast_of(series.description) if series.description else None,
        uid=series.uid,
        modality=series.modality,
        facts={"uri": uri, "n_instances": series.n_instances},
    )


def pacs_cases(uri: str) -> tuple[str, list[PacsCase]]:
    """``(the query as shown, cases)`` of a DICOMweb cohort address (module docstring); :class:`PacsError` when the
    server cannot be asked or nothing matches."""
    address, filters = parse_query_uri(uri)
    server = server_from(address)
    studies = find_studies(server, filters=filters)
    query = "&".join(f"{k}={v}" for k, v in filters.items()) or "all studies"
    if not studies:
        raise PacsError(server.url, f"no study matches {query}")
    cases: list[PacsCase] = []
    for name, study in zip(_names(studies), studies, strict=True):
        volumes: dict[str, Candidate] = {}
        problems: list[str] = []
        series = find_series(server, study.uid)
        images = [s for s in series if s.is_image]
        if not images:
            kinds = ", ".join(sorted({s.modality for s in series})) or "none"
            problems.append(f"study {study.uid} has no image series (its series: {kinds})")
        for item in images:
            candidate = _candidate(series_uri(server, study.uid, item.uid), item)
            if candidate.contrast is None:
                continue
            if candidate.contrast in volumes:
                problems.append(
                    f"two {candidate.contrast} series ({volumes[candidate.contrast].stem} and {item.name}); keep one"
                )
                continue
            volumes[candidate.contrast] = candidate
        if images and not volumes:
            problems.append(
                "no series description names a contrast (t1, t1c, t2, flair, seg …): "
                + ", ".join(repr(s.name) for s in images)
            )
        cases.append((name, volumes, problems))
    return f"dicomweb+{server.url}?{query}", cases
