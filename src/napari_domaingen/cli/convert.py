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
    from ..io.dicom import read_series
    from ..io.nifti import write_nifti

    volume = read_series(args.dicom, uid=args.series)
    path = write_nifti(args.out, volume.data, source=volume.source)
    codes = "".join(volume.source.axcodes)
    spacing = " x ".join(f"{s:.3g}" for s in reversed(volume.spacing))
    print(f"wrote {path}: {volume.name}, {tuple(reversed(volume.data.shape))} voxels of {spacing} mm, {codes}")
    return 0
