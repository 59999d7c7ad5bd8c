"""``domaingen segment``: segment a NIfTI volume or DICOM series with a MaskGen/ERM model → labels (NIfTI with
class-name sidecars, or a DICOM Segmentation), probabilities and per-class statistics on the image's grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import choice, read_3d
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
    from ..core.label_stats import label_statistics, write_stats_csv
    from ..core.segment import SegmentSettings, segment
    from ..io.label_table import save_labels_nifti
    from ..io.nifti import is_nifti_path, write_nifti
    from ..progress import run

    as_seg = args.out.lower().endswith(".dcm")
    for path in filter(None, [None if as_seg else args.out, args.probabilities]):
        if not is_nifti_path(path):
            raise ValueError(f"{path}: the output file name must end in .nii or .nii.gz (or .dcm for DICOM-SEG)")
    if args.probabilities and Path(args.probabilities).resolve() == Path(args.out).resolve():
        raise ValueError("--out and --probabilities must be two different files")
    if args.stats and not args.stats.lower().endswith(".csv"):
        raise ValueError(f"{args.stats}: the statistics file name must end in .csv")
    volume = read_3d(args.image)
    series_uid = volume.source.dicom_series_uid if volume.source is not None else None
    if as_seg and series_uid is None:
        raise ValueError(
            f"{args.out}: a DICOM Segmentation needs a DICOM series as IMAGE ({args.image} is not one); write "
            ".nii.gz instead"
        )
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
    table = result.label_table(args.model, series_uid)
    if as_seg:
        from ..io.dicom_seg import write_dicom_seg

        written = [write_dicom_seg(args.out, result.labels, args.image, table, series_uid=series_uid)]
    else:
        written, notes = save_labels_nifti(args.out, result.labels, table, source=volume.source)
        for note in notes:
            print(f"note: {note}")
    print(f"wrote {', '.join(str(p) for p in written)}: {result.describe()}")
    names = zip(result.spec.label_values, result.spec.class_names)
    print("  label values: " + ", ".join(f"{value} = {name}" for value, name in names))
    if result.probabilities is not None:
        prob = write_nifti(args.probabilities, result.probabilities, source=volume.source)
        print(
            f"wrote {prob}: {result.probabilities.shape[0]} class probabilities (4D, channels last, in the order "
            "of the label values above)"
        )
    if args.stats:
        rows = label_statistics(result.labels, volume.display_affine, volume.data, table.names())
        print(f"wrote {write_stats_csv(args.stats, rows)}: per-class statistics of {len(rows)} classes")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
