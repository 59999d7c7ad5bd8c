"""``domaingen info``: header facts of a NIfTI file, a DICOM folder/zip (one block per series) or a DICOM file."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    inf = commands.add_parser("info", help="header facts of a NIfTI file, a DICOM folder/zip or a DICOM file")
    inf.add_argument("path", help=".nii/.nii.gz file, DICOM folder, .zip of DICOM files, or a DICOM file")
    inf.add_argument("--json", action="store_true", help="print the facts as JSON")
    inf.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..io.dicom import format_info, info
    from ..io.output_guard import require_input

    require_input(args.path, "input")
    facts = info(args.path)
    print(json.dumps(facts, indent=2, default=str) if args.json else format_info(facts))
    return 0
