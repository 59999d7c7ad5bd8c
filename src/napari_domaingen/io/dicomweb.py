"""PACS over DICOMweb (dicomweb-client): find studies and series (QIDO-RS), get a series into the on-disk cache
(WADO-RS), send instances (STOW-RS). The server, its credentials and its errors: :mod:`.dicomweb_server`.

* **Find**: :func:`find_studies` by patient ID or name (``*`` wildcards), study date (``20260101``,
  ``20260101-20261231``, ``20260101-``), modality, accession number; :func:`find_series` lists a study's series
  (description, modality, number of images, date).
* **Get**: :func:`get_series` streams a series' instances into ``<cache>/<server>/<study>/<series>/`` (one
  ``<SOPInstanceUID>.dcm`` each, the folder moved into place only when complete), with progress and cancel; a
  series already there is not fetched again. The folder is then read by the same reader as any folder
  (:func:`~.dicom.read_series`), so geometry is exact, multi-frame included. The cache (``$DOMAINGEN_DICOMWEB_CACHE``,
  else the platform's cache folder, e.g. ``~/.cache/napari-domaingen/dicomweb``) is kept under
  ``$DOMAINGEN_DICOMWEB_CACHE_GB`` (default :data:`CACHE_GB`) by removing the series used longest ago.
* **Send**: :func:`send` stores DICOM files (a DICOM-SEG) and returns what the server stored; a refusal is a
  :class:`PacsError` with the server's reason.
* **Addresses of things on a server**: ``dicomweb+http://host/root/studies/<S>/series/<U>`` names one series (a
  batch's input); ``dicomweb+http://host/root?ModalitiesInStudy=MR&StudyDate=20260101-`` a query (a cohort).

>>> parse_series_uri("dicomweb+http://127.0.0.1:8042/dicom-web/studies/1.2/series/1.2.3")
('http://127.0.0.1:8042/dicom-web', '1.2', '1.2.3')
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..progress import Cancelled, Progress
from .atomic import atomic_write_text
from .dicomweb_server import PacsError, Server, normalise_address, server_from, talking_to

__all__ = [
    "CACHE_GB",
    "IMAGE_MODALITIES_EXCLUDED",
    "PacsError",
    "SeriesInfo",
    "Server",
    "Stored",
    "StudyInfo",
    "cache_dir",
    "cached",
    "find_series",
    "find_studies",
    "get_series",
    "is_dicomweb",
    "origin_of",
    "parse_query_uri",
    "parse_series_uri",
    "send",
    "series_uri",
    "server_from",
]

ENV_CACHE = "DOMAINGEN_DICOMWEB_CACHE"
ENV_CACHE_GB = "DOMAINGEN_DICOMWEB_CACHE_GB"
#: default cache bound (GB)
CACHE_GB = 20.0
#: modalities of series that are not images to read (segmentations, reports, presentation states, RT objects …)
IMAGE_MODALITIES_EXCLUDED = ("SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC", "AU", "ECG")
_COMPLETE = ".complete"
_SERVER = ".server"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class StudyInfo:
    """One study as the server lists it (QIDO-RS study level)."""

    uid: str
    patient_id: str
    patient_name: str
    date: str
    description: str
    accession: str
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study (QIDO-RS series level); ``is_image``: not a SEG/SR/PR/RT… object."""

    study_uid: str
    uid: str
    description: str
    modality: str
    n_instances: int | None
    date: str
    number: int | None

    @property
    def is_image(self) -> bool:
        return self.modality.upper() not in IMAGE_MODALITIES_EXCLUDED

    @property
    def name(self) -> str:
        return self.description or f"{self.modality or 'DICOM'} series {self.number or ''}".strip()


@dataclass(frozen=True)
class Stored:
    """One instance the server stored: its SOP class and instance UIDs, and where to retrieve it."""

    sop_class_uid: str
    sop_instance_uid: str
    url: str


# ------------------------------------------------------------------------------------------------ addresses


def is_dicomweb(text: str | os.PathLike) -> bool:
    """Whether ``text`` is a DICOMweb address (``dicomweb://``, ``dicomweb+http(s)://``), not a path."""
    return str(text).lower().startswith(("dicomweb://", "dicomweb+http://", "dicomweb+https://"))


def series_uri(server: Server, study_uid: str, series_uid: str) -> str:
    """``dicomweb+http(s)://host/root/studies/<S>/series/<U>``: one series, as a batch input."""
    return f"dicomweb+{server.url}/studies/{study_uid}/series/{series_uid}"


def parse_series_uri(uri: str) -> tuple[str, str, str]:
    """``(server address, study UID, series UID)`` of a :func:`series_uri`; ``ValueError`` otherwise."""
    match = re.match(r"^(?P<root>.+?)/studies/(?P<study>[0-9.]+)/series/(?P<series>[0-9.]+)/?$", uri.strip())
    if not is_dicomweb(uri) or match is None:
        raise ValueError(f"{uri}: not the address of a DICOMweb series (…/studies/<UID>/series/<UID>)")
    return normalise_address(match["root"]), match["study"], match["series"]


