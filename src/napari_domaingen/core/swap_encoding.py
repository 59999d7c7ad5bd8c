"""Encoding whole images for the anatomy/style swap: input conversion, the tilings, and the tokens of every tile.

A model works on tiles of its training size (64 px for ``small``). :func:`encode` cuts an image into tiles, encodes
each tile once and keeps its anatomy and style tokens in an :class:`EncodedImage`; rendering any style from them
costs only the synthesis (:mod:`napari_domaingen.core.swap`).

Two tilings:

* **seamless** (default) — two tilings of the image, each without overlap, the second shifted by ``(s, s)`` with
  ``s = (T / 2 // p) · p − p / 2`` (28 px for 64 px tiles of 8 px patches): its patch borders run through the
  middle of the first tiling's patches and its tile borders near the middle of the first's tiles. Every pixel lies
  in one tile of each tiling; the two renders are blended with the weight ``w(i) w(j)``,
  ``w(i) = sin²(π (i mod p + ½) / p)`` at position ``(i, j)`` of its tile (near 0 on a patch border, 1 at a patch
  centre), normalised by the sum of the two. A patch border of one tiling is thus drawn from the middle of the
  other's patch, except where it crosses a border of the other (one pixel in eight along it, blended half and
  half). Costs about two encodings per pixel (1.2× the plain tiling's 25 % overlap).
* **plain** (``seamless=False``, the DGM-DR paper's rendering) — one tiling whose tiles overlap by ``overlap``
  (MONAI ``dense_patch_slices``), blended with MONAI's Gaussian importance map: no tile seams, but the 8 px patch
  grid of the rank-limited synthesizer stays visible.

Input images (:func:`as_rgb`): ``(Y, X, 3)`` RGB, ``(Y, X, 4)`` RGBA (composited on white), ``(Y, X)`` or
``(Y, X, 1)`` grayscale (repeated into three channels), any integer depth (8-bit, 16-bit by its effective bit
depth), floats in [0, 1]. Images smaller than one patch are refused; smaller tiles are mirrored outwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..models.dgm import split_tokens
from ..typing import Precision
from .device import resolve_precision
from .swap_model import SwapModel

__all__ = [
    "DEFAULT_OVERLAP",
    "TILE_BATCH",
    "EncodedImage",
    "Precision",
    "as_rgb",
    "encode",
    "grid_shift",
    "patch_window",
    "tile_layout",
]

#: tile overlap of the plain tiling (the seamless tilings do not overlap)
DEFAULT_OVERLAP = 0.25
#: tiles encoded or synthesized at a time (bounds the working memory of the encoder and the synthesis)
TILE_BATCH = 32
#: scikit-image's rgb2gray weights
GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``(Y, X, 3)`` float32 in [0, 1] from RGB, RGBA, grayscale, 8/16-bit or float input (module docstring).

    Raises ``ValueError`` naming ``name`` for other shapes, NaN/inf values, or an empty image.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"{name}: expected a 2D RGB, RGBA or grayscale image (Y, X[, 3|4]), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: the image is empty ({array.shape[0]} × {array.shape[1]} px)")
    if array.dtype == bool:
        values = array.astype(np.float32)
    elif array.dtype == np.uint8:  # the common case, without a pass for the maximum or the clip: 8 bits
        values = array.astype(np.float32)
        values /= np.float32(255.0)
    elif np.issubdtype(array.dtype, np.integer):
        top = float(max(int(array.max()), 0))
        bits = max(8, int(np.ceil(np.log2(top + 1))) if top > 0 else 8)
        values = np.clip(array.astype(np.float32), 0, None) / float(2**bits - 1)
    else:
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: the image holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            values = (values - low) / max(high - low, 1e-12)
    if values.shape[-1] == 4:
        alpha = values[..., 3:]
        values = values[..., :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(values[..., :3], dtype=np.float32)


def grid_shift(tile: int, patch: int) -> int:
    """``s``: the shift (px) of the second patch grid of the seamless tilings, ``≡ patch / 2 (mod patch)``."""
    if patch % 2:
        raise ValueError(f"seamless rendering needs an even patch size, the model's is {patch}")
    return max(1, tile // 2 // patch) * patch - patch // 2


def patch_window(tile: int, patch: int) -> torch.Tensor:
    """``(tile, tile)`` float32 blending weight of the seamless tilings: ``w(i) w(j)`` (module docstring); the two
    tilings' weights add up to between 0.07 (where borders cross) and 1."""
    position = (torch.arange(tile, dtype=torch.float64) % patch + 0.5) / patch
    w = torch.sin(torch.pi * position) ** 2
    return (w[:, None] * w[None, :]).float()


