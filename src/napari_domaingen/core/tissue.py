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

__all__ = ["MIN_DENSITY", "MIN_GLASS", "glass_level", "tissue_mask"]

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
