"""Where the tissue is on a histology image: pixels that absorb light, as opposed to the glass around them.

Rule: the glass colour is the bright end of the image (per channel, the 99th percentile, at least
:data:`MIN_GLASS`); a pixel is tissue when its optical density ``−ln(I / glass)`` exceeds :data:`MIN_DENSITY`
(Macenko's β, 0.15) in any channel. Tissue that is paler than that (a nearly transparent stroma on an image
without glass) counts as glass; a blank image has no tissue.

Example::

    >>> import numpy as np
    >>> rgb = np.full((4, 4, 3), 240, np.uint8)
    >>> rgb[:2] = (120, 60, 140)                  # stained tissue on the top half
    >>> tissue_mask(rgb).sum(axis=1).tolist()
    [4, 4, 0, 0]
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_DENSITY", "MIN_GLASS", "tissue_mask"]

#: optical density above which a channel absorbs (Macenko et al. 2009, β)
MIN_DENSITY = 0.15
#: the glass is never taken darker than this (fraction of white), so that an all-tissue image is not all glass
MIN_GLASS = 0.8


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """``(Y, X)`` bool: tissue pixels of ``(Y, X, 3)`` RGB, uint8 or float in [0, 1]."""
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[-1] < 3:
        raise ValueError(f"expected an RGB image (Y, X, 3), got shape {array.shape}")
    values = array[..., :3].astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        values /= float(np.iinfo(array.dtype).max)
    step = max(1, int(np.sqrt(values.shape[0] * values.shape[1] / 250_000)))
    glass = np.percentile(values[::step, ::step].reshape(-1, 3), 99, axis=0).clip(MIN_GLASS, 1.0)
    # OD = −ln(I / glass) > MIN_DENSITY  ⇔  I < glass · exp(−MIN_DENSITY), without a logarithm per pixel
    return (values < (glass * np.exp(-MIN_DENSITY)).astype(np.float32)).any(axis=-1)
