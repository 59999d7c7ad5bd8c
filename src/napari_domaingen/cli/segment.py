"""``domaingen segment``: segment a NIfTI volume or DICOM series with a MaskGen/ERM model → labels (NIfTI with
class-name sidecars, or a DICOM Segmentation), probabilities and per-class statistics on the image's grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import choice
from ._report import ProgressPrinter


def add_parser(commands: argparse._SubParsersAction) -> None:
    seg = commands.add_parser(
        "segment",
        help="segment a NIfTI volume or DICOM series with a MaskGen/ERM model",
        description="Segment IMAGE with a model from `domaingen train`: labels (the training label values) written "
        "on IMAGE's grid with IMAGE's affine, qform and sform, with the class names and colours in SEG.json and "
        "the ITK-SNAP SEG.txt beside them — or, when IMAGE is a DICOM series and --out ends in .dcm, a DICOM "
        "Segmentation referencing the series; optionally the class probabilities as a 4D NIfTI and per-class "
        "statistics as CSV.",
    )
    seg.add_argument("image", help="input volume (.nii / .nii.gz) or DICOM series (folder, zip or one of its files)")
    seg.add_argument("--model", required=True, metavar="MODEL.pt", help="model file written by `domaingen train`")
    seg.add_argument(
        "--out", required=True, metavar="SEG.nii.gz", help="output labels (.nii/.nii.gz, or .dcm for DICOM input)"
    )
    seg.add_argument(
        "--stats", metavar="STATS.csv", help="also write per-class voxels, volume (mm³) and IMAGE's mean/std"
    )
    seg.add_argument(
        "--probabilities",
        metavar="PROB.nii.gz",
        help="also write the softmax probabilities (4D, one channel per class, channels last)",
    )
    windows = (
        "crop (default): slide the model's training crop, as the MaskGen code does; whole: ERM models only, the "
        "whole volume at once (or large windows when it does not fit half the free memory), about 3–4× faster, labels "
        "differ somewhat from the crop's (docs/maskgen.md#segmenting)"
    )
    choice(seg, "--window", ["crop", "whole"], windows)
    seg.add_argument("--overlap", type=float, default=0.5, help="overlap of the training-crop windows (default: 0.5)")
    precisions = "the network's arithmetic: auto (default: bf16 where the CPU or GPU runs it fast), fp32 or bf16"
    choice(seg, "--precision", ["auto", "fp32", "bf16"], precisions)
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


def settings_from_args(args: argparse.Namespace):
    """The typed segmentation options of the command's options (also what ``batch segment`` forwards)."""
    from ..core.jobs import SegmentOptions, SegmentSettings

    settings = SegmentSettings(
        overlap=args.overlap,
        feature_mode=args.feature_mode,
        ablation=args.ablate,
        device=args.device,
        weights=args.weights,
        window=args.window,
        precision=args.precision,
    )
    return SegmentOptions(Path(args.model), settings)


def run(args: argparse.Namespace) -> int:
    from ..core.jobs import SegmentJob, run_segment
    from ..progress import run

    job = SegmentJob(args.image, args.out, settings_from_args(args), stats=args.stats, probabilities=args.probabilities)
    result = run(run_segment(job), None if args.quiet else ProgressPrinter())
    print(*result.lines, sep="\n")
    return 0
