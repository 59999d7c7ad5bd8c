"""``domaingen features``: frozen anatomix features of a NIfTI volume → a 4D NIfTI (channels last) with the
source affine."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ._options import add_feature_options, feature_settings, read_3d
from ._report import ProgressPrinter


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ..io.intensity import CT_WINDOWS

    feats = commands.add_parser(
        "features",
        help="extract frozen anatomix features of a NIfTI volume",
        description="Frozen anatomix features of IMAGE written as a 4D NIfTI (channels last) with IMAGE's affine.",
    )
    feats.add_argument("image", help="input volume (.nii / .nii.gz)")
    feats.add_argument("--out", required=True, help="output .nii.gz (4D, channels last)")
    add_feature_options(feats)
    feats.add_argument("--clip", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip to these percentiles first")
    feats.add_argument("--ct-window", choices=list(CT_WINDOWS), help="CT: clip to this Hounsfield window first")
    feats.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="output data type")
    feats.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.features import extract_features
    from ..io.nifti import write_nifti
    from ..progress import run

    volume = read_3d(args.image)
    settings = replace(
        feature_settings(args),
        clip_percentiles=tuple(args.clip) if args.clip else None,
        ct_window=args.ct_window,
        output_dtype=args.dtype,
    )
    result = run(extract_features(volume.data, settings), None if args.quiet else ProgressPrinter())
    path = write_nifti(args.out, result.features, source=volume.source)
    print(f"wrote {path}: {result.features.shape[0]} channels ({args.layer}), {result.describe()}")
    return 0
