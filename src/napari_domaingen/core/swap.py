"""Anatomy / style swap (DGM-DR): encode → split → mix → synthesize, on whole images of any size.

An image is cut into overlapping tiles of the model's size (MONAI ``dense_patch_slices``, overlap 0.25 by default),
each tile is encoded once (:func:`encode` → :class:`EncodedImage`, anatomy and style tokens per tile), and any
rendering re-synthesizes the tiles from anatomy tokens and a style, de-normalises them and blends them with
MONAI's Gaussian importance map (no seams). Encoding is the expensive part; rendering another style for an
already encoded image costs only the synthesis, so changing the style patch is interactive.

Styles (what goes into the characteristics half of every patch):

* :func:`style_at` — the style vector of the patch under a point of the style image, broadcast to every patch
  (the paper's mixing);
* :func:`mean_style` — the mean style over an image, or over a region (boolean mask);
* position-wise — :func:`render` with ``style=`` another :class:`EncodedImage` of the same size (aligned images);
* the image's own styles — :func:`reconstruct`.

Input images (:func:`as_rgb`): ``(Y, X, 3)`` RGB, ``(Y, X, 4)`` RGBA (composited on white), ``(Y, X)`` or
``(Y, X, 1)`` grayscale (repeated into three channels: the model only knows colour images, so the result is a
colour rendering of grey tissue), any integer depth (8-bit, 16-bit by its effective bit depth), floats in [0, 1].
Images smaller than one patch are refused; images smaller than a tile are padded by reflection and cropped back.
Outputs: ``(Y, X, 3)`` uint8, the input's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models.dgm import split_tokens, synthesize
from .swap_model import SwapModel

__all__ = [
    "EncodedImage",
    "as_rgb",
    "encode",
    "mean_style",
    "point_style",
    "random_styles",
    "reconstruct",
    "render",
    "style_at",
    "swap_pair",
]

DEFAULT_OVERLAP = 0.25
_TILE_BATCH = 32


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


@dataclass
class EncodedImage:
    """Tokens of every tile of an image.

    ``shape``: the image's ``(Y, X)``; ``padded``: the tiled canvas ``(Y', X')`` (≥ one tile per side);
    ``origins``: ``(T, 2)`` top-left pixel of each tile; ``anatomy``/``style``: ``(T, P, E/2)`` float32 (CPU);
    ``tile``: tile side in px; ``patch``: patch side in px.
    """

    shape: tuple[int, int]
    padded: tuple[int, int]
    origins: np.ndarray
    anatomy: torch.Tensor
    style: torch.Tensor
    tile: int
    patch: int

    @property
    def grid(self) -> int:
        return self.tile // self.patch

    def patch_index(self, y: float, x: float) -> tuple[int, int]:
        """``(tile, patch)`` whose patch holds pixel ``(y, x)``, taking the tile whose centre is nearest (most
        context around the point)."""
        y = min(max(float(y), 0.0), self.shape[0] - 1)
        x = min(max(float(x), 0.0), self.shape[1] - 1)
        centres = self.origins + self.tile / 2
        tile = int(np.argmin(((centres - np.array([y, x])) ** 2).sum(axis=1)))
        row = int((y - self.origins[tile, 0]) // self.patch)
        col = int((x - self.origins[tile, 1]) // self.patch)
        return tile, row * self.grid + col

    def patch_centres(self, tile: int) -> np.ndarray:
        """``(P, 2)`` pixel centres (y, x) of the patches of ``tile`` in image coordinates."""
        index = np.arange(self.grid)
        rows, cols = np.meshgrid(index, index, indexing="ij")
        centres = np.stack([rows.ravel(), cols.ravel()], axis=1) * self.patch + self.patch / 2
        return centres + self.origins[tile]


def _tiles(size: tuple[int, int], tile: int, overlap: float) -> np.ndarray:
    from monai.data.utils import dense_patch_slices, get_valid_patch_size

    roi = get_valid_patch_size(size, (tile, tile))
    interval = tuple(max(1, int(r * (1 - overlap))) for r in roi)
    slices = dense_patch_slices(size, roi, interval)
    return np.array([[s[0].start, s[1].start] for s in slices], dtype=np.int64)


def encode(
    model: SwapModel,
    image: np.ndarray,
    overlap: float = DEFAULT_OVERLAP,
    cancel: Callable[[], bool] | None = None,
    name: str = "image",
) -> EncodedImage:
    """Encode every tile of ``image`` (any input :func:`as_rgb` takes) → :class:`EncodedImage`."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    rgb = as_rgb(image, name)
    config = model.config
    tile, patch = config.img_size, config.patch_size
    height, width = rgb.shape[:2]
    if height < patch or width < patch:
        raise ValueError(f"{name}: {height} × {width} px is smaller than one {patch} × {patch} patch of the model")
    pad = (max(0, tile - height), max(0, tile - width))
    canvas = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="symmetric") if any(pad) else rgb
    origins = _tiles(canvas.shape[:2], tile, overlap)
    tensor = torch.from_numpy(canvas).permute(2, 0, 1)[None]
    anatomy, style = [], []
    with torch.inference_mode():
        for start in range(0, len(origins), _TILE_BATCH):
            if cancel is not None and cancel():
                from .progress import Cancelled

                raise Cancelled("encoding cancelled")
            batch = torch.cat(
                [tensor[:, :, y : y + tile, x : x + tile] for y, x in origins[start : start + _TILE_BATCH]]
            )
            tokens = model.encoder(model.normalise(batch.to(model.device)))
            a, s = split_tokens(tokens)
            anatomy.append(a.float().cpu())
            style.append(s.float().cpu())
    return EncodedImage(
        shape=(height, width),
        padded=canvas.shape[:2],
        origins=origins,
        anatomy=torch.cat(anatomy),
        style=torch.cat(style),
        tile=tile,
        patch=patch,
    )


