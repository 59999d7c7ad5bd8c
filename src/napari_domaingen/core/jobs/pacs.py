"""The PACS jobs, on :mod:`napari_domaingen.io.dicomweb`: get series from a DICOMweb server, send DICOM files to
it, and send labels drawn or segmented on a retrieved series back as a DICOM-SEG.

* :class:`PacsGetJob` → :func:`run_pacs_get`: series (by UID) into the cache, then optionally their DICOM files
  into a folder, or one series converted to NIfTI (the ``convert`` job on the cached folder).
* :class:`PacsSendJob` → :func:`run_pacs_send`: DICOM files (e.g. a SEG written by ``export``) → STOW-RS.
* :func:`send_labels`: labels on a retrieved series → a DICOM-SEG (the ``export`` writer) → STOW-RS into the
  series' study; refused for labels whose reference series was not retrieved from a DICOMweb server.

>>> # result = run(run_pacs_get(PacsGetJob("http://127.0.0.1:8042/dicom-web", ("1.2.3",), out="t1/")))
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...io.dicomweb import PacsError, Server, Stored, cache_dir, find_series, get_series, server_from
from ...io.nifti import is_nifti_path
from ...io.output_guard import OutputError, inside, output_folder
from ...progress import Progress, rescaled
from .base import JobResult, as_path

__all__ = ["PacsGetJob", "PacsGetResult", "PacsSendJob", "PacsSendResult", "SentLabels", "run_pacs_get",
           "run_pacs_send", "send_labels", "study_of_series", "retrieved_series"]  # fmt: skip


def study_of_series(server: Server, series_uid: str) -> str:
    """The StudyInstanceUID of a series, asked of the server (QIDO-RS ``/series?SeriesInstanceUID=``)."""
    from ...io.dicomweb_server import talking_to

    with talking_to(server, f"looking up series {series_uid}"):
        found = server.client().search_for_series(search_filters={"SeriesInstanceUID": series_uid})
    studies = {str((item.get("0020000D", {}).get("Value") or [""])[0]) for item in found} - {""}
    if not studies:
        raise PacsError(server.url, f"no series {series_uid} on this server")
    return studies.pop()


@dataclass(frozen=True)
class PacsGetJob:
    """``server``: the DICOMweb address; ``series``: SeriesInstanceUIDs (their studies are looked up unless
    ``study`` is given); ``out``: ``None`` (the cache only), a folder (the series' files; one sub-folder per series
    when there are several) or a ``.nii``/``.nii.gz`` file (one series, converted); ``ca_file``: a CA to trust."""

    server: str
    series: tuple[str, ...]
    out: Path | None = None
    study: str | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", tuple(self.series))
        object.__setattr__(self, "out", as_path(self.out))
        if not self.series:
            raise ValueError("give at least one series UID")
        if self.out is not None and is_nifti_path(self.out) and len(self.series) != 1:
            raise ValueError(f"{self.out}: one NIfTI file holds one series; give a folder for {len(self.series)}")
        if self.out is not None and inside(self.out, cache_dir()):
            raise OutputError(self.out, f"lies in the DICOMweb cache {cache_dir()}, which is emptied as it fills")


@dataclass(kw_only=True)
class PacsGetResult(JobResult):
    """``folders``: each series' cache folder, in the order asked."""

    folders: list[Path] = field(default_factory=list)


def run_pacs_get(job: PacsGetJob, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, PacsGetResult]:
    """Run ``job``: each series into the cache (progress per image), then into ``out``."""
    from ...progress import run
    from .convert import ConvertJob, run_convert

    server = server_from(job.server, job.ca_file)
    result = PacsGetResult()
    for number, uid in enumerate(job.series, start=1):
        study = job.study or study_of_series(server, uid)
        expected = next((s.n_instances for s in find_series(server, study) if s.uid == uid), None)
        if expected is None:
            raise PacsError(server.url, f"study {study} has no series {uid}")
        fetch = get_series(server, study, uid, expected, cancel)
        share = 1 / len(job.series)
        folder = yield from rescaled(fetch, (number - 1) * share, share, f"series {number}/{len(job.series)}: ")
        result.folders.append(folder)
        result.lines.append(f"series {uid} ({expected} images) in the cache: {folder}")
    if job.out is not None and is_nifti_path(job.out):
        converted = run(run_convert(ConvertJob(result.folders[0], job.out)))
        result.written += converted.written
        result.lines += converted.lines
    elif job.out is not None:
        root = output_folder(job.out)
        for uid, folder in zip(job.series, result.folders, strict=True):
            target = root / uid if len(job.series) > 1 else root
            result.written += _copy_series(folder, target)
            result.lines.append(f"wrote {len(list(folder.glob('*.dcm')))} DICOM files of series {uid} to {target}")
    return result


