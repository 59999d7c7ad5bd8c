"""``domaingen compare``: feature stability of two co-registered volumes (e.g. FLAIR vs T1): CKA, cosine map, RGB
renderings."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._options import add_feature_options, feature_settings, read_3d
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
        "--out", metavar="DIR", help="write RGB renderings, cosine map (NIfTI, A's affine), PNGs, summary.json"
    )
    comp.add_argument("--json", action="store_true", help="print only the numbers, as JSON")
    comp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..core.compare import compare_volumes
    from ..core.stability import require_same_grid
    from ..io.atomic import atomic_write_text
    from ..io.geometry import resample_to_grid
    from ..io.nifti import strip_nifti_suffix, write_nifti
    from ..io.preview import colour_map, rgb_montage, save_png
    from ..progress import run

    volume_a, volume_b = read_3d(args.a), read_3d(args.b)
    data_b = volume_b.data
    if args.resample:
        data_b = resample_to_grid(data_b, volume_b.display_affine, volume_a.spatial_shape, volume_a.display_affine)
    else:
        require_same_grid(
            volume_a.spatial_shape,
            volume_a.display_affine,
            volume_b.spatial_shape,
            volume_b.display_affine,
            names=(str(args.a), str(args.b)),
        )
    progress = None if (args.quiet or args.json) else ProgressPrinter()
    comparison = run(
        compare_volumes(volume_a.data, data_b, feature_settings(args), mode=args.mode, channels=tuple(args.channels)),
        progress,
    )
    numbers = comparison.summary.as_dict()
    numbers["nan_voxels_a"], numbers["nan_voxels_b"] = comparison.non_finite
    if args.out:
        out = Path(args.out)
        stem_a, stem_b = strip_nifti_suffix(args.a), strip_nifti_suffix(args.b)
        source = volume_a.source
        cosine_rgb = colour_map(comparison.cosine, -1.0, 1.0)
        cosine_rgb[~comparison.mask] = 0  # background black, as in the RGB renderings
        written = [
            write_nifti(out / f"{stem_a}_features_rgb.nii.gz", np.moveaxis(comparison.rgb_a, -1, 0), source=source),
            write_nifti(out / f"{stem_b}_features_rgb.nii.gz", np.moveaxis(comparison.rgb_b, -1, 0), source=source),
            write_nifti(out / "cosine_similarity.nii.gz", comparison.cosine, source=source),
            save_png(out / f"{stem_a}_features_rgb.png", rgb_montage(comparison.rgb_a, volume_a.spacing)),
            save_png(out / f"{stem_b}_features_rgb.png", rgb_montage(comparison.rgb_b, volume_a.spacing)),
            save_png(out / "cosine_similarity.png", rgb_montage(cosine_rgb, volume_a.spacing)),
        ]
        summary_path = out / "summary.json"
        atomic_write_text(summary_path, json.dumps({"a": str(args.a), "b": str(args.b), **numbers}, indent=2) + "\n")
        written.append(summary_path)
        if not args.json:
            for path in written:
                print(f"  wrote {path}")
    if args.json:
        print(json.dumps(numbers))
    else:
        print(
            f"feature CKA {numbers['cka_features']:.3f} | intensity CKA {numbers['cka_intensity']:.3f} "
            f"(3x3x3 patches {numbers['cka_intensity_patch']:.3f}) | mean cosine {numbers['mean_cosine']:.3f} "
            f"over {numbers['n_voxels']:,} voxels sampled from {numbers['foreground_voxels']:,} foreground voxels"
        )
        left_out = [
            f"{n:,} NaN/inf voxels of {name}"
            for name, n in ((args.a, numbers["nan_voxels_a"]), (args.b, numbers["nan_voxels_b"]))
            if n
        ]
        if left_out:
            print(f"  left out: {'; '.join(left_out)}")
    return 0
