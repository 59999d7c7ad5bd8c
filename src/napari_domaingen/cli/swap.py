"""``domaingen swap``: DGM-DR anatomy/style swap of two 2D histology images: ANATOMY rendered with STYLE's stain
look."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.swap_model import SwapModel
    from ..core.swap_settings import SwapSettings
    from ..progress import Progress


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ..core.swap import DEFAULT_OVERLAP

    sw = commands.add_parser(
        "swap",
        help="anatomy/style swap (DGM-DR) of two 2D histology images",
        description="Render the tissue (anatomy) of ANATOMY with the stain look (style) of STYLE, with a DGM-DR "
        "anatomy/style model: the style of one patch of STYLE (--style-point) or its mean style (default). Any "
        "image `domaingen` reads (PNG, JPEG, TIFF incl. 16-bit, RGBA, grayscale, SVS). By default the image is "
        "rendered from two tilings whose patch grids are shifted by half a patch (no patch grid shows), the "
        "anatomy image's fine detail is carried over, and the mean style is taken over STYLE's tissue; --plain "
        "gives the DGM-DR paper's render. The output has ANATOMY's size (docs/swap.md).",
    )
    sw.add_argument("anatomy", metavar="ANATOMY", help="image whose tissue is kept")
    sw.add_argument("style", metavar="STYLE", help="image whose stain look is applied")
    sw.add_argument(
        "--out",
        required=True,
        metavar="OUT.png",
        help="output image (.png, .tif, .jpg); a name ending in .ome.zarr/.zarr (multiscale OME-Zarr) or "
        ".ome.tif/.ome.tiff (pyramidal OME-TIFF) swaps ANATOMY as a whole slide at full resolution, block by "
        "block with bounded memory (docs/large_slides.md)",
    )
    sw.add_argument(
        "--block",
        type=int,
        default=None,
        metavar="PX",
        help="whole-slide swap only: side of the blocks processed at a time, px, rounded up to a multiple of the "
        "model tile (default: 2048; each block also reads 128 px of context around it)",
    )
    sw.add_argument(
        "--model",
        default="default",
        metavar="PATH",
        help="anatomy/style model file (default: the shipped model, 'default')",
    )
    which = sw.add_mutually_exclusive_group()
    which.add_argument(
        "--style-point", metavar="Y,X", help="use the style of the patch under this pixel of STYLE (row, column)"
    )
    which.add_argument(
        "--style",
        dest="style_mode",
        choices=["mean"],
        help="mean: the mean style over STYLE's tissue (all of it with --no-tissue-style; default)",
    )
    sw.add_argument(
        "--seamless",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="blend two tilings with patch grids shifted by half a patch (default); --no-seamless: one tiling",
    )
    sw.add_argument(
        "--detail",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="carry ANATOMY's fine detail over (grey optical density; default); --no-detail: the model's own render",
    )
    sw.add_argument(
        "--tissue-style",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mean style over STYLE's tissue patches, not its glass (default); --no-tissue-style: over all patches",
    )
    sw.add_argument(
        "--glass",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ANATOMY's glass in STYLE's glass colour, only its tissue rendered (default); --no-glass: the model's "
        "render of the glass",
    )
    sw.add_argument(
        "--match-colours",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="map the rendered tissue's colours onto STYLE's tissue colours (CIELAB statistics; default); "
        "--no-match-colours: the model's colours",
    )
    sw.add_argument(
        "--plain",
        action="store_true",
        help="the DGM-DR paper's render: --no-seamless --no-detail --no-tissue-style --no-glass --no-match-colours",
    )
    sw.add_argument(
        "--overlap",
        type=float,
        default=None,
        help=f"tile overlap of the single tiling (--no-seamless / --plain only; default: {DEFAULT_OVERLAP:g})",
    )
    sw.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="encoder arithmetic (default auto: bf16 on CPUs with AVX512-BF16/AMX and bf16 GPUs, else fp32)",
    )
    sw.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    sw.add_argument(
        "--reconstructions",
        action="store_true",
        help="also write OUT_recon_anatomy / OUT_recon_style (each image from its own anatomy and style, "
        "with their PSNR) and OUT_reverse (STYLE's anatomy with ANATOMY's mean style)",
    )
    sw.set_defaults(func=run)


def _style_point(text: str) -> tuple[float, float]:
    """``"y,x"`` (pixels of the style image, row then column) → ``(y, x)``."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        y, x = float(parts[0]), float(parts[1])
        if not (math.isfinite(y) and math.isfinite(x)):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"--style-point expects 'y,x': the row and column of a pixel of the style image, e.g. "
            f"--style-point 120,80; got {text!r}"
        ) from None
    return y, x


def _load_swap(settings: SwapSettings) -> SwapModel:
    """The swap model of ``--model`` on ``--device``, with a hint at ``--model`` when the shipped one is missing."""
    from ..core.swap_job import load_model
    from ..core.swap_model import DEFAULT_MODEL

    try:
        return load_model(settings)
    except FileNotFoundError as exc:
        if settings.model == DEFAULT_MODEL:
            raise FileNotFoundError(f"{exc} (--model PATH)") from None
        raise


def settings_from_args(args: argparse.Namespace) -> SwapSettings:
    """The swap settings of the command line (``--plain``: no seamless tilings, detail, tissue style, glass or
    colour match)."""
    from ..core.swap_settings import DEFAULT_BLOCK, SwapSettings

    point = _style_point(args.style_point) if args.style_point else None
    plain = bool(args.plain)
    return SwapSettings(
        model=args.model,
        device=args.device,
        precision=args.precision,
        seamless=args.seamless and not plain,
        detail=args.detail and not plain,
        tissue_only=args.tissue_style and not plain,
        glass=args.glass and not plain,
        colours=args.match_colours and not plain,
        overlap=args.overlap,
        style="mean" if point is None else "point",
        point=point,
        block=DEFAULT_BLOCK if args.block is None else args.block,
        reconstructions=args.reconstructions,
    )


class _NotePrinter:
    """Prints the job's notes as they come; with ``progress`` (a whole slide) its other updates too."""

    def __init__(self, progress: bool) -> None:
        from ._report import ProgressPrinter

        self.progress = ProgressPrinter() if progress else None

    def __call__(self, update: Progress) -> None:
        if update.get("stage") == "note":
            print(update.get("message", ""), flush=True)
        elif self.progress is not None:
            self.progress(update)


def run(args: argparse.Namespace) -> int:
    from ..core.swap_files import IMAGE_SUFFIXES, swap_files
    from ..io.slide_write import slide_output_kind
    from ..progress import run as run_job

    slide_out = slide_output_kind(args.out) is not None
    if args.block is not None and not slide_out and Path(args.out).suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError("--block applies to a whole-slide swap: give --out a name ending in .ome.zarr or .ome.tif")
    settings = settings_from_args(args)
    job = swap_files(settings, args.anatomy, args.style, args.out, loader=_load_swap)
    result = run_job(job, _NotePrinter(slide_out))
    for line in result.lines:
        print(line)
    return 0