def _copy_series(folder: Path, target: Path) -> list[Path]:
    """The cached series' files into ``target`` (each written atomically)."""
    from ...io.atomic import atomic_path

    target.mkdir(parents=True, exist_ok=True)
    written = []
    for file in sorted(folder.glob("*.dcm")):
        with atomic_path(target / file.name, suffix=".dcm") as tmp:
            shutil.copyfile(file, tmp)
        written.append(target / file.name)
    return written


@dataclass(frozen=True)
class PacsSendJob:
    """``files``: DICOM files to store on ``server`` (``study``: the study they must belong to, optional)."""

    server: str
    files: tuple[Path, ...]
    study: str | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(Path(f) for f in self.files))
        if not self.files:
            raise ValueError("give at least one DICOM file to send")


@dataclass(kw_only=True)
class PacsSendResult(JobResult):
    """``stored``: what the server stored (SOP class/instance UIDs, retrieve address)."""

    stored: list[Stored] = field(default_factory=list)


def run_pacs_send(
    job: PacsSendJob, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, PacsSendResult]:
    """Run ``job``: check the files are readable DICOM, store them (one request), say what was stored."""
    import pydicom

    from ...io.dicomweb import send
    from ...io.output_guard import require_input_file

    server = server_from(job.server, job.ca_file)
    for file in job.files:
        require_input_file(file, "DICOM file")
    yield {"stage": "send", "fraction": 0.0, "message": f"sending {len(job.files)} file(s) to {server.url}"}
    stored = send(server, job.files, job.study)
    uids = {item.sop_instance_uid for item in stored}
    lines = []
    for file in job.files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        what = "stored" if str(ds.SOPInstanceUID) in uids else "sent (not listed in the server's answer)"
        lines.append(
            f"{what} {file} on {server.url}: {ds.get('Modality', '?')} series {ds.get('SeriesInstanceUID', '?')}, "
            f"instance {ds.SOPInstanceUID}, study {ds.get('StudyInstanceUID', '?')}"
        )
    return PacsSendResult(stored=stored, lines=lines)


def retrieved_series(reference: Path) -> tuple[Server, str, str] | None:
    """``(server, study UID, series UID)`` when ``reference`` is a series folder of the DICOMweb cache, else
    ``None``."""
    from ...io.dicomweb import origin_of

    origin = origin_of(reference)
    return None if origin is None else (server_from(origin[0]), origin[1], origin[2])


@dataclass(frozen=True)
class SentLabels:
    """A SEG sent to a server (its address): the file kept, its series and instance UIDs, the server's record."""

    server: str
    path: Path
    series_uid: str
    sop_instance_uid: str
    study_uid: str
    stored: list[Stored]


def send_labels(
    labels: np.ndarray,
    reference: Path,
    out: Path,
    *,
    labels_affine: np.ndarray | None = None,
    table=None,
    description: str | None = None,
    server: Server | None = None,
) -> SentLabels:
    """Labels ``(Z, Y, X)`` on the retrieved series at ``reference`` (its cache folder) → the DICOM-SEG ``out``
    (kept, so it can be sent again with ``domaingen pacs send``) → stored in the series' study on the server it
    came from. Raises :class:`PacsError` for a series not retrieved from a DICOMweb server."""
    import pydicom

    from ...io.dicom_seg import write_dicom_seg
    from ...io.dicomweb import send

    origin = retrieved_series(reference)
    if origin is None:
        raise PacsError(
            str(reference),
            "these labels are not on a series retrieved from a DICOMweb server; open the series from the PACS first "
            "(PACS dock or `domaingen pacs get`)",
        )
    home, study, series = origin
    server = server or home
    if server.url != home.url:
        raise PacsError(server.url, f"series {series} was retrieved from {home.url}, not from this server")
    path = write_dicom_seg(
        out, labels, reference, table, labels_affine=labels_affine, series_uid=series, description=description
    )
    seg = pydicom.dcmread(path, stop_before_pixels=True)
    try:
        stored = send(server, [path], study)
    except PacsError as exc:  # the SEG was written: say where, so it can be sent again
        kept = f"the SEG is kept at {path} (`domaingen pacs send` sends it again)"
        raise PacsError(exc.server, f"{exc.problem}; {kept}") from None
    return SentLabels(server.url, Path(path), str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID), study, stored)


def outbox() -> Path:
    """Where the dock keeps the SEGs it sends (``<cache>/outbox/``), so a refused one can be sent again."""
    folder = cache_dir() / "outbox"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
