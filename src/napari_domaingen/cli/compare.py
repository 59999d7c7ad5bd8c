"""``domaingen compare``: feature stability of two co-registered volumes (e.g. FLAIR vs T1): CKA, cosine map, RGB
renderings."""

from __future__ import annotations

import argparse

from ._options import add_feature_options, feature_settings
from ._report import ProgressPrinter


def add_parser(commands: argparse._SubParsersAction) -> None:
    comp = commands.add_parser(
        "compare",
        help="feature stability of two co-registered volumes (CKA, cosine map, RGB renderings)",
        description="Compare the anatomix features of two volumes of one subject on one grid (e.g. FLAIR vs T1): "
        "linear CKA of the features vs of the intensities, voxel-wise cosine similarity, RGB renderings that "
        "share A's colour projection.",
    )
    comp.add_argument("a", help="volume A (.nii/.nii.gz), the reference grid and colour basis")
    comp.add_argument("b", help="volume B, on A's grid (or use --resample)")
    add_feature_options(comp)
    comp.add_argument("--mode", choices=["pca", "channels"], default="pca", help="colours: PCA of A or three channels")
    comp.add_argument(
        "--channels",
        type=int,
        nargs=3,
        default=[0, 1, 2],
        metavar=("R", "G", "B"),
        help="channels for --mode channels (default: 0 1 2)",
    )
    comp.add_argument("--resample", action="store_true", help="resample B onto A's grid through the affines (linear)")
    comp.add_argument(
        "--register",
        nargs="?",
        const="rigid,affine",
        metavar="STAGES",
        help="register B onto A first (default stages: rigid,affine; add deformable for a non-linear one); the "
        "summary says which transform was used",
    )
    comp.add_argument(
        "--out", metavar="DIR", help="write RGB renderings, cosine map (NIfTI, A's affine), PNGs, summary.json"
    )
    comp.add_argument("--json", action="store_true", help="print only the numbers, as JSON")
    comp.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """The typed compare settings of the command's options (also what ``batch compare`` forwards)."""
    from ..core.jobs import CompareSettings

    register = tuple(s for s in (getattr(args, "register", None) or "").split(",") if s.strip())
    return CompareSettings(feature_settings(args), args.mode, tuple(args.channels), args.resample, register)


def run(args: argparse.Namespace) -> int:
    import json

    from ..core.jobs import CompareJob, run_compare
    from ..progress import run

    job = CompareJob(args.a, args.b, args.out, settings_from_args(args))
    result = run(run_compare(job), None if (args.quiet or args.json) else ProgressPrinter())
    print(json.dumps(result.numbers) if args.json else "\n".join(result.lines))
    return 0
