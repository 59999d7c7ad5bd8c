"""``domaingen apply-transform``: move another volume (or labels) onto a reference grid through a transform that
``register`` wrote (or any ITK/ANTs linear file and displacement field)."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    app = commands.add_parser(
        "apply-transform",
        help="move a volume or labels onto a reference grid through a written transform",
        description="Apply a transform written by `domaingen register` (its output folder) or ITK/ANTs files "
        "(warp.nii.gz then affine.mat, in antsApplyTransforms' order) to MOVING, onto REFERENCE's grid.",
    )
    app.add_argument("moving", help="the volume to move (NIfTI or DICOM series; labels with --labels)")
    app.add_argument("--reference", required=True, help="the fixed volume whose grid the result is on")
    app.add_argument(
        "--transform", required=True, nargs="+", metavar="T", help="a register output folder, or transform files"
    )
    app.add_argument("--out", required=True, metavar="FILE", help="the moved volume (.nii.gz)")
    app.add_argument("--labels", action="store_true", help="MOVING is a label map: nearest neighbour")
    app.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.jobs.register import ApplyTransformJob, run_apply_transform
    from ..progress import run as run_job

    job = ApplyTransformJob(args.moving, args.reference, tuple(args.transform), args.out, args.labels)
    result = run_job(run_apply_transform(job))
    print("\n".join(result.lines))
    return 0