def parse_query_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``(server address, QIDO study filters)`` of ``dicomweb+http://host/root?ModalitiesInStudy=MR&…``."""
    parts = urlsplit(uri.strip())
    filters = dict(parse_qsl(parts.query, keep_blank_values=False))
    return uri.strip().split("?", 1)[0], filters


# ------------------------------------------------------------------------------------------------ find


def _value(item: dict[str, Any], tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return default
    value = values[0]
    if isinstance(value, dict):  # a person name in JSON: {"Alphabetic": "Doe^Jane"}
        return str(value.get("Alphabetic", ""))
    return value


def _int(item: dict[str, Any], tag: str) -> int | None:
    value = _value(item, tag, None)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _checked_uid(server: Server, uid: Any, what: str) -> str:
    """A UID from the server, checked to be one (it becomes a folder or file name)."""
    text = str(uid)
    if not _UID.match(text) or len(text) > 64:
        raise PacsError(server.url, f"the server sent a {what} that is not a DICOM UID: {text[:70]!r}")
    return text


def find_studies(
    server: Server,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
    accession: str | None = None,
    filters: dict[str, str] | None = None,
    limit: int | None = None,
) -> list[StudyInfo]:
    """Studies matching every given criterion (``None``: any), newest first; ``filters``: more QIDO study
    attributes by keyword (``{"ModalitiesInStudy": "MR"}``)."""
    search = dict(filters or {})
    for keyword, value in (
        ("PatientID", patient_id),
        ("PatientName", patient_name),
        ("StudyDate", study_date),
        ("ModalitiesInStudy", modality),
        ("AccessionNumber", accession),
    ):
        if value:
            search[keyword] = value
    fields = ["StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "ModalitiesInStudy"]
    with talking_to(server, "searching studies"):
        found = server.client().search_for_studies(search_filters=search, fields=fields, limit=limit)
    studies = [
        StudyInfo(
            uid=_checked_uid(server, _value(item, "0020000D"), "study UID"),
            patient_id=str(_value(item, "00100020")),
            patient_name=str(_value(item, "00100010")),
            date=str(_value(item, "00080020")),
            description=str(_value(item, "00081030")),
            accession=str(_value(item, "00080050")),
            modalities=tuple(str(m) for m in item.get("00080061", {}).get("Value", [])),
            n_series=_int(item, "00201206"),
            n_instances=_int(item, "00201208"),
        )
        for item in found
    ]
    return sorted(studies, key=lambda s: (s.date, s.patient_id), reverse=True)


def find_series(server: Server, study_uid: str) -> list[SeriesInfo]:
    """The series of one study, in series-number order."""
    fields = ["SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesDate", "SeriesNumber"]
    with talking_to(server, f"listing the series of study {study_uid}"):
        found = server.client().search_for_series(study_instance_uid=study_uid, fields=fields)
    series = [
        SeriesInfo(
            study_uid=study_uid,
            uid=_checked_uid(server, _value(item, "0020000E"), "series UID"),
            description=str(_value(item, "0008103E")),
            modality=str(_value(item, "00080060")),
            n_instances=_int(item, "00201209"),
            date=str(_value(item, "00080021")),
            number=_int(item, "00200011"),
        )
        for item in found
    ]
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.description))


# ------------------------------------------------------------------------------------------------ the cache


def cache_dir() -> Path:
    """The DICOMweb cache folder (module docstring)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-domaingen", appauthor=False)) / "dicomweb"


def cache_limit_bytes() -> int:
    """The cache bound in bytes (``$DOMAINGEN_DICOMWEB_CACHE_GB``, default :data:`CACHE_GB`)."""
    try:
        gigabytes = float(os.environ.get(ENV_CACHE_GB, CACHE_GB))
    except ValueError:
        gigabytes = CACHE_GB
    return int(max(gigabytes, 0.0) * 1e9)


def series_folder(server: Server, study_uid: str, series_uid: str) -> Path:
    """Where a series of ``server`` is cached (whether or not it is there yet)."""
    key = hashlib.sha256(server.url.encode()).hexdigest()[:16]
    return cache_dir() / key / study_uid / series_uid


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _evict(keep: Path) -> None:
    """Remove the complete series used longest ago until the cache is under its bound (never ``keep``)."""
    limit = cache_limit_bytes()
    series = [marker.parent for marker in cache_dir().glob(f"*/*/*/{_COMPLETE}")]
    sizes = {folder: _size(folder) for folder in series}
    total = sum(sizes.values())
    for folder in sorted(series, key=lambda f: (f / _COMPLETE).stat().st_mtime):
        if total <= limit:
            break
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]


def cached(server: Server, study_uid: str, series_uid: str) -> Path | None:
    """The series' cache folder if it was fetched completely, else ``None``."""
    folder = series_folder(server, study_uid, series_uid)
    return folder if (folder / _COMPLETE).is_file() else None


