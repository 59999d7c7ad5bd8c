"""``domaingen swap`` with a whole-slide output (``.ome.zarr``/``.zarr``/``.ome.tif``/``.ome.tiff``): ANATOMY opened
lazily and swapped block by block at full resolution (:func:`~napari_domaingen.core.swap_slide.swap_slide`), STYLE
read in memory (its largest level that fits :data:`STYLE_MAX_BYTES`) for its mean or point style."""

from __future__ import annotations

import argparse
from pathlib import Path

#: the style image is read at its largest level within this many bytes of 8-bit RGB (4096 × 4096 px)
STYLE_MAX_BYTES = 48 * 2**20


def run_slide(args: argparse.Namespace, out: Path, point: tuple[float, float] | None, overlap: float) -> int:
    from ..core.swap_slide import DEFAULT_BLOCK, slide_style, swap_slide
    from ..io.slide import open_slide, read_in_memory
    from ..progress import run
    from ._report import ProgressPrinter
    from .swap import _load_swap

    if args.reconstructions:
        raise ValueError("--reconstructions is not available for a whole-slide output (.ome.zarr, .ome.tif)")
    block = DEFAULT_BLOCK if args.block is None else args.block
    if block < 64:
        raise ValueError(f"--block must be at least 64 px, got {block}")
    slide = open_slide(args.anatomy)
    try:
        style_image, factor = read_in_memory(args.style, STYLE_MAX_BYTES)
        if factor != 1:
            print(
                f"note: style image {args.style} read reduced {factor:g}× "
                f"({style_image.shape[0]} × {style_image.shape[1]} px) for its style"
            )
        if point is not None:
            height, width = style_image.shape[0] * factor, style_image.shape[1] * factor
            if not (0 <= point[0] < height and 0 <= point[1] < width):
                raise ValueError(
                    f"--style-point {point[0]:g},{point[1]:g} lies outside the style image {args.style} "
                    f"({height:.0f} × {width:.0f} px; y must be in [0, {height:.0f}), x in [0, {width:.0f}))"
                )
            point = (point[0] / factor, point[1] / factor)
        model = _load_swap(args.model, args.device)
        print(f"Model: {model.describe()}")
        style = slide_style(
            model, style_image, point, tissue_only=args.tissue_style, precision=args.precision, name=args.style
        )
        del style_image
        height, width = slide.shape
        scale = f"{slide.mpp:g} µm/px" if slide.mpp is not None else "pixel size unknown"
        how = "its mean style" if point is None else f"the style at (y {point[0] * factor:g}, x {point[1] * factor:g})"
        print(
            f"Swapping {args.anatomy} ({height} × {width} px, {height * width / 1e6:.0f} Mpx, {scale}) with {how} "
            f"of {args.style}, at full resolution in {block} px blocks → {out}",
            flush=True,
        )
        job = swap_slide(
            model,
            slide,
            style,
            out,
            block=block,
            seamless=args.seamless,
            detail=args.detail,
            overlap=overlap,
            precision=args.precision,
        )
        result = run(job, ProgressPrinter())
    finally:
        slide.close()
    levels = ", ".join(f"{y} × {x}" for y, x in result.levels)
    scale = f"{result.mpp:g} µm/px" if result.mpp is not None else "pixel size unknown"
    print(
        f"wrote {result.path}: {len(result.levels)} levels ({levels} px), {scale}; {result.blocks} blocks in "
        f"{result.seconds:.1f} s ({result.megapixels_per_second:.2f} Mpx/s, {result.precision})"
    )
    return 0
