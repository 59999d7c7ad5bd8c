"""``domaingen pacs find|get|send``: search a DICOMweb server (Orthanc, DCM4CHEE, a cloud DICOM store), get series
from it (into a folder, or converted to NIfTI), and store DICOM files (a DICOM-SEG) on it.

Credentials come from ``DOMAINGEN_DICOMWEB_USER``/``DOMAINGEN_DICOMWEB_PASSWORD`` or ``DOMAINGEN_DICOMWEB_TOKEN``,
or the settings file (:mod:`napari_domaingen.io.dicomweb_server`); never from the command line.
"""

from __future__ import annotations

import argparse

_CREDENTIALS = (
    "Credentials: DOMAINGEN_DICOMWEB_USER + DOMAINGEN_DICOMWEB_PASSWORD (HTTP basic) or DOMAINGEN_DICOMWEB_TOKEN "
    "(bearer), else the settings file dicomweb.json in the configuration folder (docs/pacs.md)."
)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="URL", help="DICOMweb root, e.g. http://host:8042/dicom-web")
    parser.add_argument("--ca-file", metavar="PEM", help="trust this CA for the server's TLS certificate")


def add_parser(commands: argparse._SubParsersAction) -> None:
    pacs = commands.add_parser(
        "pacs",
        help="find studies on a DICOMweb server (PACS), get series from it, send DICOM-SEG files to it",
        description="Talk to a DICOMweb server (QIDO-RS, WADO-RS, STOW-RS). " + _CREDENTIALS,
    )
    actions = pacs.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    find = actions.add_parser(
        "find",
        help="list matching studies and their series, with UIDs",
        description="Print the studies matching every given criterion, each with its series (UID, modality, "
        "number of images, description). Wildcards: * in names and IDs. " + _CREDENTIALS,
    )
    _server_options(find)
    find.add_argument("--patient-id", metavar="ID")
    find.add_argument("--patient-name", metavar="NAME", help="e.g. 'Doe^J*'")
    find.add_argument("--study-date", metavar="RANGE", help="20260101, 20260101-20261231 or 20260101-")
    find.add_argument("--modality", metavar="MOD", help="a modality in the study, e.g. MR")
    find.add_argument("--accession", metavar="NUMBER", help="accession number")
    find.add_argument("--limit", type=int, metavar="N", help="at most N studies")
    find.set_defaults(func=run_find)
    get = actions.add_parser(
        "get",
        help="get series into a folder (their DICOM files) or one series as NIfTI",
        description="Retrieve the series (WADO-RS) into the DICOMweb cache, then write their DICOM files into "
        "--out (a folder; one sub-folder per series when there are several) or, for --out X.nii.gz, the series "
        "converted to NIfTI with its exact geometry. Without --out the series stay in the cache only. " + _CREDENTIALS,
    )
    _server_options(get)
    get.add_argument("--series", required=True, action="append", metavar="UID", help="SeriesInstanceUID (repeatable)")
    get.add_argument("--study", metavar="UID", help="their StudyInstanceUID (default: asked of the server)")
    get.add_argument("--out", metavar="DIR|X.nii.gz", help="folder for the DICOM files, or a NIfTI file")
    get.add_argument("--quiet", action="store_true", help="no progress lines")
    get.set_defaults(func=run_get)
    send = actions.add_parser(
        "send",
        help="store DICOM files (e.g. a DICOM-SEG from `domaingen export`) on the server",
        description="Store FILES on the server (STOW-RS) and print the stored instances' UIDs. " + _CREDENTIALS,
    )
    _server_options(send)
    send.add_argument("files", nargs="+", metavar="FILE", help="DICOM files (.dcm)")
    send.add_argument("--study", metavar="UID", help="store into this study only (the server refuses others)")
    send.set_defaults(func=run_send)


def run_find(args: argparse.Namespace) -> int:
    from ..io.dicomweb import find_series, find_studies, server_from

    server = server_from(args.server, args.ca_file)
    studies = find_studies(
        server,
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        study_date=args.study_date,
        modality=args.modality,
        accession=args.accession,
        limit=args.limit,
    )
    if not studies:
        print(f"no study on {server.url} matches")
        return 1
    for study in studies:
        print(
            f"study {study.uid}  patient {study.patient_id} ({study.patient_name or '?'})  date {study.date or '?'}  "
            f"accession {study.accession or '-'}  {study.description}".rstrip()
        )
        for series in find_series(server, study.uid):
            count = "?" if series.n_instances is None else series.n_instances
            print(f"  series {series.uid}  {series.modality:<4} {count:>5} images  {series.description}".rstrip())
    print(f"{len(studies)} studies on {server.url}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    from ..core.jobs.pacs import PacsGetJob, run_pacs_get
    from ..progress import run
    from ._report import ProgressPrinter

    job = PacsGetJob(args.server, tuple(args.series), args.out, args.study, args.ca_file)
    result = run(run_pacs_get(job), None if args.quiet else ProgressPrinter())
    print(*result.lines, sep="\n")
    return 0


def run_send(args: argparse.Namespace) -> int:
    from ..core.jobs.pacs import PacsSendJob, run_pacs_send
    from ..progress import run

    result = run(run_pacs_send(PacsSendJob(args.server, tuple(args.files), args.study, args.ca_file)))
    print(*result.lines, sep="\n")
    return 0
