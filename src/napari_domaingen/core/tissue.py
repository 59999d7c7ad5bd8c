"""Where the tissue is on a histology image: pixels that absorb light, as opposed to the glass around them.

Rule: the glass colour is the bright end of the image (per channel, the 99th percentile, at least
:data:`MIN_GLASS`); a pixel is tissue when its optical density ``−ln(I / glass)`` exceeds :data:`MIN_DENSITY`
(Macenko's β, 0.15) in any channel. Tissue that is paler than that (a nearly transparent stroma on an image
without glass) counts as glass; a blank image has no tissue. :func:`glass_level` is the glass colour of an image by
this rule; ``tissue_mask(rgb, glass=…)`` judges pixels against a glass measured elsewhere (a whole slide's, so that
a block of it is judged as the slide is, whatever the block).

Example::

    >>> import numpy as np
    >>> rgb = np.full((4, 4, 3), 240, np.uint8)
    >>> rgb[:2] = (120, 60, 140)                  # stained tissue on the top half
    >>> tissue_mask(rgb).sum(axis=1).tolist()
    [4, 4, 0, 0]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_DENSITY",
    "MIN_GLASS",
    "NEAR_TISSUE",
    "SOFT_DENSITY",
    "glass_colour",
    "glass_level",
    "tissue_mask",
    "tissue_weight",
]

#: optical density above which a channel absorbs (Macenko et al. 2009, β)
MIN_DENSITY = 0.15
#: the glass is never taken darker than this (fraction of white), so that an all-tissue image is not all glass
MIN_GLASS = 0.8


def _checked(rgb: np.ndarray) -> np.ndarray:
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[-1] < 3:
        raise ValueError(f"expected an RGB image (Y, X, 3), got shape {array.shape}")
    return array


def _values(rgb: np.ndarray) -> np.ndarray:
    """``(Y, X, 3)`` float32 in [0, 1] (float32 input without a copy)."""
    array = _checked(rgb)
    values = array[..., :3].astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.integer):
        values /= float(np.iinfo(array.dtype).max)
    return values


def _glass(rgb: np.ndarray) -> np.ndarray:
    """The rule's glass colour of ``(Y, X, ≥3)`` RGB, from a strided sample of about 0.25 Mpx."""
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))
    return np.percentile(_values(rgb[::step, ::step]).reshape(-1, 3), 99, axis=0).clip(MIN_GLASS, 1.0)


def glass_level(rgb: np.ndarray) -> np.ndarray:
    """``(3,)`` float32: the glass colour of ``(Y, X, 3)`` RGB (uint8 or float in [0, 1]) by the rule, as a
    fraction of white: per channel the 99th percentile of the image, at least :data:`MIN_GLASS`."""
    return _glass(_checked(rgb)).astype(np.float32)


def tissue_mask(rgb: np.ndarray, glass: np.ndarray | None = None) -> np.ndarray:
    """``(Y, X)`` bool: tissue pixels of ``(Y, X, 3)`` RGB, uint8 or float in [0, 1]. ``glass``: ``(3,)`` the
    glass colour to judge against (fraction of white; default: the image's own, :func:`glass_level`)."""
    array = _checked(rgb)
    if glass is None:
        glass = _glass(array)
    # OD = −ln(I / glass) > MIN_DENSITY  ⇔  I < glass · exp(−MIN_DENSITY), without a logarithm per pixel
    limits = (np.asarray(glass, np.float32).reshape(3) * np.exp(-MIN_DENSITY)).astype(np.float32)
    if array.dtype == np.uint8:
        # the same float32 test tabulated over the 256 levels: it is monotone, so per channel "level < cut-off"
        # on the uint8 values themselves (no float copy of a slide block)
        levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
        limits = np.array([int((levels < limit).sum()) for limit in limits])
    else:
        array = _values(array)
    mask = array[..., 0] < limits[0]
    for channel in (1, 2):
        mask |= array[..., channel] < limits[channel]
    return mask


#: fewer glass pixels than this share of the image: its glass colour is the rule's glass level instead
MIN_GLASS_SHARE = 0.01


def glass_colour(rgb: np.ndarray) -> np.ndarray:
    """``(3,)`` float32 in [0, 1]: the colour of ``(Y, X, 3)`` RGB's glass — the per-channel median of its glass
    pixels (not :func:`tissue_mask`), from a strided sample of about 0.25 Mpx; the rule's :func:`glass_level` when
    under :data:`MIN_GLASS_SHARE` of the pixels are glass (an image that is all tissue)."""
    array = _checked(rgb)
    step = max(1, int(np.sqrt(array.shape[0] * array.shape[1] / 250_000)))
    sample = array[::step, ::step]
    glass = ~tissue_mask(sample)
    if glass.mean() < MIN_GLASS_SHARE:
        return glass_level(array)
    return np.median(_values(sample)[glass], axis=0).astype(np.float32)


#: the soft tissue weight rises from 0 to 1 between these optical densities (the largest of the channels)
SOFT_DENSITY = (0.05, 0.30)
#: px: pixels fainter than tissue (:func:`tissue_mask`) weigh more than 0 only this close to a tissue pixel
#: (a square of side 2 · NEAR_TISSUE + 1); farther out they are glass: noise, dust, uneven light
NEAR_TISSUE = 48


def tissue_weight(rgb: np.ndarray, glass: np.ndarray | None = None, tissue: np.ndarray | None = None) -> np.ndarray:
    """``(Y, X)`` float32 in [0, 1]: how much each pixel of ``(Y, X, 3)`` RGB is tissue — a smooth step of its
    largest channel optical density against ``glass`` (default: the image's :func:`glass_level`) from
    :data:`SOFT_DENSITY` 0.05 (glass) to 0.30 (tissue), around the mask's 0.15, and 0 farther than
    :data:`NEAR_TISSUE` px from every pixel of :func:`tissue_mask`. Faint tissue near the mask's threshold is partly
    tissue, so a swap does not cut it into specks of rendered tissue on flat glass; faint specks on the glass far
    from tissue stay glass. ``tissue``: the image's :func:`tissue_mask` against the same glass, if at hand."""
    from scipy.ndimage import maximum_filter

    array = _checked(rgb)
    if glass is None:
        glass = _glass(array)
    glass = np.asarray(glass, np.float32).reshape(3)
    # the largest channel density is the smallest channel's ratio to the glass (channel by channel: fast)
    values = _values(array)
    ratio = np.clip(values[..., 0], 1.0 / 255.0, None) / glass[0]
    for channel in (1, 2):
        np.minimum(ratio, np.clip(values[..., channel], 1.0 / 255.0, None) / glass[channel], out=ratio)
    density = -np.log(ratio)
    low, high = SOFT_DENSITY
    step = np.clip((density - low) / (high - low), 0.0, 1.0)
    weight = (step * step * (3.0 - 2.0 * step)).astype(np.float32)
    tissue = tissue_mask(array, glass) if tissue is None else tissue
    near = maximum_filter(tissue, size=2 * NEAR_TISSUE + 1, mode="constant", cval=False)
    weight[~near] = 0.0
    return weight