def origin_of(folder: str | os.PathLike) -> tuple[str, str, str] | None:
    """``(server address, study UID, series UID)`` of a complete series folder of the cache, else ``None``."""
    try:
        folder = Path(folder).resolve()
        root = cache_dir().resolve()
    except OSError:
        return None
    if folder.parent.parent.parent != root or not (folder / _COMPLETE).is_file():
        return None
    record = folder.parent.parent / _SERVER
    if not record.is_file():
        return None
    return record.read_text().strip(), folder.parent.name, folder.name


def get_series(
    server: Server,
    study_uid: str,
    series_uid: str,
    expected: int | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, Path]:
    """Fetch one series into the cache (module docstring); yields one update per instance (``expected``: the
    number of instances, for the fraction) and returns the series' folder. A cancelled or failed fetch leaves
    nothing in the cache."""
    cancel = cancel or (lambda: False)
    study_uid = _checked_uid(server, study_uid, "study UID")
    series_uid = _checked_uid(server, series_uid, "series UID")
    done = cached(server, study_uid, series_uid)
    if done is not None:
        os.utime(done / _COMPLETE)  # used now: evicted last
        yield {"stage": "get", "fraction": 1.0, "message": f"series {series_uid} is in the cache"}
        return done
    folder = series_folder(server, study_uid, series_uid)
    folder.parent.mkdir(parents=True, exist_ok=True)
    record = folder.parent.parent / _SERVER
    if not record.is_file():  # which server the folder's series came from (its address only)
        atomic_write_text(record, server.url + "\n")
    partial = folder.parent / f".{series_uid}.partial-{os.getpid()}-{time.time_ns()}"
    partial.mkdir()
    count = 0
    try:
        with talking_to(server, f"getting series {series_uid}"):
            for dataset in server.client().iter_series(study_uid, series_uid):
                if cancel():
                    raise Cancelled("retrieval cancelled")
                sop = _checked_uid(server, dataset.SOPInstanceUID, "SOP instance UID")
                dataset.save_as(partial / f"{sop}.dcm", enforce_file_format=True)
                count += 1
                total = f" of {expected}" if expected else ""
                fraction = min(count / expected, 1.0) if expected else 0.0
                yield {"stage": "get", "fraction": fraction, "message": f"image {count}{total}"}
        if count == 0:
            raise PacsError(server.url, f"series {series_uid} of study {study_uid} has no instances")
        (partial / _COMPLETE).write_text(f"{count}\n")
        if folder.exists():  # fetched meanwhile by another process: keep theirs
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _evict(keep=folder)
    return folder


# ------------------------------------------------------------------------------------------------ send

#: STOW-RS failure reasons (DICOM PS3.18 table I.2-1 and C-STORE statuses), for messages
_FAILURES = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorised",
    0xA700: "out of resources",
    0xA900: "the instance does not match its SOP class",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
    0xC123: "the instance's study does not match the address it was sent to",
}


def send(server: Server, files: Sequence[str | os.PathLike], study_uid: str | None = None) -> list[Stored]:
    """Store DICOM ``files`` on ``server`` (STOW-RS, into ``study_uid`` when given); returns the stored
    instances. Raises :class:`PacsError` with the server's reason when it refuses any of them."""
    import pydicom
    import requests

    from .errors import VolumeReadError

    datasets = []
    for file in files:
        try:
            datasets.append(pydicom.dcmread(file))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise VolumeReadError(file, f"not a DICOM file that can be sent ({exc})") from None
    names = ", ".join(Path(f).name for f in files)
    status = ""
    with talking_to(server, f"storing {names}"):
        try:
            response = server.client().store_instances(datasets, study_instance_uid=study_uid)
        except requests.exceptions.HTTPError as exc:  # a refusal: the body may still say why
            response = _failure_body(exc.response)
            if response is None:
                raise
            status = f" (HTTP {exc.response.status_code})"
    failed = response.get("FailedSOPSequence") or []
    if failed:
        reasons = sorted({int(item.get("FailureReason", 0)) for item in failed})
        text = ", ".join(f"0x{r:04X} ({_FAILURES.get(r, 'refused')})" for r in reasons)
        raise PacsError(server.url, f"the server refused {len(failed)} of {len(datasets)} instances{status}: {text}")
    return [
        Stored(
            str(item.get("ReferencedSOPClassUID", "")),
            str(item.get("ReferencedSOPInstanceUID", "")),
            str(item.get("RetrieveURL", "")),
        )  # fmt: skip
        for item in response.get("ReferencedSOPSequence") or []
    ]


def _failure_body(response) -> Any:
    """The STOW-RS answer of a refused store (JSON with a ``FailedSOPSequence``), or ``None``."""
    import pydicom

    try:
        body = pydicom.Dataset.from_json(response.json())
    except Exception:  # not JSON, or not a DICOM JSON object: the HTTP status says it
        return None
    return body if body.get("FailedSOPSequence") else None
