"""``domaingen swap``: DGM-DR anatomy/style swap of two 2D histology images: ANATOMY rendered with STYLE's stain
look."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


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
        "--plain",
        action="store_true",
        help="the DGM-DR paper's render: --no-seamless --no-detail --no-tissue-style",
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


#: Output file types of ``swap`` (written by scikit-image; lossless except JPEG).
_SWAP_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


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


def _load_swap(model: str, device: str):
    """The swap model of ``--model`` on ``device``, with a hint at ``--model`` when the shipped one is missing."""
    from ..core.device import resolve_device
    from ..core.swap_model import DEFAULT_MODEL, load_swap_model

    try:
        return load_swap_model(model, resolve_device(device))
    except FileNotFoundError as exc:
        if model == DEFAULT_MODEL:
            raise FileNotFoundError(f"{exc} (--model PATH)") from None
        raise


def _refuse_slide(anatomy: str, out: Path) -> None:
    """A lazily readable slide larger than the in-memory budget needs a whole-slide output."""
    from ..io.histology import DEFAULT_MAX_BYTES
    from ..io.slide import open_lazy_tiff, open_slide

    path = Path(anatomy)
    slide = open_slide(path) if path.is_dir() else open_lazy_tiff(path)
    if slide is None:
        return
    slide.close()
    whole_slide = "swap it block by block at full resolution with an --out ending in .ome.zarr or .ome.tif"
    if path.is_dir():
        raise ValueError(f"{anatomy} is an OME-Zarr slide: {whole_slide} (not {out.name})")
    if slide.nbytes > DEFAULT_MAX_BYTES:
        height, width = slide.shape
        raise ValueError(
            f"{anatomy} is a slide of {height} × {width} px ({slide.nbytes / 2**20:.0f} MiB as RGB), too large to "
            f"swap in memory ({DEFAULT_MAX_BYTES / 2**20:.0f} MiB): {whole_slide} (not {out.name})"
        )


def run(args: argparse.Namespace) -> int:
    import time

    from ..core.swap import DEFAULT_OVERLAP, encode, mean_style, point_style, reconstruct, render
    from ..io.histology import read_histology
    from ..io.preview import save_png
    from ..io.slide_write import slide_output_kind

    out = Path(args.out)
    slide_out = slide_output_kind(out) is not None
    if out.suffix.lower() not in _SWAP_SUFFIXES and not slide_out:
        raise ValueError(
            f"{out}: the output file name must end in {', '.join(_SWAP_SUFFIXES)} (or .ome.zarr, .zarr, .ome.tif, "
            ".ome.tiff for a whole slide swapped block by block)"
        )
    if out.resolve() in {Path(args.anatomy).resolve(), Path(args.style).resolve()}:
        raise ValueError(f"{out}: --out must not overwrite an input image")
    if args.block is not None and not slide_out:
        raise ValueError("--block applies to a whole-slide swap: give --out a name ending in .ome.zarr or .ome.tif")
    point = _style_point(args.style_point) if args.style_point else None
    if args.plain:
        args.seamless = args.detail = args.tissue_style = False
    if args.overlap is not None and args.seamless:
        raise ValueError("--overlap sets the single tiling's overlap: add --no-seamless (or --plain)")
    overlap = DEFAULT_OVERLAP if args.overlap is None else args.overlap
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap:g}")
    if slide_out:
        from ._swap_slide import run_slide

        return run_slide(args, out, point, overlap)
    _refuse_slide(args.anatomy, out)
    images = {}
    for role, path in (("anatomy", args.anatomy), ("style", args.style)):
        image = read_histology(path)
        if image.downsamples[0] != 1:
            print(
                f"note: {path} is too large to load whole; using it reduced {image.downsamples[0]:g}× "
                f"({image.data.shape[0]} × {image.data.shape[1]} px)"
            )
        images[role] = image.data
    if point is not None:
        height, width = images["style"].shape[:2]
        if not (0 <= point[0] < height and 0 <= point[1] < width):
            raise ValueError(
                f"--style-point {point[0]:g},{point[1]:g} lies outside the style image {args.style} "
                f"({height} × {width} px; y must be in [0, {height}), x in [0, {width}))"
            )
    model = _load_swap(args.model, args.device)
    patch = model.config.patch_size
    for role, path in (("anatomy", args.anatomy), ("style", args.style)):
        height, width = images[role].shape[:2]
        if height < patch or width < patch:
            raise ValueError(
                f"{path}: the {role} image ({height} × {width} px) is smaller than one "
                f"{patch} × {patch} patch of the model {model.name}"
            )
    print(f"Model: {model.describe()}")
    big = max(image.shape[0] * image.shape[1] for image in images.values())
    if big > 4 * 2**20:
        print(
            f"Encoding images of up to {big / 1e6:.0f} Mpx in {model.config.img_size} px tiles: this takes a while ...",
            flush=True,
        )
    start = time.perf_counter()
    options = {"precision": args.precision}
    anatomy = encode(
        model, images["anatomy"], overlap, name=f"anatomy image {args.anatomy}", seamless=args.seamless, **options
    )
    style_encoded = None
    if point is None or args.reconstructions:  # a mean style alone needs no seamless tilings of STYLE
        tiling = args.seamless and args.reconstructions
        style_encoded = encode(
            model, images["style"], overlap, name=f"style image {args.style}", seamless=tiling, **options
        )
    if point is None:
        style = mean_style(style_encoded, tissue_only=args.tissue_style)
        how = f"the mean style of {args.style}'s {'tissue' if args.tissue_style else 'patches'}"
    else:
        style = point_style(model, images["style"], *point, **options)
        how = f"the style of the patch at (y {point[0]:g}, x {point[1]:g}) of {args.style}"
    written = [save_png(out, render(model, anatomy, style, detail=args.detail))]
    rendering = f"{'seamless' if args.seamless else f'one tiling, overlap {overlap:g}'}, "
    rendering += f"{'detail carried over' if args.detail else 'no detail carry-over'}, {anatomy.precision}"
    print(f"wrote {out}: the anatomy of {args.anatomy} with {how} ({rendering}; {time.perf_counter() - start:.2f} s)")
    if args.reconstructions:
        from skimage.metrics import peak_signal_noise_ratio

        stem = out.with_suffix("")
        for label, path, encoded in (("anatomy", args.anatomy, anatomy), ("style", args.style, style_encoded)):
            recon = reconstruct(model, encoded)
            target = out.with_name(f"{stem.name}_recon_{label}{out.suffix}")
            written.append(save_png(target, recon))
            psnr = peak_signal_noise_ratio(images[label], recon, data_range=255)
            print(f"wrote {target}: {path} re-synthesized from its own anatomy and style (PSNR {psnr:.2f} dB)")
        reverse = out.with_name(f"{stem.name}_reverse{out.suffix}")
        reverse_style = mean_style(anatomy, tissue_only=args.tissue_style)
        written.append(save_png(reverse, render(model, style_encoded, reverse_style, detail=args.detail)))
        print(f"wrote {reverse}: the reverse swap, the anatomy of {args.style} with the mean style of {args.anatomy}")
    return 0
