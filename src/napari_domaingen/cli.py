"""``domaingen`` command line: the same core as the dock widgets, headless.

Subcommands:
  demo       run the product on the plugin's sample data (NIfTI + PNG previews); ``--gui`` opens napari instead.
  features   frozen anatomix features of a NIfTI volume → a 4D NIfTI (channels last) with the source affine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
    result = run(extract_features(volume.data, FeatureSettings(weights=weights)), _print_progress)
    print(f"  {result.strategy} volume, {result.precision}, {result.device}, {result.seconds:.1f} s")
    rgb = pca_rgb(result.features, volume.data)
    return [
        write_nifti(out / "mni152_t1_features.nii.gz", result.features, source=volume.source),
        save_png(out / "mni152_t1_features_rgb.png", rgb_montage(rgb, volume.spacing)),
    ]


def _print_progress(update: dict) -> None:
    if update.get("stage") != "inference" or update.get("fraction", 0) in (0.02,):
        print(f"  [{100 * update.get('fraction', 0):3.0f}%] {update.get('message', '')}", flush=True)


def _features(args: argparse.Namespace) -> int:
    from .core.features import FeatureSettings, extract_features
    from .core.progress import run
    from .io.nifti import read_nifti, write_nifti

    volume = read_nifti(args.image, as_label=False)
    if volume.data.ndim != 3:
        raise ValueError(f"{args.image}: expected a 3D volume, got shape {volume.data.shape}")
    settings = FeatureSettings(
        weights=args.weights,
        layer=args.layer,
        normalisation=args.normalisation,
        clip_percentiles=tuple(args.clip) if args.clip else None,
        ct_window=args.ct_window,
        device=args.device,
        precision=args.precision,
        strategy=args.strategy,
        roi=args.roi,
        overlap=args.overlap,
        output_dtype=args.dtype,
    )
    result = run(extract_features(volume.data, settings), None if args.quiet else _print_progress)
    path = write_nifti(args.out, result.features, source=volume.source)
    print(
        f"wrote {path}: {result.features.shape[0]} channels ({args.layer}, {result.normalisation} normalisation), "
        f"{result.strategy} volume, {result.precision} on {result.device}, {result.seconds:.1f} s"
    )
    return 0


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

    from .core.features import CT_WINDOWS, LAYER_DESCRIPTIONS

    feats = commands.add_parser(
        "features",
        help="extract frozen anatomix features of a NIfTI volume",
        description="Frozen anatomix features of IMAGE written as a 4D NIfTI (channels last) with IMAGE's affine.",
    )
    feats.add_argument("image", help="input volume (.nii / .nii.gz)")
    feats.add_argument("--out", required=True, help="output .nii.gz (4D, channels last)")
    feats.add_argument("--weights", default="anatomix", help="registry name (anatomix, anatomix-dev) or a .pth path")
    feats.add_argument(
        "--layer", choices=list(LAYER_DESCRIPTIONS), default="final",
        help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()) + " (default: final)",
    )
    feats.add_argument("--normalisation", choices=["auto", "instance", "unit", "none"], default="auto",
                       help="auto: instance (per-channel z-score) for anatomix, unit (voxel-wise L2) for anatomix-dev")
    feats.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    feats.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="auto: bf16 for anatomix where the hardware has fast bf16, else fp32")
    feats.add_argument("--strategy", choices=["auto", "whole", "sliding"], default="auto",
                       help="auto: whole volume when it fits half the free memory, else sliding window")
    feats.add_argument("--roi", type=int, default=128, help="sliding-window size in voxels (default: 128)")
    feats.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default: 0.25)")
    feats.add_argument("--clip", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip to these percentiles first")
    feats.add_argument("--ct-window", choices=list(CT_WINDOWS), help="CT: clip to this Hounsfield window first")
    feats.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="output data type")
    feats.add_argument("--quiet", action="store_true", help="no progress lines")
    feats.set_defaults(func=_features)
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
