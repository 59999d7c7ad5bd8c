"""``domaingen features``: frozen anatomix features of a NIfTI volume → a 4D NIfTI (channels last) with the
source affine."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ._options import add_feature_options, feature_settings
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


def settings_from_args(args: argparse.Namespace):
    """The typed feature settings of the command's options (also what ``batch features`` forwards)."""
    return replace(
        feature_settings(args),
        clip_percentiles=tuple(args.clip) if args.clip else None,
        ct_window=args.ct_window,
        output_dtype=args.dtype,
    )


def run(args: argparse.Namespace) -> int:
    from ..core.jobs import FeaturesJob, run_features
    from ..progress import run

    job = FeaturesJob(args.image, args.out, settings_from_args(args))
    result = run(run_features(job), None if args.quiet else ProgressPrinter())
    print(*result.lines, sep="\n")
    return 0
