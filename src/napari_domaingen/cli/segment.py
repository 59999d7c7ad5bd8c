"""``domaingen segment``: segment a NIfTI volume with a MaskGen/ERM model → labels (and probabilities) with the
image's affine."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import choice, read_3d
from ._report import ProgressPrinter


def add_parser(commands: argparse._SubParsersAction) -> None:
    seg = commands.add_parser(
        "segment",
        help="segment a NIfTI volume with a MaskGen/ERM model",
        description="Segment IMAGE with a model from `domaingen train`: labels (the training label values) written "
        "on IMAGE's grid with IMAGE's affine, qform and sform; optionally the class probabilities as a 4D NIfTI.",
    )
    seg.add_argument("image", help="input volume (.nii / .nii.gz)")
    seg.add_argument("--model", required=True, metavar="MODEL.pt", help="model file written by `domaingen train`")
    seg.add_argument("--out", required=True, metavar="SEG.nii.gz", help="output labels")
    seg.add_argument(
        "--probabilities",
        metavar="PROB.nii.gz",
        help="also write the softmax probabilities (4D, one channel per class, channels last)",
    )
    seg.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default: 0.5)")
    modes = (
        "shared: features of the whole volume once (fast); per-window: each window's own features, as in the "
        "MaskGen code; auto (default): shared when they fit in half the free memory"
    )
    choice(seg, "--feature-mode", ["auto", "shared", "per-window"], modes)
    ablate = "zero the image or the feature channels (MaskGen only) to see what the model relies on"
    choice(seg, "--ablate", ["none", "image", "features"], ablate)
    seg.add_argument(
        "--weights",
        metavar="PATH",
        help="the extractor file to use when the one recorded in the model is elsewhere (same weights)",
    )
    seg.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    seg.add_argument("--quiet", action="store_true", help="no progress lines")
    seg.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.progress import run
    from ..core.segment import SegmentSettings, segment
    from ..io.nifti import is_nifti_path, write_nifti

    for path in filter(None, [args.out, args.probabilities]):
        if not is_nifti_path(path):
            raise ValueError(f"{path}: the output file name must end in .nii or .nii.gz")
    if args.probabilities and Path(args.probabilities).resolve() == Path(args.out).resolve():
        raise ValueError("--out and --probabilities must be two different files")
    volume = read_3d(args.image)
    settings = SegmentSettings(
        overlap=args.overlap,
        feature_mode=args.feature_mode,
        ablation=args.ablate,
        probabilities=bool(args.probabilities),
        device=args.device,
        weights=args.weights,
    )
    result = run(
        segment(volume.data, args.model, settings, spacing=volume.spacing), None if args.quiet else ProgressPrinter()
    )
    path = write_nifti(args.out, result.labels, source=volume.source, is_label=True)
    print(f"wrote {path}: {result.describe()}")
    names = zip(result.spec.label_values, result.spec.class_names)
    print("  label values: " + ", ".join(f"{value} = {name}" for value, name in names))
    if result.probabilities is not None:
        prob = write_nifti(args.probabilities, result.probabilities, source=volume.source)
        print(
            f"wrote {prob}: {result.probabilities.shape[0]} class probabilities (4D, channels last, in the order "
            "of the label values above)"
        )
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
