"""Feature stacks ``(C, Z, Y, X)`` → RGB volumes ``(Z, Y, X, 3)`` for display.

:class:`PCAProjection` is fitted on one volume's (foreground) voxels and can be applied unchanged to another
volume, with the same colour scaling, so equal colours mean equal features across volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PCAProjection:
    """Top-3 principal axes of a voxel sample: ``mean`` (C,), ``components`` (3, C), colour range ``low``/``high`` (3,)."""

    mean: np.ndarray
    components: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        mask: np.ndarray | None = None,
        max_samples: int = 200_000,
        percentiles: tuple[float, float] = (1.0, 99.0),
        seed: int = 0,
    ) -> PCAProjection:
        """Fit on a random sample of ≤ ``max_samples`` voxels of ``features`` (C, Z, Y, X) inside ``mask`` (Z, Y, X)."""
        samples = _sample_voxels(features, mask, max_samples, seed)
        if samples.shape[0] < 3:
            raise ValueError("too few foreground voxels to fit a colour projection")
        mean = samples.mean(axis=0)
        centred = samples - mean
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        components = vt[:3] if vt.shape[0] >= 3 else np.vstack([vt, np.zeros((3 - vt.shape[0], vt.shape[1]))])
        # a deterministic sign per component: the largest loading is positive
        signs = np.sign(components[np.arange(3), np.abs(components).argmax(axis=1)])
        components = components * np.where(signs == 0, 1, signs)[:, None]
        projected = centred @ components.T
        low, high = np.percentile(projected, percentiles, axis=0)
        return cls(mean=mean, components=components, low=low, high=np.maximum(high, low + 1e-6))

    def apply(self, features: np.ndarray, mask: np.ndarray | None = None, as_uint8: bool = True) -> np.ndarray:
        """``(C, Z, Y, X)`` → ``(Z, Y, X, 3)`` uint8 (or float in [0, 1]); voxels outside ``mask`` are black."""
        channels = features.shape[0]
        flat = features.reshape(channels, -1)
        rgb = np.empty((flat.shape[1], 3), np.float32)
        step = 1 << 20
        for start in range(0, flat.shape[1], step):  # bounded memory for large volumes
            block = flat[:, start : start + step].T.astype(np.float32) - self.mean
            rgb[start : start + step] = (block @ self.components.T - self.low) / (self.high - self.low)
        np.clip(rgb, 0, 1, out=rgb)
        rgb = rgb.reshape(features.shape[1:] + (3,))
        if mask is not None:
            rgb[~mask] = 0
        return (rgb * 255).astype(np.uint8) if as_uint8 else rgb


def _sample_voxels(features: np.ndarray, mask: np.ndarray | None, max_samples: int, seed: int) -> np.ndarray:
    channels = features.shape[0]
    flat = features.reshape(channels, -1)
    index = np.flatnonzero(mask) if mask is not None else np.arange(flat.shape[1])
    if index.size > max_samples:
        index = np.sort(np.random.default_rng(seed).choice(index, max_samples, replace=False))
    return flat[:, index].T.astype(np.float64)


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Voxels above the lowest intensity (background of skull-stripped MRI, air in CT after windowing)."""
    image = np.asarray(image)
    return image > image.min()


def pca_rgb(features: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """One-call RGB preview: PCA fitted on the foreground of ``image`` (if given), ``(Z, Y, X, 3)`` uint8."""
    mask = foreground_mask(image) if image is not None else None
    if mask is not None and mask.sum() < 3:
        mask = None
    return PCAProjection.fit(features, mask).apply(features, mask)
