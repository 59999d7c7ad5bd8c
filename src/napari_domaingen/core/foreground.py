"""Where the subject is: the foreground of an MRI (skull-stripped or not) or CT volume, NaN voxels excluded.

The rule (docs/widgets/compare_representations.md#the-foreground):

1. Non-finite voxels (NaN, ±inf) are never foreground.
2. **Flat background** — the most common value on the volume's six faces (the border) covers at least
   :data:`FLAT_BORDER_SHARE` of the border while almost no border voxel (under :data:`NEAR_SHARE`) lies close to it
   (within :data:`NEAR_WIDTH` of the volume's 1–99 % range) without equalling it: an exactly constant background,
   as in skull-stripped MRI (0 around the brain; tissue values may be negative) or CT padding. The foreground is
   every voxel whose value differs from it.
3. Otherwise the *background level* is the median of the finite border voxels, and its spread their robust
   standard deviation (1.4826 × their median absolute deviation).
4. **Noisy background** — raw MRI noise, CT air: Otsu's threshold over the finite voxels, raised to at least
   the level plus :data:`NOISE_SIGMAS` spreads; the foreground is every voxel above it.
5. **No background** — when the border is not darker than Otsu's threshold, or varies by more than
   :data:`BACKGROUND_SPREAD_SHARE` of the range between its level and the volume's 99th percentile (a crop inside
   the anatomy, whose border is tissue), every finite voxel is foreground.
6. Holes are filled in 3D, so dark structures enclosed by tissue (ventricles, necrosis, sinuses) count.

Adding a constant to a volume, or scaling it by a positive factor, does not change its foreground.

Example::

    >>> import numpy as np
    >>> volume = np.zeros((20, 20, 20), np.float32)
    >>> volume[5:15, 5:15, 5:15] = -3.0           # skull-stripped tissue below the zero background
    >>> int(foreground_mask(volume).sum())
    1000
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: share of border voxels that must equal the background value for a "flat" (skull-stripped / padded) background
FLAT_BORDER_SHARE = 0.1
#: ... while at most this share of border voxels lies near that value (a noisy background has many)
NEAR_SHARE = 0.01
#: "near": within this fraction of the volume's 1st–99th percentile range
NEAR_WIDTH = 0.01
#: the threshold of a noisy background is at least this many robust standard deviations above its level
NOISE_SIGMAS = 3.0
#: a border whose spread exceeds this share of (99th percentile − level) is tissue, not background (a crop)
BACKGROUND_SPREAD_SHARE = 0.1
_MAX_SAMPLES = 2_000_000  # voxels (a regular sample) used for Otsu's threshold and the percentile


@dataclass(frozen=True)
class Foreground:
    """A foreground ``mask`` ``(Z, Y, X)`` bool and how it was found.

    ``rule``: ``"flat background"``, ``"noisy background"`` or ``"no background"``; ``level``: the border's
    background level; ``threshold``: the value the foreground lies above (noisy background only);
    ``non_finite``: how many NaN/inf voxels were left out.
    """

    mask: np.ndarray
    rule: str
    level: float
    threshold: float | None
    non_finite: int

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))


def border_values(image: np.ndarray) -> np.ndarray:
    """The finite values on the six faces of a ``(Z, Y, X)`` volume, float64 (each face voxel once or more)."""
    image = np.asarray(image)
    faces = [image[0], image[-1], image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]]
    values = np.concatenate([np.ravel(face) for face in faces]).astype(np.float64)
    return values[np.isfinite(values)]


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a 1D sample (scikit-image, 256 bins); the sample's minimum when it is constant."""
    from skimage.filters import threshold_otsu

    if values.size == 0 or values.min() == values.max():
        return float(values.min()) if values.size else 0.0
    return float(threshold_otsu(values, nbins=256))


def _sample(image: np.ndarray, finite: np.ndarray | None) -> np.ndarray:
    """A regular sample of at most :data:`_MAX_SAMPLES` finite voxel values, float64."""
    flat = np.ravel(image)
    step = max(1, int(np.ceil(flat.size / _MAX_SAMPLES)))
    values = flat[::step].astype(np.float64)
    if finite is not None:
        values = values[np.ravel(finite)[::step]]
    return values


def _flat_background(border: np.ndarray, sample: np.ndarray) -> float | None:
    """The exactly constant background value of the border (rule 2), or ``None``."""
    if border.size == 0:
        return None
    values, counts = np.unique(border, return_counts=True)
    value = float(values[counts.argmax()])
    if counts.max() < FLAT_BORDER_SHARE * border.size:
        return None
    low, high = np.percentile(sample, (1.0, 99.0))
    width = NEAR_WIDTH * float(high - low)
    near = np.count_nonzero((np.abs(border - value) <= width) & (border != value))
    return value if near <= NEAR_SHARE * border.size else None


def find_foreground(image: np.ndarray) -> Foreground:
    """The foreground of a ``(Z, Y, X)`` volume by the rule in this module's docstring.

    Raises ``ValueError`` for a volume that is not 3D or has no finite voxel.
    """
    from scipy.ndimage import binary_fill_holes

    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected a 3D volume (Z, Y, X), got shape {image.shape}")
    finite = np.isfinite(image) if image.dtype.kind in "fc" else None
    non_finite = 0 if finite is None else int(image.size - np.count_nonzero(finite))
    if non_finite == image.size:
        raise ValueError(f"the volume has no finite voxel (all {image.size:,} are NaN or infinite)")
    border = border_values(image)
    sample = _sample(image, finite)
    threshold: float | None = None
    flat = _flat_background(border, sample)
    if flat is not None:
        rule, level = "flat background", flat
        mask = image != level
    else:
        level = float(np.median(border)) if border.size else float(sample.min())
        spread = 1.4826 * float(np.median(np.abs(border - level))) if border.size else 0.0
        otsu = otsu_threshold(sample)
        top = float(np.percentile(sample, 99.0))
        if level >= otsu or spread > BACKGROUND_SPREAD_SHARE * (top - level):
            rule = "no background"
            mask = np.ones(image.shape, bool)
        else:
            rule = "noisy background"
            threshold = max(otsu, level + NOISE_SIGMAS * spread)
            mask = image > threshold
    if finite is not None:
        mask &= finite
    if rule != "no background":
        mask = binary_fill_holes(mask)
        if finite is not None:
            mask &= finite
    return Foreground(mask=mask, rule=rule, level=level, threshold=threshold, non_finite=non_finite)


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """``(Z, Y, X)`` bool: the foreground of :func:`find_foreground` (NaN/inf voxels excluded)."""
    return find_foreground(image).mask