def style_at(encoded: EncodedImage, y: float, x: float) -> torch.Tensor:
    """The style vector ``(E/2,)`` of the patch under pixel ``(y, x)``."""
    tile, index = encoded.patch_index(y, x)
    return encoded.style[tile, index].clone()


def mean_style(encoded: EncodedImage, mask: np.ndarray | None = None) -> torch.Tensor:
    """Mean style vector ``(E/2,)`` over the image's patches, or over those whose centre lies in ``mask`` ``(Y, X)``.

    Each image position counts once: a patch is used from the tile nearest to it (the rule of
    :meth:`EncodedImage.patch_index`), so overlapping tiles are not counted twice, and patches of the mirrored
    padding of small images are left out.
    """
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != encoded.shape:
            raise ValueError(f"the region mask is {mask.shape}, the image {encoded.shape}")
    tile_centres = encoded.origins + encoded.tile / 2
    chosen = []
    for tile in range(len(encoded.origins)):
        centres = encoded.patch_centres(tile)
        nearest = np.argmin(((centres[:, None, :] - tile_centres[None]) ** 2).sum(-1), axis=1)
        pixel = np.floor(centres).astype(int)
        keep = (nearest == tile) & (pixel[:, 0] < encoded.shape[0]) & (pixel[:, 1] < encoded.shape[1])
        if mask is not None:
            keep[keep] = mask[pixel[keep, 0], pixel[keep, 1]]
        if keep.any():
            chosen.append(encoded.style[tile][torch.from_numpy(keep)])
    if not chosen:
        raise ValueError("the region covers no patch centre of the style image; draw a larger region")
    return torch.cat(chosen).mean(0)


