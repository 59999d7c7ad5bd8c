"""``domaingen stats``: per-class voxel counts, volumes in mm³ and (with an image) intensity mean/std of a label
volume → CSV."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    st = commands.add_parser(
        "stats",
        help="per-class voxels, volume (mm³) and intensity statistics of a label volume → CSV",
        description="For every class of LABELS (a NIfTI file, class names from its .json/.txt sidecars, or a DICOM "
        "Segmentation): its label value, name, voxel count and volume in mm³ (count × the true voxel volume, right "
        "for anisotropic and oblique grids); with --image, the mean and standard deviation of that image's "
        "intensities in the class. Columns: value,name,voxels,volume_mm3,mean,std.",
    )
    st.add_argument("labels", metavar="LABELS", help="label volume (.nii, .nii.gz or a DICOM-SEG .dcm)")
    st.add_argument("--image", metavar="IMG", help="image on the labels' grid (NIfTI or DICOM series)")
    st.add_argument("--out", required=True, metavar="STATS.csv", help="output table")
    st.add_argument("--class-names", metavar="NAMES", help="comma-separated names for values 0, 1, 2, … (override)")
    st.add_argument("--background", action="store_true", help="also list value 0")
    st.set_defaults(func=run)


def class_names(text: str | None) -> dict[int, str]:
    """``"background,tumour"`` → ``{0: "background", 1: "tumour"}`` (empty entries skipped)."""
    if not text:
        return {}
    return {value: name.strip() for value, name in enumerate(text.split(",")) if name.strip()}


def settings_from_args(args: argparse.Namespace):
    """The typed statistics settings of the command's options."""
    from ..core.jobs import StatsSettings

    return StatsSettings(class_names(args.class_names), args.background)


def run(args: argparse.Namespace) -> int:
    from ..core.jobs import StatsJob, run_stats
    from ..progress import run

    result = run(run_stats(StatsJob(args.labels, args.out, args.image, settings_from_args(args))))
    print(*result.lines, sep="\n")
    return 0
