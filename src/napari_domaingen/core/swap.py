"""Anatomy / style swap (DGM-DR) on whole images: styles, rendering, the detail carry-over, glass and colours.

:func:`~napari_domaingen.core.swap_encoding.encode` keeps the anatomy and style tokens of every tile of an image
(seamless tilings by default); :func:`render` re-synthesizes the tiles from anatomy tokens and a style,
de-normalises and blends them. Rendering another style for an encoded image costs only the synthesis, so changing
the style is interactive.

Styles (what goes into the characteristics half of every patch):

* :func:`style_at` — the style vector of the patch under a point of the style image, broadcast to every patch
  (the paper's mixing); :func:`point_style` encodes only the model tile that holds the point (in the image's
  grid of tiles), with the same result;
* :func:`mean_style` — the mean style over the image's tissue patches (default; glass left out), over all its
  patches, or over a region (boolean mask);
* position-wise — :func:`render` with ``style=`` another :class:`EncodedImage` of the same size (aligned images);
* the image's own styles — :func:`reconstruct`.

**Detail carry-over** (``render(..., detail=True)``, the default for swaps): the rank-limited synthesizer loses fine
detail, and a style broadcast to every patch leaves a faint texture that repeats with the patch. The render's
colours are kept and the structure is taken from the anatomy image with a guided filter in optical density
(:func:`~napari_domaingen.core.detail.carry_detail`: per 33 px window, each channel is the affine function of the
anatomy image's grey optical density that best fits the render). ``detail=False`` gives the model's own render.

**The style's glass and tissue colours** (``render(..., glass=, colours=)``, the swap job's defaults): the model
renders glass in the style's tissue colours and barely moves stains it never saw. With ``glass`` the anatomy's glass
is the style image's glass colour with the anatomy's light and shade (:func:`onto_glass`), mixed with the render by
the feathered tissue weight; with ``colours`` the render's tissue colours are mapped onto the style image's
(:mod:`~napari_domaingen.core.colour_match`) where that weight reaches.

Outputs: ``(Y, X, 3)`` uint8, the input's size.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.dgm import synthesize
from ..typing import Precision
from .colour_match import ColourMap, TissueColours, tissue_lab
from .detail import carry_detail
from .swap_encoding import DEFAULT_OVERLAP, TILE_BATCH, EncodedImage, as_rgb, encode, grid_shift, patch_window
from .swap_model import SwapModel

__all__ = [
    "DEFAULT_OVERLAP",
    "GLASS_REACH",
    "EncodedImage",
    "as_rgb",
    "encode",
    "mean_style",
    "feathered",
    "glass_under",
    "onto_glass",
    "point_style",
    "random_styles",
    "reconstruct",
    "render",
    "style_at",
]

#: a patch counts as tissue for the mean style when at least this share of its pixels is tissue
TISSUE_SHARE = 0.5


def style_at(encoded: EncodedImage, y: float, x: float) -> torch.Tensor:
    """The style vector ``(E/2,)`` of the patch under pixel ``(y, x)``."""
    tile, index = encoded.patch_index(y, x)
    return encoded.style[tile, index].clone()


def _patch_shares(mask: np.ndarray, centres: np.ndarray, patch: int) -> np.ndarray:
    """Share of ``mask`` pixels in the ``patch``-px square around each of ``centres`` ``(N, 2)`` (clipped to the
    image), from a summed-area table."""
    table = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    half = patch // 2
    y0 = np.clip(np.floor(centres[:, 0]).astype(int) - half, 0, mask.shape[0])
    x0 = np.clip(np.floor(centres[:, 1]).astype(int) - half, 0, mask.shape[1])
    y1, x1 = np.clip(y0 + patch, 0, mask.shape[0]), np.clip(x0 + patch, 0, mask.shape[1])
    area = np.maximum((y1 - y0) * (x1 - x0), 1)
    return (table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]) / area


def mean_style(encoded: EncodedImage, mask: np.ndarray | None = None, tissue_only: bool = True) -> torch.Tensor:
    """Mean style vector ``(E/2,)`` over the image's patches.

    ``mask`` ``(Y, X)`` bool: the patches whose centre lies in it (a drawn region). Without a mask and with
    ``tissue_only``: the patches at least half tissue (:mod:`~napari_domaingen.core.tissue`), so the glass around
    the tissue does not dilute the stain's look; all patches when none is. Each image position counts once: a
    patch is taken from the first tiling, from the tile nearest to it, and patches of the mirrored padding are
    left out.
    """
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != encoded.shape:
            raise ValueError(f"the region mask is {mask.shape}, the image {encoded.shape}")
    tiles = encoded.first_tiling()
    tile_centres = encoded.origins[tiles] - encoded.margin + encoded.tile / 2
    chosen, centres_kept = [], []
    for position, tile in enumerate(tiles):
        centres = encoded.patch_centres(int(tile))
        nearest = np.argmin(((centres[:, None, :] - tile_centres[None]) ** 2).sum(-1), axis=1)
        inside = (centres[:, 0] >= 0) & (centres[:, 1] >= 0)
        inside &= (centres[:, 0] < encoded.shape[0]) & (centres[:, 1] < encoded.shape[1])
        keep = (nearest == position) & inside
        if mask is not None:
            pixel = np.floor(centres[keep]).astype(int)
            keep[keep] = mask[pixel[:, 0], pixel[:, 1]]
        if keep.any():
            chosen.append(encoded.style[int(tile)][torch.from_numpy(keep)])
            centres_kept.append(centres[keep])
    if not chosen:
        raise ValueError("the region covers no patch centre of the style image; draw a larger region")
    styles = torch.cat(chosen)
    if mask is None and tissue_only and encoded.tissue is not None:
        shares = _patch_shares(encoded.tissue, np.concatenate(centres_kept), encoded.patch)
        if (shares >= TISSUE_SHARE).any():
            styles = styles[torch.from_numpy(shares >= TISSUE_SHARE)]
    return styles.mean(0)


def random_styles(encoded: EncodedImage, count: int, seed: int = 0) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """``count`` style vectors of random patches (inside the image) with their pixel centres ``(y, x)``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        y, x = rng.uniform(0, encoded.shape[0]), rng.uniform(0, encoded.shape[1])
        out.append((style_at(encoded, y, x), (int(y), int(x))))
    return out


