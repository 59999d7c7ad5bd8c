"""``domaingen`` command line: the same core as the dock widgets, headless.

Subcommands:
  demo   load the plugin's sample data and write it (NIfTI + PNG previews); ``--gui`` opens napari instead.
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
    for path in written:
        print(f"  wrote {path}")
    print(f"Done: {len(written)} files in {out}")
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
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DomaingenIOError, ValueError, OSError) as exc:  # our errors name the file and the problem
        print(f"domaingen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
