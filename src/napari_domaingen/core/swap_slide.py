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

Memory: one block's canvas, its tokens and the render's working arrays, about 0.8 GB for the default
``block=2048`` (a 2304 px canvas) on top of the model and libraries (about 0.65 GB), whatever the slide's size;
the output is written as it comes, and freed memory is handed back after every block.
Progress: one update per block (``block``/``blocks`` counts, elapsed and estimated remaining seconds), then one
per pyramid level; ``cancel`` is checked before every block and inside the encoder; a cancelled or failed run
leaves no output (and an existing file at the output path untouched).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..progress import Cancelled, Progress, rescaled
from ..typing import Precision
from .swap import render
from .swap_encoding import DEFAULT_OVERLAP, encode
from .swap_model import SwapModel
from .swap_settings import DEFAULT_BLOCK

__all__ = ["DEFAULT_BLOCK", "DEFAULT_HALO", "SlideSwapResult", "slide_alignment", "swap_slide"]

#: context read around every block, px (rounded up to the alignment)
DEFAULT_HALO = 128
_SWAP_SHARE = 0.95  # of the progress fraction; the rest is the pyramid


@dataclass
class SlideSwapResult:
    """What :func:`swap_slide` wrote: ``path``, the level shapes ``(Y, X)`` (level 0 first), ``mpp`` of level 0
    (µm, ``None`` when unknown), the number of ``blocks``, wall ``seconds`` and the encoder ``precision``."""

    path: Path
    levels: list[tuple[int, int]]
    mpp: float | None
    blocks: int
    seconds: float
    precision: str = "fp32"
    notes: list[str] = field(default_factory=list)

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


@functools.cache
def _libc() -> Any:
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def _trim_heap() -> None:
    """Hand freed memory back to the system after a block: glibc's heap otherwise fragments over hundreds of
    blocks and the resident size creeps up (measured +0.04 GB per 2048 px block; with this it stays flat)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


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
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, SlideSwapResult]:
    """Swap level 0 of ``slide`` with ``style`` (a ``(E/2,)`` vector: a mean or point style) block by block and
    write ``out_path`` (``.ome.zarr``/``.zarr`` or ``.ome.tif``/``.ome.tiff``); a job (module docstring).

    ``block``: interior side, px, rounded up to the alignment (:func:`slide_alignment`); ``halo``: context, px;
    ``seamless``/``overlap``/``detail``/``precision``: as :func:`~napari_domaingen.core.swap_job.swap_pair`;
    ``mpp``: µm per pixel written to the output (default: the slide's).
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
    writer = SlideWriter(out_path, (height, width), mpp, name or slide_name)
    start_time, used_precision = time.perf_counter(), "fp32"
    try:
        for index, (y, x) in enumerate(starts):
            if cancel is not None and cancel():
                raise Cancelled("slide swap cancelled")
            y1, x1 = min(y + block, height), min(x + block, width)
            cy0, cx0 = max(0, y - halo), max(0, x - halo)
            cy1, cx1 = min(height, y1 + halo), min(width, x1 + halo)
            canvas = _read(level0, cy0, cy1, cx0, cx1)
            encoded = encode(
                model,
                canvas,
                overlap,
                cancel,
                name=f"slide block at ({y}, {x})",
                seamless=seamless,
                precision=precision,
            )
            used_precision = encoded.precision
            rendered = render(model, encoded, style, detail=detail)
            del encoded, canvas
            writer.write(y, x, rendered[y - cy0 : y1 - cy0, x - cx0 : x1 - cx0])
            del rendered
            _trim_heap()
            done = index + 1
            elapsed = time.perf_counter() - start_time
            remaining = elapsed / done * (len(starts) - done)
            yield {
                "stage": "swap",
                "fraction": _SWAP_SHARE * done / len(starts),
                "message": f"block {done}/{len(starts)} (rows {y}–{y1}, columns {x}–{x1}); "
                f"{elapsed:.0f} s elapsed, about {remaining:.0f} s left",
                "block": done,
                "blocks": len(starts),
                "elapsed": elapsed,
                "eta": remaining,
            }
        path = yield from rescaled(writer.finish(cancel), _SWAP_SHARE, 1.0 - _SWAP_SHARE)
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - start_time
    yield {"stage": "done", "fraction": 1.0, "message": f"wrote {path} ({seconds:.0f} s)"}
    return SlideSwapResult(path, list(writer.shapes), mpp, len(starts), seconds, used_precision)