def _styles_for(anatomy: EncodedImage, style: torch.Tensor | EncodedImage | None) -> torch.Tensor:
    """``(T, P or 1, E/2)`` styles for every tile of ``anatomy``."""
    if isinstance(style, EncodedImage):
        same = style.shape == anatomy.shape and style.tile == anatomy.tile and style.seamless == anatomy.seamless
        if not same or not np.array_equal(style.origins, anatomy.origins):
            raise ValueError(
                f"a position-wise swap needs images of the same size, encoded alike: {anatomy.shape} vs {style.shape}"
            )
        return style.style
    if style is None:
        return anatomy.style
    if style.shape != (anatomy.anatomy.shape[-1],):
        raise ValueError(f"a style vector of {anatomy.anatomy.shape[-1]} values is needed, got {tuple(style.shape)}")
    return style.reshape(1, 1, -1).expand(len(anatomy.origins), 1, -1)


def _synthesized(model: SwapModel, encoded: EncodedImage, styles: torch.Tensor, tiles: np.ndarray) -> torch.Tensor:
    """``(len(tiles), 3, T, T)`` float32 in [0, 1]: the de-normalised synthesis of the given tiles."""
    config, out = model.config, []
    with torch.inference_mode():
        for start in range(0, len(tiles), TILE_BATCH):
            part = torch.from_numpy(tiles[start : start + TILE_BATCH])
            pixels = synthesize(encoded.anatomy[part], styles[part], config.in_channels, config.patch_size)
            out.append(model.denormalise(pixels).cpu())
    return torch.cat(out)


