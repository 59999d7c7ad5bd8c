"""``domaingen`` command line: the same core as the dock widgets, headless.

Subcommands:
  demo       run the product on the plugin's sample data (NIfTI + PNG previews); ``--gui`` opens napari instead.
  features   frozen anatomix features of a NIfTI volume → a 4D NIfTI (channels last) with the source affine.
  compare    feature stability of two co-registered volumes (e.g. FLAIR vs T1): CKA, cosine map, RGB renderings.
  info       header facts of a NIfTI file, a DICOM folder/zip (one block per series) or a DICOM file.
  convert    a DICOM series (folder, zip or one of its files) → NIfTI with the right affine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .io.errors import DomaingenIOError


def _demo(args: argparse.Namespace) -> int:
    if args.gui:
        from ._napari.gui import open_demo_viewer

        open_demo_viewer(run=True)
        return 0
    from .io import samples
    from .io.nifti import write_nifti
    from .io.preview import mid_slice_montage, save_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    print("Loading sample data (offline: nilearn's MNI152 template, scikit-image's IHC image) ...")
    volumes = {
        "mni152_t1": samples.mni152_t1(),
        "mni152_flair_like_synthetic": samples.mni152_flair_like(),
        "mni152_tissue_labels": samples.mni152_tissue_labels(),
    }
    for stem, volume in volumes.items():
        written.append(write_nifti(out / f"{stem}.nii.gz", volume.data, source=volume.source, is_label=volume.is_label))
        written.append(save_png(out / f"{stem}_preview.png", mid_slice_montage(volume)))
    for stem, image in {"ihc": samples.ihc(), "he_like_restain_synthetic": samples.he_like_restain()}.items():
        written.append(save_png(out / f"{stem}.png", image.data))
    written += _demo_features(volumes["mni152_t1"], out, args.weights)
    for path in written:
        print(f"  wrote {path}")
    print(f"Done: {len(written)} files in {out}")
    return 0


def _demo_features(volume, out: Path, weights: str) -> list[Path]:
    """Features + RGB preview of the sample T1, or a clear note when the weights cannot be had."""
    from .core.features import FeatureSettings, extract_features
    from .core.progress import run
    from .core.rgb import pca_rgb
    from .io.nifti import write_nifti
    from .io.preview import rgb_montage, save_png
    from .models.weights import WeightsUnavailableError, resolve_weights

    try:
        resolve_weights(weights)
    except (WeightsUnavailableError, FileNotFoundError) as exc:
        print(f"Skipping feature extraction: the weights '{weights}' are not available.\n  {exc}")
        return []
    print(f"Extracting features with '{weights}' ...")
    result = run(extract_features(volume.data, FeatureSettings(weights=weights)), _ProgressPrinter())
    print(f"  {result.describe()}")
    rgb = pca_rgb(result.features, volume.data)
    return [
        write_nifti(out / "mni152_t1_features.nii.gz", result.features, source=volume.source),
        save_png(out / "mni152_t1_features_rgb.png", rgb_montage(rgb, volume.spacing)),
    ]


class _ProgressPrinter:
    """Prints a job's progress dicts: every new stage, and inference progress in steps of 10%."""

    def __init__(self) -> None:
        self.last: tuple[str, int] | None = None

    def __call__(self, update: dict) -> None:
        fraction = float(update.get("fraction", 0.0))
        key = (str(update.get("message", "")) if update.get("stage") != "inference" else "inference", int(fraction * 10))
        if key != self.last:
            self.last = key
            print(f"  [{100 * fraction:3.0f}%] {update.get('message', '')}", flush=True)


def _read_3d(path: str):
    """A NIfTI volume that must be 3D (as an image, never as labels)."""
    from .io.nifti import read_nifti

    volume = read_nifti(path, as_label=False)
    if volume.data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {volume.data.shape}")
    return volume


def _features(args: argparse.Namespace) -> int:
    from .core.features import extract_features
    from .core.progress import run
    from .io.nifti import write_nifti

    volume = _read_3d(args.image)
    settings = replace(
        _settings_from(args),
        clip_percentiles=tuple(args.clip) if args.clip else None,
        ct_window=args.ct_window,
        output_dtype=args.dtype,
    )
    result = run(extract_features(volume.data, settings), None if args.quiet else _ProgressPrinter())
    path = write_nifti(args.out, result.features, source=volume.source)
    print(f"wrote {path}: {result.features.shape[0]} channels ({args.layer}), {result.describe()}")
    return 0


def _settings_from(args: argparse.Namespace):
    from .core.features import FeatureSettings

    return FeatureSettings(
        weights=args.weights,
        layer=args.layer,
        normalisation=args.normalisation,
        device=args.device,
        precision=args.precision,
        strategy=args.strategy,
        roi=args.roi,
        overlap=args.overlap,
    )


