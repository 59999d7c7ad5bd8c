"""``domaingen train``: train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model on labelled
NIfTI volumes, through the one training loop (rules: docs/training.md)."""

from __future__ import annotations

import argparse

from ..core.maskgen_training import TrainSettings
from ..errors import DomaingenError
from ._training import add_run_options, closing_lines, fit_and_report, loop_options, plan_run


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ..core.features import LAYER_DESCRIPTIONS
    from ..core.maskgen import MASK_RATE_HELP

    d = TrainSettings()
    tr = commands.add_parser(
        "train",
        help="train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model",
        description="Train a MaskGen segmentation model (3D UNet on the image + frozen anatomix features, with view "
        "masking) or its ERM baseline (image only) on labelled NIfTI volumes. --image and --label are paired by "
        "order; each label file must be on its image's grid. The model file is written atomically every "
        "--checkpoint-every steps and at the end (MODEL.history.csv beside it; MODEL.best.pt with validation data); "
        "Ctrl-C keeps the last one, --resume continues it. Rules: docs/training.md.",
    )
    data = tr.add_argument_group("data")
    data.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="IMAGE.nii.gz",
        help="training image (repeat for more volumes)",
    )
    data.add_argument(
        "--label",
        action="append",
        required=True,
        metavar="LABELS.nii.gz",
        help="labels of the matching --image (integer values, 0 = background)",
    )
    data.add_argument("--val-image", action="append", metavar="IMAGE.nii.gz", help="validation image (repeatable)")
    data.add_argument(
        "--val-label", action="append", metavar="LABELS.nii.gz", help="labels of the matching --val-image"
    )
    data.add_argument(
        "--class-names",
        metavar="NAMES",
        help="comma-separated names of the label values in increasing order, background first "
        "(e.g. background,grey matter,white matter); default 'class <value>'",
    )
    data.add_argument(
        "--clip",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="clip intensities to these percentiles before min-max scaling (kept in the model)",
    )
    add_run_options(tr, d, validation="validation Dice (with --val-image)")
    model = tr.add_argument_group("model")
    model.add_argument("--baseline", choices=["erm"], help="train the ERM baseline (image only, no features)")
    model.add_argument(
        "--weights",
        default=d.weights,
        help="feature extractor: registry name (anatomix, anatomix-dev) or a .pth path (default: anatomix)",
    )
    model.add_argument(
        "--layer",
        choices=list(LAYER_DESCRIPTIONS),
        default=d.layer,
        help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()) + " (default: final)",
    )
    model.add_argument(
        "--mask-rate",
        type=float,
        default=d.mask_rate,
        metavar="P",
        help=MASK_RATE_HELP.replace("%", "%%") + f" (default: {d.mask_rate})",
    )
    model.add_argument(
        "--preset",
        choices=["auto", "paper", "cpu"],
        default=d.preset,
        help="UNet size: paper (base 20, 5 levels), cpu (base 8, 4 levels); auto: paper on a GPU, "
        "cpu otherwise (default: auto)",
    )
    opt = tr.add_argument_group("optimisation")
    opt.add_argument(
        "--crop",
        type=int,
        default=d.crop,
        help=f"training crop and inference window edge in voxels (default: {d.crop}; paper: 128)",
    )
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default: {d.batch_size} (paper: 4)")
    opt.add_argument("--no-augment", action="store_true", help="no augmentation (default: the paper's, p = 0.33 each)")
    opt.add_argument(
        "--no-flips", action="store_true", help="no flips / 90° rotations (for left/right-sensitive anatomy)"
    )
    opt.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=d.precision,
        help="UNet autocast: auto = bf16 on CUDA, fp32 elsewhere",
    )
    tr.set_defaults(func=run)


def _pairs(images: list[str] | None, labels: list[str] | None, image_flag: str, label_flag: str) -> list[tuple]:
    images, labels = images or [], labels or []
    if len(images) != len(labels):
        raise ValueError(
            f"{len(images)} {image_flag} but {len(labels)} {label_flag}: give one {label_flag} per {image_flag}, "
            "in the same order (they are paired by position)"
        )
    return list(zip(images, labels))


def _labelled(image_path: str, label_path: str, clip: tuple[float, float] | None):
    """A checked (image, labels) pair for training: labels must be on the image's grid (shape and affine)."""
    from ..core.segmentation_data import labelled_volume_from_files

    try:
        return labelled_volume_from_files(image_path, label_path, clip)
    except ValueError as exc:
        raise ValueError(f"{exc} (labels: {label_path})") from None


def run(args: argparse.Namespace) -> int:
    from ..core.maskgen import read_model_file
    from ..core.maskgen_training import train
    from ..models.weights import WeightsUnavailableError

    pairs = _pairs(args.image, args.label, "--image", "--label")
    val_pairs = _pairs(args.val_image, args.val_label, "--val-image", "--val-label")
    plan = plan_run(
        args,
        TrainSettings().steps,
        read_model_file,
        "its network, classes and feature extractor; the data, steps, lr and crop given here",
        inputs=[path for pair in (*pairs, *val_pairs) for path in pair],
    )
    clip = tuple(args.clip) if args.clip else None
    if plan.stored is not None:  # the model's own intensity scaling
        recorded = plan.stored["spec"].get("clip_percentiles")
        clip = tuple(float(c) for c in recorded) if recorded else None
    class_names = tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else None
    settings = TrainSettings(
        use_features=args.baseline is None,
        weights=args.weights,
        layer=args.layer,
        mask_rate=args.mask_rate,
        preset=args.preset,
        crop=args.crop,
        batch_size=args.batch_size,
        augment=not args.no_augment,
        flips=not args.no_flips,
        precision=args.precision,
        clip_percentiles=clip,
        class_names=class_names,
        **loop_options(args, plan.steps),
    )
    settings.check()
    print(f"Reading {len(pairs)} training and {len(val_pairs)} validation volume(s) ...", flush=True)
    volumes = [_labelled(image, label, clip) for image, label in pairs]
    validation = [_labelled(image, label, clip) for image, label in val_pairs]
    try:
        job = train(volumes, plan.out, settings, validation=validation, resume=plan.resume, init=plan.init)
        result = fit_and_report("train", job, plan, args.quiet, "run the same command (same --image/--label) with")
    except WeightsUnavailableError as exc:
        raise DomaingenError(
            f"{exc} MaskGen needs these weights; without them train the image-only ERM baseline (--baseline erm)."
        ) from None
    if result is None:
        return 130
    if result.checkpoint is not None:
        print(f"wrote {result.checkpoint}: {result.spec.describe()}")
        for line in closing_lines(result):
            print(f"  {line}")
        print(
            f"  segment with: domaingen segment IMAGE.nii.gz --model {result.best or result.checkpoint} "
            "--out SEG.nii.gz"
        )
    return 0
