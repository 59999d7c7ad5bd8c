"""Anatomy / style swap of a whole slide at full resolution, block by block, with bounded memory.

:func:`swap_slide` renders level 0 of a slide (:class:`~napari_domaingen.io.slide.Slide`, or any ``(Y, X, 3)``
array-like that can be sliced, e.g. a dask array) with one style vector, ``block × block`` px at a time, and
writes the result as a multiscale OME-Zarr or a pyramidal OME-TIFF (:mod:`napari_domaingen.io.slide_write`).

Every block is read with a **halo** of ``halo`` px on each side (clipped at the slide's edges), encoded and
rendered exactly as :func:`~napari_domaingen.core.swap_job.swap_pair` renders a whole image, and only its interior is
written. The block origins and the halo are multiples of the model's tile (64 px for ``small``; with
``seamless=False`` of the least common multiple of the tile and the plain tiling's step), so the tilings of a
block coincide with the whole image's; the halo (default 128 px) covers the tiles that reach into the interior
(up to 36 px beyond it) and the detail carry-over's reach (its 16 px windows averaged again over 16 px and
interpolated from a 4 × coarser grid: under 48 px; that grid is anchored at pixel (0, 0) of what it filters, so a
block, whose origin is a multiple of 4, sees the whole image's grid, also at the image's last, partial cells).
The result therefore does not depend on the block size, in the first and last block rows and columns too and at
sizes that are not multiples of the block: it equals the whole image's swap (:func:`~.swap_job.swap_images`) up to
the float rounding of differently batched encoder runs, measured 0 (bitwise equal) in
``tests/core/test_swap_slide.py``; the documented bound is 1 grey level (docs/large_slides.md).

**Glass** is not sent through the model. Tissue is judged by the rules of :mod:`.tissue` against the *slide's* glass
colour (:func:`~.tissue.glass_level` of an overview: the smallest pyramid level of at least 0.25 Mpx, or level 0
read with a stride), so that the decision does not depend on the block. The slide is cut into **cells** of the
alignment (64 px; anchored at pixel (0, 0)). With the style image's glass colour (``style_glass``, the default of
the swap job) a cell is **glass** when no tissue pixel lies within :data:`~.tissue.NEAR_TISSUE` +
:data:`~.swap.GLASS_REACH` px of it (rounded up to whole cells: one cell): the softened tissue weight of
:func:`~.swap.onto_glass` is 0 there, so the whole-image swap draws the style's glass with the slide's light and
shade whatever the model renders, and so do glass cells here. Without it (the model's glass), a cell is glass when
no tissue pixel (:func:`~.tissue.tissue_mask`) lies within ``halo`` px of it (the box of the cell grown by the
halo), i.e. when nothing the model could draw there (its tiles reach 36 px, the detail carry-over under 48 px) comes
from tissue, and glass cells are written as the colour the model renders, with this style, tilings, precision and
detail option, for a uniform image of the slide's glass (the per-channel median of the overview's non-tissue pixels;
the overview's glass level when it has none), averaged over one ``alignment``² px image — computed once per job, the
first time a glass cell is met, from the overview alone, so it is the same whatever the block size or order. A block
all of whose cells are glass is written without encoding, synthesizing or filtering; in a block that holds tissue
the model runs on the bounding box of its non-glass cells grown by the halo (the rest of the canvas cannot reach
them), its encoder only on the tiles that touch those cells or the cells next to them (64 px, beyond the detail
filter's reach: the other tiles' tokens can only change glass cells), and its glass cells are overwritten. Every
other pixel is rendered exactly as without the rule; the output therefore still does not depend on the block size
(glass cells are a property of the slide, not of the blocks). The seam between a glass cell and a rendered one lies
at least ``halo`` px from tissue, where the model renders glass from glass alone: the step there is the model's
faint patch texture on glass, a few grey levels (with the style's glass there is no seam: both sides are the style's
glass). ``glass=False`` renders every block (the whole-image swap everywhere).

**Tissue colours** (``colours``): one colour map (:mod:`.colour_match`) is fitted per job, before the first block,
on the renders of the :data:`COLOUR_REGIONS` level-0 regions with the most tissue in the overview, and applied to
every rendered block, so that the colours do not depend on the block size either; it keeps the shift it gives each
8-bit colour (:meth:`~.colour_match.ColourMap.for_blocks`, about 220 MB), so later blocks mostly look colours up.

Memory: one block's canvas, its tokens and the render's working arrays, about 0.8 GB for the default
``block=2048`` (a 2304 px canvas) on top of the model and libraries (about 0.65 GB), whatever the slide's size;
the output is written as it comes, and freed memory is handed back after every block.
Progress: one update per block (``block``/``blocks`` counts, elapsed and estimated remaining seconds), then one
per pyramid level; ``cancel`` is checked before every block and inside the encoder; a cancelled or failed run
leaves no output (and an existing file at the output path untouched).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cpu_runtime import trim_heap
from ..progress import Cancelled, Progress, rescaled
from ..typing import Precision
from .colour_match import ColourMap, TissueColours, tissue_lab
from .swap import GLASS_REACH, glass_under, render
from .swap_encoding import DEFAULT_OVERLAP, GREY_WEIGHTS, encode
from .swap_model import SwapModel
from .swap_settings import DEFAULT_BLOCK
from .tissue import NEAR_TISSUE, glass_level, tissue_mask, tissue_weight
from .tissue import glass_colour as measured_glass_colour

__all__ = ["DEFAULT_BLOCK", "DEFAULT_HALO", "SlideSwapResult", "glass_cells", "slide_alignment", "swap_slide"]

#: context read around every block, px (rounded up to the alignment)
DEFAULT_HALO = 128
_SWAP_SHARE = 0.95  # of the progress fraction; the rest is the pyramid
_OVERVIEW_PX = 250_000  # the slide's glass is measured on a level of at least this many pixels …
_OVERVIEW_MAX_PX = 4_000_000  # … read with a stride when it has more
#: the slide's colour map is fitted on the renders of this many level-0 regions with the most tissue …
COLOUR_REGIONS = 4
#: … of this side, px (rounded up to the alignment)
COLOUR_REGION = 512


@dataclass
class SlideSwapResult:
    """What :func:`swap_slide` wrote: ``path``, the level shapes ``(Y, X)`` (level 0 first), ``mpp`` of level 0
    (µm, ``None`` when unknown), the number of ``blocks``, wall ``seconds`` and the encoder ``precision``;
    ``glass_blocks``: blocks written as glass without the model; ``glass_share``: the share of level 0's pixels
    written as the style's glass; ``glass``: that RGB colour (``None`` when no glass cell was met)."""

    path: Path
    levels: list[tuple[int, int]]
    mpp: float | None
    blocks: int
    seconds: float
    precision: str = "fp32"
    notes: list[str] = field(default_factory=list)
    glass_blocks: int = 0
    glass_share: float = 0.0
    glass: tuple[int, int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.levels[0]

    @property
    def megapixels_per_second(self) -> float:
        return self.shape[0] * self.shape[1] / 1e6 / max(self.seconds, 1e-9)


def slide_alignment(model: SwapModel, seamless: bool = True, overlap: float = DEFAULT_OVERLAP) -> int:
    """px that block origins and the halo must be multiples of, so a block's tilings are the whole image's."""
    tile = model.config.img_size
    if seamless:
        return tile
    step = max(1, int(tile * (1 - overlap)))
    return math.lcm(tile, step)


def _level0(slide: Any) -> tuple[Any, float | None, str]:
    levels = getattr(slide, "levels", None)
    if levels is not None:
        return levels[0], getattr(slide, "mpp", None), str(getattr(slide, "name", "") or "slide")
    return slide, None, "slide"


def _read(level0: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    part = level0[y0:y1, x0:x1]
    if hasattr(part, "compute"):
        part = part.compute()
    return np.ascontiguousarray(np.asarray(part)[..., :3], dtype=np.uint8)


def glass_cells(tissue: np.ndarray, cell: int, halo: int) -> np.ndarray:
    """``(⌈Y/cell⌉, ⌈X/cell⌉)`` bool: the ``cell × cell`` px cells of a ``(Y, X)`` ``tissue`` mask (anchored at pixel
    (0, 0); the last ones partial) that have no tissue pixel within ``halo`` px (a multiple of ``cell``): glass
    cells (module docstring). Exact for every cell whose grown box lies inside the mask or beyond the image."""
    from scipy.ndimage import maximum_filter

    height, width = tissue.shape
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.zeros((rows * cell, cols * cell), bool)
    padded[:height, :width] = tissue
    has_tissue = padded.reshape(rows, cell, cols, cell).any(axis=(1, 3))
    reach = halo // cell
    near = maximum_filter(has_tissue, size=2 * reach + 1, mode="constant", cval=False) if reach else has_tissue
    return ~near


def _token_cells(cells: np.ndarray, inside: tuple[slice, slice], cell: int) -> np.ndarray:
    """``(R, C)`` bool over a canvas's cells: where the encoder's tokens matter — the interior's non-glass cells
    and the cells next to them (one cell, 64 px: beyond the reach of the detail filter, about 40 px)."""
    from scipy.ndimage import maximum_filter

    rows = slice(inside[0].start // cell, -(-inside[0].stop // cell))
    cols = slice(inside[1].start // cell, -(-inside[1].stop // cell))
    matter = np.zeros_like(cells)
    matter[rows, cols] = ~cells[rows, cols]
    return maximum_filter(matter, size=3, mode="constant", cval=False)


def glass_pixels(cells: np.ndarray, cell: int, shape: tuple[int, int]) -> np.ndarray:
    """``(Y, X)`` bool: the pixels of a cell map (:func:`glass_cells`, :func:`_token_cells`)."""
    return np.repeat(np.repeat(cells, cell, 0), cell, 1)[: shape[0], : shape[1]]


@dataclass(frozen=True)
class _Part:
    """Where a tissue block is rendered: ``canvas`` (slices of the canvas to encode), ``rendered`` (slices of that
    render that land in the interior), ``interior`` (where they land); ``whole``: the interior is rendered whole."""

    canvas: tuple[slice, slice]
    rendered: tuple[slice, slice]
    interior: tuple[slice, slice]
    whole: bool


def _rendered_part(
    is_glass: np.ndarray | None, inside: tuple[slice, slice], canvas_shape: tuple[int, int], halo: int
) -> _Part:
    """The bounding box of the interior's non-glass pixels (whole cells, so aligned like the blocks) grown by
    ``halo`` within the canvas: rendering only that part gives those pixels exactly as the whole canvas would
    (the same reason blocks of any size give the same pixels)."""
    interior_shape = (inside[0].stop - inside[0].start, inside[1].stop - inside[1].start)
    if is_glass is None:
        box = [(0, interior_shape[0]), (0, interior_shape[1])]
    else:
        rows, cols = np.flatnonzero(~is_glass.all(1)), np.flatnonzero(~is_glass.all(0))
        box = [(int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)]
    canvas, rendered = [], []
    for (lo, hi), within, size in zip(box, inside, canvas_shape, strict=True):
        c0, c1 = max(0, within.start + lo - halo), min(size, within.start + hi + halo)
        canvas.append(slice(c0, c1))
        rendered.append(slice(within.start + lo - c0, within.start + hi - c0))
    whole = box == [(0, interior_shape[0]), (0, interior_shape[1])]
    return _Part((canvas[0], canvas[1]), (rendered[0], rendered[1]), (slice(*box[0]), slice(*box[1])), whole)


def _overview(slide: Any, level0: Any) -> np.ndarray:
    """A small RGB view of the whole slide: its smallest level of at least 0.25 Mpx, read with a stride when it
    has more than 4 Mpx (level 0 itself for an array without levels)."""
    levels = list(getattr(slide, "levels", None) or [level0])
    level = next((lv for lv in reversed(levels) if lv.shape[0] * lv.shape[1] >= _OVERVIEW_PX), levels[0])
    stride = max(1, math.ceil(math.sqrt(level.shape[0] * level.shape[1] / _OVERVIEW_MAX_PX)))
    part = level[::stride, ::stride]
    if hasattr(part, "compute"):
        part = part.compute()
    return np.ascontiguousarray(np.asarray(part)[..., :3], dtype=np.uint8)


def _style_glass(
    model: SwapModel,
    overview: np.ndarray,
    reference: np.ndarray,
    style: torch.Tensor,
    size: int,
    seamless: bool,
    overlap: float,
    detail: bool,
    precision: Precision,
) -> np.ndarray:
    """``(3,)`` uint8: the style's glass, the mean colour the model renders with ``style`` for a uniform
    ``size × size`` px image of the slide's glass (module docstring)."""
    glass = overview[~tissue_mask(overview, reference)]
    colour = np.median(glass, axis=0) if len(glass) else reference * 255.0
    uniform = np.broadcast_to(np.rint(colour).astype(np.uint8), (size, size, 3)).copy()
    encoded = encode(model, uniform, overlap, name="the slide's glass", seamless=seamless, precision=precision)
    rendered = render(model, encoded, style, detail=detail)
    return np.rint(rendered.reshape(-1, 3).mean(0)).astype(np.uint8)


def _colour_map(
    model: SwapModel,
    level0: Any,
    overview: np.ndarray,
    reference: np.ndarray,
    style: torch.Tensor,
    colours: TissueColours,
    side: int,
    render_options: dict[str, Any],
    cancel: Callable[[], bool] | None,
) -> ColourMap | None:
    """The slide's colour map (:mod:`.colour_match`), fitted once per job on the renders of the
    :data:`COLOUR_REGIONS` level-0 regions of ``side`` px (a grid from pixel (0, 0)) with the most tissue in the
    ``overview``: the same map for every block, whatever the block size. ``None`` without tissue."""
    height, width = int(level0.shape[0]), int(level0.shape[1])
    on_overview = tissue_weight(overview, reference) > 0.5
    scale_y, scale_x = overview.shape[0] / height, overview.shape[1] / width
    ranked = []
    for y in range(0, height, side):
        for x in range(0, width, side):
            oy0, ox0 = int(y * scale_y), int(x * scale_x)
            oy1 = max(oy0 + 1, int(min(y + side, height) * scale_y))
            ox1 = max(ox0 + 1, int(min(x + side, width) * scale_x))
            share = float(on_overview[oy0:oy1, ox0:ox1].mean())
            if share > 0 and min(y + side, height) - y >= side // 2 and min(x + side, width) - x >= side // 2:
                ranked.append((-share, y, x))
    labs = []
    for _, y, x in sorted(ranked)[:COLOUR_REGIONS]:
        region = _read(level0, y, min(y + side, height), x, min(x + side, width))
        encoded = encode(
            model,
            region,
            render_options["overlap"],
            cancel,
            name=f"slide region at ({y}, {x})",
            seamless=render_options["seamless"],
            precision=render_options["precision"],
        )
        rendered = render(model, encoded, style, detail=render_options["detail"])
        lab = tissue_lab(rendered.astype(np.float32) / np.float32(255.0), tissue_weight(region, reference))
        if lab is not None:
            labs.append(lab)
    return ColourMap.fit(np.concatenate(labs), colours).for_blocks() if labs else None


def _textured_glass(rgb: np.ndarray, style_glass: np.ndarray, glass_grey: float | None) -> np.ndarray:
    """``(h, w, 3)`` uint8: the style's glass with the light and shade of the slide's ``rgb`` pixels, exactly as
    :func:`~.swap.onto_glass` draws glass far from tissue."""
    grey = rgb.astype(np.float32) / np.float32(255.0) @ GREY_WEIGHTS
    under = np.clip(glass_under(style_glass, grey, 1.0 if glass_grey is None else glass_grey), 0.0, 1.0)
    return np.rint(under * 255.0).astype(np.uint8)


def swap_slide(
    model: SwapModel,
    slide: Any,
    style: torch.Tensor,
    out_path: str | os.PathLike,
    *,
    block: int = DEFAULT_BLOCK,
    halo: int = DEFAULT_HALO,
    seamless: bool = True,
    detail: bool = True,
    overlap: float = DEFAULT_OVERLAP,
    precision: Precision = "auto",
    mpp: float | None = None,
    name: str | None = None,
    glass: bool = True,
    style_glass: np.ndarray | None = None,
    colours: TissueColours | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, SlideSwapResult]:
    """Swap level 0 of ``slide`` with ``style`` (a ``(E/2,)`` vector: a mean or point style) block by block and
    write ``out_path`` (``.ome.zarr``/``.zarr`` or ``.ome.tif``/``.ome.tiff``); a job (module docstring).

    ``block``: interior side, px, rounded up to the alignment (:func:`slide_alignment`); ``halo``: context, px;
    ``seamless``/``overlap``/``detail``/``precision``: as :func:`~napari_domaingen.core.swap_job.swap_pair`;
    ``mpp``: µm per pixel written to the output (default: the slide's); ``glass``: write glass cells as the style's
    glass without the model (module docstring; ``False``: render every block). ``style_glass``: ``(3,)`` in [0, 1],
    the style image's glass colour (:func:`~.tissue.glass_colour`): the slide's glass — glass cells, and the glass of
    rendered blocks (its tissue judged against the slide's glass, :func:`~.swap.onto_glass`) — takes it; ``None``:
    the model's render of the slide's glass. ``colours``: the style image's tissue colours
    (:func:`~.swap_job.style_colours`), matched on the slide's tissue by one map fitted on the renders of a few
    regions with the most tissue (:data:`COLOUR_REGIONS`), so that blocks of any size get the same map.
    """
    from ..io.slide_write import SlideWriter, slide_output_kind

    if slide_output_kind(out_path) is None:
        raise ValueError(f"{out_path}: a slide output name must end in .ome.zarr, .zarr, .ome.tif or .ome.tiff")
    level0, slide_mpp, slide_name = _level0(slide)
    mpp = slide_mpp if mpp is None else mpp
    if len(level0.shape) != 3 or level0.shape[2] not in (3, 4):
        raise ValueError(f"the slide must be (Y, X, 3) RGB, got shape {tuple(level0.shape)}")
    height, width = int(level0.shape[0]), int(level0.shape[1])
    patch = model.config.patch_size
    if height < patch or width < patch:
        raise ValueError(f"the slide ({height} × {width} px) is smaller than one {patch} × {patch} patch of the model")
    expected = model.config.embed_dim // 2
    if tuple(style.shape) != (expected,):
        raise ValueError(f"a style vector of {expected} values is needed, got {tuple(style.shape)}")
    align = slide_alignment(model, seamless, overlap)
    if block < 1 or halo < 0:
        raise ValueError(f"block must be ≥ 1 px and halo ≥ 0 px, got {block} and {halo}")
    block = -(-block // align) * align
    halo = -(-halo // align) * align
    starts = [(y, x) for y in range(0, height, block) for x in range(0, width, block)]
    start_time, used_precision = time.perf_counter(), "fp32"
    judged = glass or style_glass is not None or colours is not None  # the slide's glass level is needed
    overview = _overview(slide, level0) if judged else None  # read before the writer exists: a bad slide leaves nothing
    reference = None if overview is None else glass_level(overview)
    # the slide's glass luminance, for the style's glass with the slide's light and shade (swap.onto_glass)
    glass_grey = None if overview is None else float(measured_glass_colour(overview) @ GREY_WEIGHTS)
    colour_map = None
    if colours is not None:
        assert overview is not None and reference is not None
        yield {"stage": "colours", "fraction": 0.0, "message": "fitting the tissue colours on regions of the slide"}
        options = {"overlap": overlap, "seamless": seamless, "precision": precision, "detail": detail}
        side = -(-COLOUR_REGION // align) * align
        colour_map = _colour_map(model, level0, overview, reference, style, colours, side, options, cancel)
    writer = SlideWriter(out_path, (height, width), mpp, name or slide_name)
    glass_rgb: np.ndarray | None = None
    glass_blocks = glass_px = 0
    try:
        for index, (y, x) in enumerate(starts):
            if cancel is not None and cancel():
                raise Cancelled("slide swap cancelled")
            y1, x1 = min(y + block, height), min(x + block, width)
            cy0, cx0 = max(0, y - halo), max(0, x - halo)
            cy1, cx1 = min(height, y1 + halo), min(width, x1 + halo)
            canvas = _read(level0, cy0, cy1, cx0, cx1)
            inside = (slice(y - cy0, y1 - cy0), slice(x - cx0, x1 - cx0))
            is_glass = needed = tissue = weight = None
            if reference is not None:
                tissue = tissue_mask(canvas, reference)
            if glass and tissue is not None:  # the interior's glass pixels, by cells of the alignment (docstring)
                if style_glass is not None:
                    # the style's glass wherever the softened tissue weight is 0 (swap.onto_glass): the model's
                    # render there never shows
                    cells = glass_cells(tissue, align, -(-(NEAR_TISSUE + GLASS_REACH) // align) * align)
                else:
                    cells = glass_cells(tissue, align, halo)
                is_glass = glass_pixels(cells, align, canvas.shape[:2])[inside]
                needed = glass_pixels(_token_cells(cells, inside, align), align, canvas.shape[:2])
                if is_glass.any() and glass_rgb is None and style_glass is not None:
                    glass_rgb = np.rint(np.asarray(style_glass, np.float32).reshape(3) * 255.0).astype(np.uint8)
                elif is_glass.any() and glass_rgb is None:
                    assert overview is not None
                    glass_rgb = _style_glass(
                        model, overview, reference, style, align, seamless, overlap, detail, precision
                    )
            if is_glass is not None and is_glass.all():
                assert glass_rgb is not None
                glass_blocks += 1
                if style_glass is not None:  # the style's glass with the slide's light and shade, as rendered
                    writer.write(y, x, _textured_glass(canvas[inside], style_glass, glass_grey))
                else:
                    writer.write(y, x, np.broadcast_to(glass_rgb, (y1 - y, x1 - x, 3)))
                del canvas
                kind = "glass, without the model"
            else:
                # only the part of the canvas that reaches the interior's non-glass cells: their bounding box
                # (cell-aligned) grown by the halo; the rest of the interior is glass cells
                part = _rendered_part(is_glass, inside, canvas.shape[:2], halo)
                if tissue is not None and (style_glass is not None or colour_map is not None):
                    # on the rendered part: it holds every pixel within the weight's reach of the written ones
                    weight = tissue_weight(canvas[part.canvas], reference, tissue[part.canvas])
                encoded = encode(
                    model,
                    canvas[part.canvas],
                    overlap,
                    cancel,
                    name=f"slide block at ({y}, {x})",
                    seamless=seamless,
                    precision=precision,
                    needed=None if needed is None else needed[part.canvas],
                    weight=weight,
                )
                used_precision = encoded.precision
                rendered = render(
                    model,
                    encoded,
                    style,
                    detail=detail,
                    glass=style_glass,
                    colours=colour_map,
                    weight=weight,
                    glass_grey=glass_grey,
                )
                del encoded
                if part.whole:
                    interior = rendered[part.rendered]
                else:
                    # outside the rendered box every pixel is a glass cell: filled with the glass colour below
                    interior = np.empty((y1 - y, x1 - x, 3), np.uint8)
                    interior[part.interior] = rendered[part.rendered]
                if is_glass is not None and is_glass.any() and style_glass is not None:
                    interior[is_glass] = _textured_glass(canvas[inside], style_glass, glass_grey)[is_glass]
                elif is_glass is not None and is_glass.any():
                    assert glass_rgb is not None
                    interior[is_glass] = glass_rgb
                writer.write(y, x, interior)
                del rendered, interior, canvas
                kind = "rendered"
            if is_glass is not None:
                glass_px += int(is_glass.sum())
            trim_heap()
            done = index + 1
            elapsed = time.perf_counter() - start_time
            remaining = elapsed / done * (len(starts) - done)
            yield {
                "stage": "swap",
                "fraction": _SWAP_SHARE * done / len(starts),
                "message": f"block {done}/{len(starts)} (rows {y}–{y1}, columns {x}–{x1}, {kind}); "
                f"{elapsed:.0f} s elapsed, about {remaining:.0f} s left",
                "block": done,
                "blocks": len(starts),
                "glass_blocks": glass_blocks,
                "elapsed": elapsed,
                "eta": remaining,
            }
        path = yield from rescaled(writer.finish(cancel), _SWAP_SHARE, 1.0 - _SWAP_SHARE)
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - start_time
    yield {"stage": "done", "fraction": 1.0, "message": f"wrote {path} ({seconds:.0f} s)"}
    return SlideSwapResult(
        path,
        list(writer.shapes),
        mpp,
        len(starts),
        seconds,
        used_precision,
        glass_blocks=glass_blocks,
        glass_share=glass_px / (height * width),
        glass=None if glass_rgb is None else (int(glass_rgb[0]), int(glass_rgb[1]), int(glass_rgb[2])),
    )
