"""``domaingen`` command line: the same core as the dock widgets, headless. One module per command, each with
``add_parser(commands)`` and ``run(args) -> exit status``; output and errors go through :mod:`._report`.

Commands:
  demo       run the product on the plugin's sample data (NIfTI + PNG previews, a short MaskGen/ERM training and
             segmentation, an anatomy/style swap of the histology pair); ``--gui`` opens napari instead.
  train      train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model on labelled NIfTI volumes.
  segment    segment a NIfTI volume with such a model → labels (and probabilities) with the image's affine.
  features   frozen anatomix features of a NIfTI volume → a 4D NIfTI (channels last) with the source affine.
  compare    feature stability of two co-registered volumes (e.g. FLAIR vs T1): CKA, cosine map, RGB renderings.
  register   register a moving volume onto a fixed one (rigid, affine, deformable) on anatomix/MIND-SSC features.
  apply-transform
             move another volume or labels onto the fixed grid through a written transform.
  stats      per-class voxels, volume (mm³) and intensity mean/std of a label volume → CSV.
  export     labels on a DICOM series → a DICOM Segmentation (DICOM-SEG) referencing it, for PACS.
  pacs       find studies on a DICOMweb server, get series from it, send DICOM-SEG files to it.
  cohort     list a cohort folder or CSV manifest: cases, contrasts, grids, problems (nothing processed).
  batch      features, segment, compare or register over every case of a cohort or PACS query on Dask.
  info       header facts of a NIfTI file, a DICOM folder/zip (one block per series) or a DICOM file.
  convert    a DICOM series (folder, zip or one of its files) → NIfTI with the right affine.
  swap       DGM-DR anatomy/style swap of two 2D histology images: ANATOMY rendered with STYLE's stain look.
  swap-train train, fine-tune or resume a DGM-DR anatomy/style model on 2D histology images.
  pretrain-extractor
             pretrain a stable 3D feature extractor on synthetic label ensembles (anatomix's recipe, small).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import DomaingenError
from . import (
    apply_transform,
    batch,
    cohort,
    compare,
    convert,
    demo,
    export,
    features,
    info,
    pacs,
    pretrain,
    register,
    segment,
    stats,
    swap,
    swap_train,
    train,
)
from ._report import report_error, report_interrupted

__all__ = ["COMMANDS", "build_parser", "main"]

#: The command modules, in the order ``domaingen --help`` lists them.
COMMANDS = (
    demo,
    train,
    segment,
    stats,
    export,
    pacs,
    swap,
    swap_train,
    pretrain,
    features,
    compare,
    register,
    apply_transform,
    cohort,
    batch,
    info,
    convert,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="domaingen",
        description="Domain-generalisation tools for medical images (anatomix features, MaskGen, DGM-DR swap).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for an error, with one line saying what and where; 130 after
    Ctrl-C, with one line)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "forwarded", False):  # only `batch` passes options on (to its single-case command)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.options = extra
    try:
        return int(args.func(args) or 0)
    except (DomaingenError, ValueError, OSError) as error:  # our errors name the file and the problem
        return report_error(args.command, error)
    except KeyboardInterrupt:  # Ctrl-C: every output is written atomically, so none is half-written
        return report_interrupted(args.command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