def random_styles(encoded: EncodedImage, count: int, seed: int = 0) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """``count`` style vectors of random patches (inside the image) with their pixel centres ``(y, x)``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        y, x = rng.uniform(0, encoded.shape[0]), rng.uniform(0, encoded.shape[1])
        out.append((style_at(encoded, y, x), (int(y), int(x))))
    return out


def render(
    model: SwapModel,
    anatomy: EncodedImage,
    style: torch.Tensor | EncodedImage | None = None,
) -> np.ndarray:
    """``(Y, X, 3)`` uint8: ``anatomy``'s tiles synthesized with ``style`` and blended.

    ``style``: a vector ``(E/2,)`` broadcast to every patch; an :class:`EncodedImage` of the same size
    (position-wise swap); ``None``: the image's own styles (reconstruction).
    """
    from monai.data.utils import compute_importance_map

    config = model.config
    if isinstance(style, EncodedImage):
        if style.shape != anatomy.shape or style.tile != anatomy.tile:
            raise ValueError(f"a position-wise swap needs images of the same size: {anatomy.shape} vs {style.shape}")
        styles: torch.Tensor = style.style
    elif style is None:
        styles = anatomy.style
    else:
        if style.shape != (anatomy.anatomy.shape[-1],):
            raise ValueError(
                f"a style vector of {anatomy.anatomy.shape[-1]} values is needed, got {tuple(style.shape)}"
            )
        styles = style.reshape(1, 1, -1).expand(len(anatomy.origins), 1, -1)
    tile = anatomy.tile
    weight = compute_importance_map((tile, tile), mode="gaussian", sigma_scale=0.125, device="cpu")
    canvas = torch.zeros(3, *anatomy.padded)
    total = torch.zeros(1, *anatomy.padded)
    with torch.inference_mode():
        for start in range(0, len(anatomy.origins), _TILE_BATCH):
            part = slice(start, start + _TILE_BATCH)
            pixels = synthesize(anatomy.anatomy[part], styles[part], config.in_channels, config.patch_size)
            pixels = model.denormalise(pixels)
            for (y, x), tile_pixels in zip(anatomy.origins[part], pixels):
                canvas[:, y : y + tile, x : x + tile] += tile_pixels * weight
                total[:, y : y + tile, x : x + tile] += weight
    out = (canvas / total.clamp_min(1e-12))[:, : anatomy.shape[0], : anatomy.shape[1]]
    return np.rint(out.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


def reconstruct(model: SwapModel, encoded: EncodedImage) -> np.ndarray:
    """The image re-synthesized from its own anatomy and style, ``(Y, X, 3)`` uint8."""
    return render(model, encoded, None)


def swap_pair(
    model: SwapModel,
    anatomy_image: np.ndarray,
    style_image: np.ndarray,
    style_point: Sequence[float] | None = None,
    overlap: float = DEFAULT_OVERLAP,
) -> np.ndarray:
    """One-call swap: ``anatomy_image`` rendered with the style of ``style_image`` at ``style_point`` (y, x) or,
    when ``None``, its mean style. ``(Y, X, 3)`` uint8 of the anatomy image's size."""
    if style_point is None:
        style = mean_style(encode(model, style_image, overlap, name="style image"))
    else:
        style = point_style(model, style_image, *style_point)
    return render(model, encode(model, anatomy_image, overlap, name="anatomy image"), style)


def point_style(model: SwapModel, image: np.ndarray, y: float, x: float) -> torch.Tensor:
    """The style vector ``(E/2,)`` of the patch under pixel ``(y, x)``, encoding only the tile centred there
    (as :func:`style_at` on a fully encoded image would, but one tile's cost)."""
    array = np.asarray(image)
    if array.ndim < 2:
        raise ValueError(f"style image: expected a 2D image, got shape {array.shape}")
    height, width = array.shape[:2]
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"the style point ({y:g}, {x:g}) lies outside the {height} × {width} style image")
    tile = model.config.img_size
    y0 = int(min(max(0, round(y) - tile // 2), max(0, height - tile)))
    x0 = int(min(max(0, round(x) - tile // 2), max(0, width - tile)))
    crop = array[y0 : y0 + tile, x0 : x0 + tile]
    return style_at(encode(model, crop, name="style image"), y - y0, x - x0)
