"""``domaingen convert``: a DICOM series (folder, zip or one of its files) → NIfTI with the right affine."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    conv = commands.add_parser("convert", help="DICOM series → NIfTI with the right affine")
    conv.add_argument("dicom", help="DICOM folder, .zip, or one file of the series")
    conv.add_argument("--out", required=True, help="output .nii.gz")
    conv.add_argument("--series", metavar="UID", help="SeriesInstanceUID when the folder holds several series")
    conv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.jobs import ConvertJob, run_convert
    from ..progress import run

    result = run(run_convert(ConvertJob(args.dicom, args.out, args.series)))
    print(*result.lines, sep="\n")
    return 0