def _blend(model: SwapModel, encoded: EncodedImage, styles: torch.Tensor) -> torch.Tensor:
    """``(3, Y, X)`` float32 in [0, 1]: every tile synthesized, de-normalised and blended, cropped to the image.

    Seamless: each tiling is a regular grid of abutting tiles, laid out a band of tile rows at a time by one
    reshape; plain: tile by tile, a batch at a time."""
    from monai.data.utils import compute_importance_map

    tile, m, (height, width) = encoded.tile, encoded.margin, encoded.shape
    canvas = torch.zeros(3, *encoded.padded)
    total = torch.zeros(1, *encoded.padded)
    if encoded.seamless:
        window = patch_window(tile, encoded.patch)
        for tiling in np.unique(encoded.grids):
            tiles = np.flatnonzero(encoded.grids == tiling)  # row-major
            cols = len(np.unique(encoded.origins[tiles, 1]))
            grid = tiles.reshape(-1, cols)
            band = max(1, TILE_BATCH * 4 // cols)
            for first in range(0, len(grid), band):
                rows = grid[first : first + band]
                pixels = _synthesized(model, encoded, styles, rows.ravel()) * window
                mosaic = pixels.reshape(len(rows), cols, 3, tile, tile).permute(2, 0, 3, 1, 4)
                y, x = encoded.origins[rows[0, 0]]
                where = (slice(None), slice(y, y + len(rows) * tile), slice(x, x + cols * tile))
                canvas[where] += mosaic.reshape(3, len(rows) * tile, -1)
                total[where] += window.repeat(len(rows), cols)
        return (canvas / total.clamp_min(1e-12))[:, m : m + height, m : m + width]
    weight = compute_importance_map((tile, tile), mode="gaussian", sigma_scale=0.125, device="cpu")
    for start in range(0, len(encoded.origins), TILE_BATCH):
        tiles = np.arange(start, min(start + TILE_BATCH, len(encoded.origins)))
        for (y, x), pixels in zip(encoded.origins[tiles], _synthesized(model, encoded, styles, tiles) * weight):
            canvas[:, y : y + tile, x : x + tile] += pixels
            total[:, y : y + tile, x : x + tile] += weight
    return (canvas / total.clamp_min(1e-12))[:, m : m + height, m : m + width]


def render(
    model: SwapModel,
    anatomy: EncodedImage,
    style: torch.Tensor | EncodedImage | None = None,
    detail: bool = True,
    glass: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    glass_grey: float | None = None,
    colours: TissueColours | ColourMap | None = None,
) -> np.ndarray:
    """``(Y, X, 3)`` uint8: ``anatomy``'s tiles synthesized with ``style`` and blended.

    ``style``: a vector ``(E/2,)`` broadcast to every patch; an :class:`EncodedImage` of the same size
    (position-wise swap); ``None``: the image's own styles (the reconstruction, never detail-corrected).
    ``detail``: carry the anatomy image's fine detail over (module docstring). ``glass``: ``(3,)`` in [0, 1], the
    style image's glass colour (:func:`~napari_domaingen.core.tissue.glass_colour`): the anatomy's glass is drawn
    in it, only its tissue takes the model's render (:func:`onto_glass`; not for a reconstruction). ``weight``
    ``(Y, X)`` and ``glass_grey``: the anatomy's tissue weight and glass luminance when judged otherwise than by its
    encoding (a slide block, against the whole slide's glass). ``colours``: the style image's tissue colours
    (:class:`~napari_domaingen.core.colour_match.TissueColours`), matched on the render's tissue by a map fitted
    to this render, or a :class:`~napari_domaingen.core.colour_match.ColourMap` fitted elsewhere (a slide's, once
    per job); with ``glass``, only the pixels the tissue weight reaches are mapped.
    """
    out = _blend(model, anatomy, _styles_for(anatomy, style)).permute(1, 2, 0).numpy()
    if detail and style is not None:
        if anatomy.grey is None:
            raise ValueError("this encoded image keeps no grey levels of its input; encode it again")
        out = carry_detail(anatomy.grey, out)
    if style is None or (glass is None and colours is None):
        return np.rint(out * 255.0).astype(np.uint8)
    weight = anatomy.weight if weight is None else weight
    glass_grey = anatomy.glass_grey if glass_grey is None else glass_grey
    if weight is None or glass_grey is None or anatomy.grey is None:
        raise ValueError("this encoded image keeps no tissue weight of its input; encode it again")
    alpha = feathered(weight)
    if colours is not None:
        out = _matched(out, weight, alpha, colours, glass is not None)
    if glass is not None:
        out = onto_glass(out, weight, glass, anatomy.grey, glass_grey, alpha=alpha)
    return np.rint(out * 255.0).astype(np.uint8)


def _matched(
    out: np.ndarray, weight: np.ndarray, alpha: np.ndarray, colours: TissueColours | ColourMap, on_glass: bool
) -> np.ndarray:
    """The render ``out`` ``(Y, X, 3)`` float with its tissue colours mapped (:mod:`.colour_match`) where the
    feathered tissue weight ``alpha`` of :func:`onto_glass` is not 0; without the style's glass (``on_glass``
    false) mixed with the model's colours by ``alpha``, so the model's glass keeps its colours."""
    if isinstance(colours, TissueColours):
        lab = tissue_lab(out, weight)
        if lab is None:  # (almost) no tissue: nothing to match
            return out
        colours = ColourMap.fit(lab, colours)
    mapped = colours.apply(out, alpha > 0)
    if on_glass:
        return mapped
    return out + alpha[..., None] * (mapped - out)


def feathered(weight: np.ndarray) -> np.ndarray:
    """``(Y, X)`` float32: the tissue ``weight`` softened by a Gaussian of σ :data:`GLASS_FEATHER` px (0 farther
    than :data:`GLASS_REACH` px from its non-zero pixels)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(weight.astype(np.float32, copy=False), GLASS_FEATHER)


#: px: the tissue weight is softened by a Gaussian of this σ when the render is set onto the glass
GLASS_FEATHER = 1.5
#: px: how far the softened weight reaches beyond the tissue weight's non-zero pixels (scipy truncates at 4 σ)
GLASS_REACH = int(4.0 * GLASS_FEATHER + 0.5)


def onto_glass(
    rgb: np.ndarray,
    weight: np.ndarray,
    glass: np.ndarray,
    grey: np.ndarray,
    glass_grey: float,
    alpha: np.ndarray | None = None,
) -> np.ndarray:
    """``(Y, X, 3)`` float32 in [0, 1]: the render ``rgb`` on the anatomy's tissue, the style's ``glass`` ``(3,)``
    on its glass, mixed by the tissue ``weight`` ``(Y, X)`` in [0, 1]
    (:func:`~napari_domaingen.core.tissue.tissue_weight`, softened by a Gaussian of σ :data:`GLASS_FEATHER` px).
    The glass keeps the anatomy's light and shade: it is ``glass`` times the anatomy's ``grey`` over its glass's
    luminance ``glass_grey`` (clipped to [0, 1.1]), so faint structure on the glass stays. The model's render of
    glass — its colour, and the bright band it draws along tissue edges — never shows. ``alpha``: the softened
    weight (:func:`feathered`), when already at hand."""
    if weight.shape != rgb.shape[:2] or grey.shape != rgb.shape[:2]:
        raise ValueError(f"the tissue weight is {weight.shape} and the grey {grey.shape}, the render {rgb.shape[:2]}")
    alpha = feathered(weight) if alpha is None else alpha
    under = glass_under(glass, grey, glass_grey)
    out = np.array(rgb, dtype=np.float32)  # under + alpha · (rgb − under), in place
    out -= under
    out *= alpha[..., None]
    out += under
    return np.clip(out, 0.0, 1.0, out=out)


def glass_under(glass: np.ndarray, grey: np.ndarray, glass_grey: float) -> np.ndarray:
    """``(Y, X, 3)`` float32: the style's ``glass`` ``(3,)`` with the anatomy's light and shade (:func:`onto_glass`)."""
    light = np.clip(grey / np.float32(max(glass_grey, 1e-3)), 0.0, 1.1)[..., None]
    return np.asarray(glass, np.float32).reshape(1, 1, 3) * light


def reconstruct(model: SwapModel, encoded: EncodedImage) -> np.ndarray:
    """The image re-synthesized from its own anatomy and style, ``(Y, X, 3)`` uint8 (what the model keeps)."""
    return render(model, encoded, None)


def point_style(model: SwapModel, image: np.ndarray, y: float, x: float, precision: Precision = "auto") -> torch.Tensor:
    """The style vector ``(E/2,)`` of the patch under pixel ``(y, x)``, encoding only the model tile that holds
    it in the image's grid of tiles (tiles from pixel (0, 0), mirrored beyond the image): what :func:`style_at`
    gives on a seamless encoding of the whole image, at one tile's cost."""
    array = np.asarray(image)
    if array.ndim < 2:
        raise ValueError(f"style image: expected a 2D image, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        array = as_rgb(array, "style image")  # scaled by the whole image's bit depth, not the tile's
    height, width = array.shape[:2]
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"the style point ({y:g}, {x:g}) lies outside the {height} × {width} style image")
    tile, patch = model.config.img_size, model.config.patch_size
    if height < patch or width < patch:
        raise ValueError(f"style image: {height} × {width} px is smaller than one {patch} × {patch} patch of the model")
    y0, x0 = int(y // tile) * tile, int(x // tile) * tile
    shift = grid_shift(tile, patch)  # the seamless canvas' margin: the same mirrored pixels as encode()

    def rows(size: int, origin: int) -> np.ndarray:
        return np.pad(np.arange(size), (shift, tile), mode="symmetric")[shift + origin : shift + origin + tile]

    crop = array[np.ix_(rows(height, y0), rows(width, x0))]
    encoded = encode(model, crop, name="style image", seamless=False, precision=precision)
    return style_at(encoded, y - y0, x - x0)