@dataclass
class EncodedImage:
    """Tokens of every tile of an image.

    ``shape``: the image's ``(Y, X)``; ``padded``: the mirrored canvas ``(Y', X')`` the tiles are cut from, the image
    at ``(margin, margin)`` in it; ``origins``: ``(T, 2)`` top-left canvas pixel of each tile; ``grids``: ``(T,)``
    the tiling each tile belongs to (0 or 1 seamless, 0 plain); ``anatomy``/``style``: ``(T, P, E/2)`` float32 (CPU);
    ``tile``/``patch``: sides in px; ``grey``: ``(Y, X)`` float32 luminance of the input in [0, 1] and ``tissue``:
    ``(Y, X)`` bool (:func:`~napari_domaingen.core.tissue.tissue_mask`), for the detail carry-over and the mean
    style; ``weight``: ``(Y, X)`` float32 soft tissue weight (:func:`~napari_domaingen.core.tissue.tissue_weight`)
    and ``glass_grey``: the luminance of its glass, for drawing its glass in a style's glass colour;
    ``precision``: the encoder's arithmetic.
    """

    shape: tuple[int, int]
    padded: tuple[int, int]
    origins: np.ndarray
    anatomy: torch.Tensor
    style: torch.Tensor
    tile: int
    patch: int
    grids: np.ndarray
    margin: int = 0
    seamless: bool = False
    grey: np.ndarray | None = None
    tissue: np.ndarray | None = None
    precision: str = "fp32"
    weight: np.ndarray | None = None
    glass_grey: float | None = None

    @property
    def grid(self) -> int:
        """Patches per tile side."""
        return self.tile // self.patch

    def first_tiling(self) -> np.ndarray:
        """Indices of the tiles of tiling 0 (every image position lies in one of them, or in several when the
        plain tiles overlap)."""
        return np.flatnonzero(self.grids == 0)

    def patch_index(self, y: float, x: float) -> tuple[int, int]:
        """``(tile, patch)`` whose patch holds image pixel ``(y, x)`` (clamped into the image): of the tiles of
        tiling 0 that contain the pixel, the one whose centre is nearest (most context around the point)."""
        tiles, patches = self.patch_indices(np.array([[y, x]], dtype=np.float64))
        return int(tiles[0]), int(patches[0])

    def patch_indices(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`patch_index` of ``(N, 2)`` image pixels ``(y, x)`` → ``(N,)`` tile and ``(N,)`` patch indices.

        The tiles of a tiling form a grid of rows × columns, so the containing tile nearest the point is chosen per
        axis: the tile row that holds ``y`` with its centre nearest ``y``, likewise for ``x``.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        points = np.clip(points, 0.0, np.array(self.shape, dtype=np.float64) - 1) + self.margin  # canvas px
        candidates = self.first_tiling()
        starts = [np.unique(self.origins[candidates, axis]) for axis in (0, 1)]
        grid = np.full((len(starts[0]), len(starts[1])), -1, dtype=np.int64)
        grid[
            np.searchsorted(starts[0], self.origins[candidates, 0]),
            np.searchsorted(starts[1], self.origins[candidates, 1]),
        ] = candidates
        chosen = []
        for axis in (0, 1):
            coordinate = points[:, axis, None]
            low = starts[axis][None, :].astype(np.float64)
            inside = (low <= coordinate) & (coordinate < low + self.tile)
            if not inside.any(axis=1).all():
                pixel = points[~inside.any(axis=1)][0] - self.margin
                raise ValueError(f"no tile of the first tiling holds pixel {tuple(pixel)} of a {self.shape} image")
            distance = np.where(inside, np.abs(low + self.tile / 2 - coordinate), np.inf)
            chosen.append(np.argmin(distance, axis=1))
        tiles = grid[chosen[0], chosen[1]]
        if (tiles < 0).any():
            raise ValueError("the first tiling is not a grid of rows × columns")
        rows, cols = ((points - self.origins[tiles]) // self.patch).astype(np.int64).T
        return tiles, rows * self.grid + cols

    def patch_centres(self, tile: int) -> np.ndarray:
        """``(P, 2)`` pixel centres (y, x) of the patches of ``tile`` in image coordinates."""
        index = np.arange(self.grid)
        rows, cols = np.meshgrid(index, index, indexing="ij")
        centres = np.stack([rows.ravel(), cols.ravel()], axis=1) * self.patch + self.patch / 2
        return centres + self.origins[tile] - self.margin


def tile_layout(
    shape: tuple[int, int], tile: int, patch: int, seamless: bool = True, overlap: float = DEFAULT_OVERLAP
) -> tuple[int, np.ndarray, np.ndarray, tuple[int, int]]:
    """Where the tiles of an image of ``shape`` ``(Y, X)`` px lie: ``(margin, origins, grids, padded)`` with the
    fields of :class:`EncodedImage` (the image at ``(margin, margin)`` of a mirrored ``padded`` canvas).

    >>> margin, origins, grids, padded = tile_layout((100, 80), tile=64, patch=8)
    >>> margin, padded, len(origins), sorted(set(grids.tolist()))
    (28, (192, 172), 8, [0, 1])
    """
    height, width = shape
    if seamless:
        margin = grid_shift(tile, patch)
        origins, grids = _seamless_tiles((height, width), tile, margin)
        return margin, origins, grids, (height + margin + tile, width + margin + tile)
    padded = (max(tile, height), max(tile, width))
    origins = _plain_tiles(padded, tile, overlap)
    return 0, origins, np.zeros(len(origins), dtype=np.int64), padded


def _plain_tiles(size: tuple[int, int], tile: int, overlap: float) -> np.ndarray:
    from monai.data.utils import dense_patch_slices, get_valid_patch_size

    roi = get_valid_patch_size(size, (tile, tile))
    interval = tuple(max(1, int(r * (1 - overlap))) for r in roi)
    slices = dense_patch_slices(size, roi, interval)
    return np.array([[s[0].start, s[1].start] for s in slices], dtype=np.int64)


def _seamless_tiles(shape: tuple[int, int], tile: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Origins (canvas px, image at ``(shift, shift)``) and tiling index of the two shifted tilings."""
    origins, grids = [], []
    for index, (dy, dx) in enumerate([(0, 0), (shift, shift)]):
        ys = shift - dy + tile * np.arange(-(-(shape[0] + dy) // tile))
        xs = shift - dx + tile * np.arange(-(-(shape[1] + dx) // tile))
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        origins.append(np.stack([yy.ravel(), xx.ravel()], axis=1))
        grids.append(np.full(yy.size, index))
    return np.concatenate(origins).astype(np.int64), np.concatenate(grids)


def encode(
    model: SwapModel,
    image: np.ndarray,
    overlap: float = DEFAULT_OVERLAP,
    cancel: Callable[[], bool] | None = None,
    name: str = "image",
    seamless: bool = True,
    precision: Precision = "auto",
    needed: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> EncodedImage:
    """Encode every tile of ``image`` (any input :func:`as_rgb` takes) → :class:`EncodedImage`.

    ``seamless``: the two shifted tilings (module docstring); else one tiling overlapping by ``overlap``.
    ``precision``: the encoder's arithmetic (``"auto"``: bf16 where fast, which changes reconstructions by about
    0.1 dB PSNR; the synthesis is always fp32). ``needed``: ``(Y, X)`` bool; tiles that cover no needed pixel are
    not run and get zero tokens, so a render is the model's only on pixels whose every tile was run (a slide's
    glass, :mod:`~napari_domaingen.core.swap_slide`). ``weight``: ``(Y, X)`` the image's tissue weight when measured
    elsewhere (a slide block's, against the slide's glass); default :func:`~.tissue.tissue_weight` of the image.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    from .tissue import glass_colour, tissue_mask, tissue_weight

    rgb = as_rgb(image, name)
    config = model.config
    tile, patch = config.img_size, config.patch_size
    height, width = rgb.shape[:2]
    if height < patch or width < patch:
        raise ValueError(f"{name}: {height} × {width} px is smaller than one {patch} × {patch} patch of the model")
    margin, origins, grids, padded = tile_layout((height, width), tile, patch, seamless, overlap)
    after = (padded[0] - height - margin, padded[1] - width - margin)
    canvas = np.pad(rgb, ((margin, after[0]), (margin, after[1]), (0, 0)), mode="symmetric") if any(after) else rgb
    precision = resolve_precision(precision, model.device)
    tensor = torch.from_numpy(np.ascontiguousarray(canvas)).permute(2, 0, 1)[None]
    if needed is not None and np.shape(needed) != (height, width):
        raise ValueError(f"{name}: the mask of needed pixels is {np.shape(needed)}, the image {height} × {width} px")
    run = (
        np.arange(len(origins))
        if needed is None
        else np.flatnonzero(_covers(needed, canvas.shape[:2], margin, origins, tile))
    )
    anatomy, style = [], []
    with (
        torch.inference_mode(),
        torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        for start in range(0, len(run), TILE_BATCH):
            if cancel is not None and cancel():
                from ..progress import Cancelled

                raise Cancelled("encoding cancelled")
            batch = torch.cat(
                [tensor[:, :, y : y + tile, x : x + tile] for y, x in origins[run[start : start + TILE_BATCH]]]
            )
            tokens = model.encoder(model.normalise(batch.to(model.device)))
            a, s = split_tokens(tokens.float())
            anatomy.append(a.cpu())
            style.append(s.cpu())
    anatomy_tokens, style_tokens = _scatter(anatomy, run, len(origins)), _scatter(style, run, len(origins))
    grey = rgb @ GREY_WEIGHTS
    tissue = tissue_mask(rgb)
    return EncodedImage(
        shape=(height, width),
        padded=canvas.shape[:2],
        origins=origins,
        anatomy=anatomy_tokens,
        style=style_tokens,
        tile=tile,
        patch=patch,
        grids=grids,
        margin=margin,
        seamless=seamless,
        grey=grey,
        tissue=tissue,
        precision=precision,
        weight=tissue_weight(rgb, tissue=tissue) if weight is None else weight,
        glass_grey=float(glass_colour(rgb) @ GREY_WEIGHTS),
    )


def _covers(
    needed: np.ndarray, canvas_shape: tuple[int, int], margin: int, origins: np.ndarray, tile: int
) -> np.ndarray:
    """``(T,)`` bool: the tiles at ``origins`` (canvas px, image at ``(margin, margin)``) that hold a ``needed``
    pixel of the image (a summed-area table of the mask)."""
    height, width = needed.shape
    counts = np.int32 if height * width < 2**31 else np.int64  # half the memory traffic of int64
    table = np.zeros((canvas_shape[0] + 1, canvas_shape[1] + 1), counts)
    table[margin + 1 : margin + 1 + height, margin + 1 : margin + 1 + width] = needed.cumsum(0, counts).cumsum(1)
    table[margin + 1 + height :, :] = table[margin + height : margin + 1 + height, :]
    table[:, margin + 1 + width :] = table[:, margin + width : margin + 1 + width]
    y0, x0 = origins[:, 0], origins[:, 1]
    y1, x1 = np.minimum(y0 + tile, canvas_shape[0]), np.minimum(x0 + tile, canvas_shape[1])
    return (table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]) > 0


def _scatter(parts: list[torch.Tensor], run: np.ndarray, tiles: int) -> torch.Tensor:
    """``(tiles, …)``: the concatenated ``parts`` at the indices ``run``, zeros elsewhere."""
    if not parts:
        raise ValueError("no tile of the image was needed")
    done = torch.cat(parts)
    if len(run) == tiles:
        return done
    out = done.new_zeros((tiles, *done.shape[1:]))
    out[torch.from_numpy(run)] = done
    return out
