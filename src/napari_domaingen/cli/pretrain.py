"""``domaingen pretrain-extractor``: pretrain a stable 3D feature extractor on synthetic label ensembles (anatomix's
recipe, small scale), through the one training loop (rules: docs/training.md)."""

from __future__ import annotations

import argparse

from ..core.pretrain import PretrainSettings
from ._options import number
from ._training import add_run_options, closing_lines, fit_and_report, loop_options, plan_run


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = PretrainSettings()
    pre = commands.add_parser(
        "pretrain-extractor",
        help="pretrain a stable 3D feature extractor on synthetic label ensembles (anatomix's recipe, small scale)",
        description="Pretrain an AnatomixUNet with anatomix's recipe at small scale: random label maps (warped "
        "Voronoi cells and ellipsoids, and MNI152 tissue crops with lesions), two random contrasts of each, and a "
        "voxel-wise supervised contrastive loss. The file is written atomically every --checkpoint-every steps "
        "(MODEL.history.csv beside it); Ctrl-C keeps the last one and --resume continues it exactly. The file "
        "loads like the anatomix weights: --weights OUT in the other commands. Rules: docs/training.md.",
    )
    add_run_options(pre, p, validation=None)
    number(pre, "--width", p.ngf, "channels of the first level (anatomix uses 16)")
    number(pre, "--crop", p.crop, "label-map side in voxels")
    number(pre, "--batch", p.batch_size, "label maps per step, two views each")
    number(pre, "--voxels", p.voxels, "voxels sampled per view for the loss")
    number(pre, "--tissue-fraction", p.tissue_fraction, "share of MNI152 tissue label maps")
    what = "whole-brain renders that re-estimate the batch-norm statistics at the end (0: keep the training crops')"
    number(pre, "--calibration-volumes", p.calibration_volumes, what, "N")
    pre.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.pretrain import pretrain
    from ..models.checkpoints import read_kind

    plan = plan_run(
        args,
        PretrainSettings().steps,
        lambda path: read_kind(path, "extractor"),
        "its weights and network size, with the settings given here",
    )
    settings = PretrainSettings(
        ngf=args.width,
        crop=args.crop,
        batch_size=args.batch,
        voxels=args.voxels,
        tissue_fraction=args.tissue_fraction,
        calibration_volumes=args.calibration_volumes,
        **loop_options(args, plan.steps),
    )
    settings.check()
    job = pretrain(plan.out, settings, resume=plan.resume, init=plan.init)
    result = fit_and_report("pretrain-extractor", job, plan, args.quiet, "run the same command with")
    if result is None:
        return 130
    if result.checkpoint is not None:
        config = read_kind(result.checkpoint, "extractor")["config"]
        print(
            f"wrote {result.checkpoint}: AnatomixUNet width {config['ngf']}, {config['out_channels']} feature channels"
        )
        for line in closing_lines(result):
            print(f"  {line}")
        print(
            f"  use it with: domaingen features IMAGE.nii.gz --weights {result.checkpoint} --out FEATURES.nii.gz "
            "(or the file field of the feature widgets)"
        )
    return 0
