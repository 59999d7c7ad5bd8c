"""``domaingen export``: a label volume on a DICOM series → a DICOM Segmentation referencing that series."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    ex = commands.add_parser(
        "export",
        help="labels on a DICOM series → DICOM Segmentation (DICOM-SEG) for PACS",
        description="Write LABELS (a NIfTI label volume on the grid of the DICOM series at --reference, e.g. from "
        "`domaingen segment` or napari) as a BINARY DICOM Segmentation that references that series and all its "
        "instances: one segment per label value with its class name (from --class-names, else LABELS' .json/.txt "
        "sidecars, else 'class <value>'), a SNOMED category/type, its colour, and the algorithm that made it (the "
        "model and its SHA-256 recorded by `domaingen segment`) or MANUAL.",
    )
    ex.add_argument("labels", metavar="LABELS", help="label volume (.nii, .nii.gz)")
    ex.add_argument("--reference", required=True, metavar="DICOM_DIR", help="the DICOM series the labels are on")
    ex.add_argument("--out", required=True, metavar="SEG.dcm", help="output DICOM Segmentation")
    ex.add_argument(
        "--class-names", metavar="NAMES", help="comma-separated names for values 0, 1, 2, … (e.g. background,tumour)"
    )
    ex.add_argument("--series", metavar="UID", help="SeriesInstanceUID, when DICOM_DIR holds several series")
    ex.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """The typed export settings of the command's options."""
    from ..core.jobs import ExportSettings
    from .stats import class_names

    return ExportSettings(class_names(args.class_names), args.series)


def run(args: argparse.Namespace) -> int:
    from ..core.jobs import ExportJob, run_export
    from ..progress import run

    result = run(run_export(ExportJob(args.labels, args.reference, args.out, settings_from_args(args))))
    print(*result.lines, sep="\n")
    return 0
