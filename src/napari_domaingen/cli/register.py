"""``domaingen register``: register a moving volume onto a fixed one (rigid, affine, deformable) on contrast-stable
features with FireANTs; writes the moved image and labels on the fixed grid, the transform for ANTs/SimpleITK,
and ``metrics.csv``."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ..core.register import FEATURE_CHOICES, STAGES

    reg = commands.add_parser(
        "register",
        help="register MOVING onto FIXED (rigid, affine, deformable) on contrast-stable features",
        description="Register a moving volume onto a fixed one in scanner (physical) space: rigid and affine on "
        "the intensities' mutual information, deformable on anatomix and/or MIND-SSC features (FireANTs). Writes "
        "the moved image (and labels) on FIXED's grid, the transform (affine.mat, warp.nii.gz and their inverses, "
        "for antsApplyTransforms or SimpleITK) and metrics.csv into --out.",
    )
    reg.add_argument("fixed", help="the fixed volume (NIfTI or DICOM series): the grid the results are on")
    reg.add_argument("moving", help="the moving volume (NIfTI or DICOM series)")
    reg.add_argument("--out", metavar="DIR", required=True, help="output folder")
    reg.add_argument("--moving-labels", metavar="L", help="labels on MOVING's grid, moved with it (nearest neighbour)")
    reg.add_argument("--fixed-labels", metavar="L", help="labels on FIXED's grid: Dice per class in metrics.csv")
    reg.add_argument("--fixed-mask", metavar="M", help="region of FIXED to register (non-zero; default: foreground)")
    reg.add_argument("--moving-mask", metavar="M", help="region of MOVING to register (default: its foreground)")
    reg.add_argument(
        "--transform",
        default=",".join(STAGES),
        metavar="STAGES",
        help=f"comma-separated stages among {', '.join(STAGES)} (default: all three)",
    )
    reg.add_argument(
        "--features",
        choices=FEATURE_CHOICES,
        default="auto",
        help="features of the deformable stage (default auto: anatomix+mindssc when the weights are on this "
        "machine, else mindssc)",
    )
    reg.add_argument("--weights", default="anatomix", help="anatomix weights: registry name or .pth file")
    reg.add_argument("--grid", type=float, default=2.0, metavar="MM", help="registration grid voxel size (default 2)")
    reg.add_argument(
        "--iterations",
        metavar="N,N,N",
        help="deformable iterations per scale, coarse to fine (default 200,100,50)",
    )
    reg.add_argument(
        "--linear-iterations",
        metavar="N,N",
        help="rigid and affine iterations per scale, coarse to fine (default 200,100)",
    )
    reg.add_argument("--no-masks", action="store_true", help="use whole volumes, not their foregrounds' boxes")
    reg.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    reg.add_argument("--quiet", action="store_true", help="no progress lines")
    reg.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """The typed settings of the command's options."""
    from ..core.register import RegisterSettings

    extra = {}
    for option, name in (("iterations", "deformable_iterations"), ("linear_iterations", "linear_iterations")):
        value = getattr(args, option)
        if value:
            try:
                extra[name] = tuple(int(v) for v in value.split(","))
            except ValueError:
                flag = "--" + option.replace("_", "-")
                raise ValueError(f"{flag}: comma-separated whole numbers, got {value!r}") from None
    return RegisterSettings(
        stages=tuple(s for s in args.transform.split(",") if s.strip()),
        features=args.features,
        weights=args.weights,
        grid_mm=args.grid,
        masks=not args.no_masks,
        device=args.device,
        **extra,
    )


def run(args: argparse.Namespace) -> int:
    from ..core.jobs.register import RegisterJob, run_register
    from ..progress import run as run_job
    from ._report import ProgressPrinter

    settings = settings_from_args(args)
    job = RegisterJob(
        args.fixed,
        args.moving,
        args.out,
        args.moving_labels,
        args.fixed_labels,
        settings,
        args.fixed_mask,
        args.moving_mask,
    )
    result = run_job(run_register(job), None if args.quiet else ProgressPrinter())
    print("\n".join(result.lines))
    return 0