def _compare(args: argparse.Namespace) -> int:
    import json

    from .core.compare import compare_volumes
    from .core.progress import run
    from .core.stability import require_same_grid
    from .io.geometry import resample_to_grid
    from .io.nifti import strip_nifti_suffix, write_nifti
    from .io.preview import colour_map, rgb_montage, save_png

    volume_a, volume_b = _read_3d(args.a), _read_3d(args.b)
    data_b = volume_b.data
    if args.resample:
        data_b = resample_to_grid(data_b, volume_b.display_affine, volume_a.spatial_shape, volume_a.display_affine)
    else:
        require_same_grid(
            volume_a.spatial_shape, volume_a.display_affine, volume_b.spatial_shape, volume_b.display_affine,
            names=(str(args.a), str(args.b)),
        )
    progress = None if (args.quiet or args.json) else _ProgressPrinter()
    comparison = run(
        compare_volumes(volume_a.data, data_b, _settings_from(args), mode=args.mode, channels=tuple(args.channels)),
        progress,
    )
    numbers = comparison.summary.as_dict()
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
        summary_path.write_text(json.dumps({"a": str(args.a), "b": str(args.b), **numbers}, indent=2) + "\n")
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
            f"over {numbers['n_voxels']} foreground voxels"
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from .io.dicom import format_info, info

    facts = info(args.path)
    print(json.dumps(facts, indent=2, default=str) if args.json else format_info(facts))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .io.dicom import read_series
    from .io.nifti import write_nifti

    volume = read_series(args.dicom, uid=args.series)
    path = write_nifti(args.out, volume.data, source=volume.source)
    codes = "".join(volume.source.axcodes)
    spacing = " x ".join(f"{s:.3g}" for s in reversed(volume.spacing))
    print(f"wrote {path}: {volume.name}, {tuple(reversed(volume.data.shape))} voxels of {spacing} mm, {codes}")
    return 0


def _add_feature_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that extracts features."""
    from .core.features import LAYER_DESCRIPTIONS

    parser.add_argument("--weights", default="anatomix", help="registry name (anatomix, anatomix-dev) or a .pth path")
    parser.add_argument(
        "--layer", choices=list(LAYER_DESCRIPTIONS), default="final",
        help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()) + " (default: final)",
    )
    parser.add_argument("--normalisation", choices=["auto", "instance", "unit", "none"], default="auto",
                        help="auto: instance (per-channel z-score) for anatomix, unit (voxel-wise L2) for anatomix-dev")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 for anatomix where the hardware has fast bf16, else fp32")
    parser.add_argument("--strategy", choices=["auto", "whole", "sliding"], default="auto",
                        help="auto: whole volume when it fits half the free memory, else sliding window")
    parser.add_argument("--roi", type=int, default=128, help="sliding-window size in voxels (default: 128)")
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default: 0.25)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="domaingen",
        description="Domain-generalisation tools for medical images (anatomix features, MaskGen, DGM-DR swap).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser("demo", help="run the product on the plugin's own sample data")
    target = demo.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="write the results here (headless)")
    target.add_argument("--gui", action="store_true", help="open napari with the sample data and all dock widgets")
    demo.add_argument("--weights", default="anatomix", help="feature extractor: registry name or .pth (default: anatomix)")
    demo.set_defaults(func=_demo)

    from .io.intensity import CT_WINDOWS

    feats = commands.add_parser(
        "features",
        help="extract frozen anatomix features of a NIfTI volume",
        description="Frozen anatomix features of IMAGE written as a 4D NIfTI (channels last) with IMAGE's affine.",
    )
    feats.add_argument("image", help="input volume (.nii / .nii.gz)")
    feats.add_argument("--out", required=True, help="output .nii.gz (4D, channels last)")
    _add_feature_options(feats)
    feats.add_argument("--clip", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip to these percentiles first")
    feats.add_argument("--ct-window", choices=list(CT_WINDOWS), help="CT: clip to this Hounsfield window first")
    feats.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="output data type")
    feats.set_defaults(func=_features)

    comp = commands.add_parser(
        "compare",
        help="feature stability of two co-registered volumes (CKA, cosine map, RGB renderings)",
        description="Compare the anatomix features of two volumes of one subject on one grid (e.g. FLAIR vs T1): "
        "linear CKA of the features vs of the intensities, voxel-wise cosine similarity, RGB renderings that "
        "share A's colour projection.",
    )
    comp.add_argument("a", help="volume A (.nii/.nii.gz), the reference grid and colour basis")
    comp.add_argument("b", help="volume B, on A's grid (or use --resample)")
    _add_feature_options(comp)
    comp.add_argument("--mode", choices=["pca", "channels"], default="pca", help="colours: PCA of A or three channels")
    comp.add_argument("--channels", type=int, nargs=3, default=[0, 1, 2], metavar=("R", "G", "B"),
                      help="channels for --mode channels (default: 0 1 2)")
    comp.add_argument("--resample", action="store_true", help="resample B onto A's grid through the affines (linear)")
    comp.add_argument("--out", metavar="DIR", help="write RGB renderings, cosine map (NIfTI, A's affine), PNGs, summary.json")
    comp.add_argument("--json", action="store_true", help="print only the numbers, as JSON")
    comp.set_defaults(func=_compare)

    inf = commands.add_parser("info", help="header facts of a NIfTI file, a DICOM folder/zip or a DICOM file")
    inf.add_argument("path", help=".nii/.nii.gz file, DICOM folder, .zip of DICOM files, or a DICOM file")
    inf.add_argument("--json", action="store_true", help="print the facts as JSON")
    inf.set_defaults(func=_info)

    conv = commands.add_parser("convert", help="DICOM series → NIfTI with the right affine")
    conv.add_argument("dicom", help="DICOM folder, .zip, or one file of the series")
    conv.add_argument("--out", required=True, help="output .nii.gz")
    conv.add_argument("--series", metavar="UID", help="SeriesInstanceUID when the folder holds several series")
    conv.set_defaults(func=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DomaingenIOError, ValueError, OSError, RuntimeError) as exc:  # our errors name the file and the problem
        print(f"domaingen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
