"""Feature stacks ``(C, Z, Y, X)`` → RGB volumes ``(Z, Y, X, 3)`` for display.

:class:`PCAProjection` is fitted on one volume's (foreground) voxels and can be applied unchanged to another
volume, with the same colour scaling, so equal colours mean equal features across volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .foreground import foreground_mask

ColourMode = Literal["pca", "channels"]


@dataclass(frozen=True)
class PCAProjection:
    """Top-3 principal axes of a voxel sample: ``mean`` (C,), ``components`` (3, C), colour range ``low``/``high``
    (3,)."""

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
        flat = features.reshape(features.shape[0], -1)
        components = self.components.astype(np.float32)
        scale = (1.0 / (self.high - self.low)).astype(np.float32)
        offset = (components @ self.mean.astype(np.float32) + self.low.astype(np.float32)) * scale
        projected = (components * scale[:, None]) @ flat  # one (3, C) x (C, N) product, float32
        projected -= offset[:, None]
        np.clip(projected, 0, 1, out=projected)
        return _finish(projected, features.shape[1:], mask, as_uint8)


@dataclass(frozen=True)
class ChannelProjection:
    """Three chosen channels as R, G, B with one percentile range per channel (fitted on the reference volume)."""

    channels: tuple[int, int, int]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        channels: tuple[int, int, int] = (0, 1, 2),
        mask: np.ndarray | None = None,
        max_samples: int = 200_000,
        percentiles: tuple[float, float] = (1.0, 99.0),
        seed: int = 0,
    ) -> ChannelProjection:
        """Colour range of ``channels`` of ``features`` (C, Z, Y, X) from a voxel sample inside ``mask``."""
        bad = [c for c in channels if not 0 <= c < features.shape[0]]
        if len(channels) != 3 or bad:
            raise ValueError(f"choose three channels in 0…{features.shape[0] - 1}, got {tuple(channels)}")
        samples = _sample_voxels(features[list(channels)], mask, max_samples, seed)
        low, high = np.percentile(samples, percentiles, axis=0)
        return cls(channels=tuple(int(c) for c in channels), low=low, high=np.maximum(high, low + 1e-6))

    def apply(self, features: np.ndarray, mask: np.ndarray | None = None, as_uint8: bool = True) -> np.ndarray:
        """``(C, Z, Y, X)`` → ``(Z, Y, X, 3)`` with this projection's channels and scaling."""
        flat = features.reshape(features.shape[0], -1)
        projected = np.empty((3, flat.shape[1]), np.float32)
        for i, channel in enumerate(self.channels):
            np.subtract(flat[channel], self.low[i], out=projected[i], casting="unsafe")
            projected[i] /= self.high[i] - self.low[i]
        np.clip(projected, 0, 1, out=projected)
        return _finish(projected, features.shape[1:], mask, as_uint8)


def _finish(projected: np.ndarray, spatial: tuple[int, ...], mask: np.ndarray | None, as_uint8: bool) -> np.ndarray:
    """``(3, N)`` values in [0, 1] → ``(*spatial, 3)`` uint8 or float32, black outside ``mask``."""
    if mask is not None:
        projected[:, ~np.asarray(mask).ravel()] = 0
    if as_uint8:
        projected *= 255
        projected = projected.astype(np.uint8)
    return np.ascontiguousarray(projected.T).reshape(tuple(spatial) + (3,))


def _sample_voxels(features: np.ndarray, mask: np.ndarray | None, max_samples: int, seed: int) -> np.ndarray:
    channels = features.shape[0]
    flat = features.reshape(channels, -1)
    index = np.flatnonzero(mask) if mask is not None else np.arange(flat.shape[1])
    if index.size > max_samples:
        index = np.sort(np.random.default_rng(seed).choice(index, max_samples, replace=False))
    return flat[:, index].T.astype(np.float64)


def render_rgb(
    features: np.ndarray,
    image: np.ndarray | None = None,
    mode: ColourMode = "pca",
    channels: tuple[int, int, int] = (0, 1, 2),
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, bool]:
    """``(C, Z, Y, X)`` → ``(Z, Y, X, 3)`` uint8 fitted on (and masked to) the foreground of ``image`` when it has
    one (or on ``mask`` ``(Z, Y, X)`` bool, that foreground already found); returns ``(rgb, masked)``."""
    if mask is None and image is not None:
        mask = foreground_mask(np.asarray(image))
    if mask is not None and mask.sum() < 3:
        mask = None
    return colour_projection(features, mask, mode, channels).apply(features, mask), mask is not None


def pca_rgb(features: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """One-call RGB preview: PCA fitted on the foreground of ``image`` (if given), ``(Z, Y, X, 3)`` uint8."""
    return render_rgb(features, image)[0]


def colour_projection(
    features: np.ndarray, mask: np.ndarray | None, mode: ColourMode = "pca", channels: tuple[int, int, int] = (0, 1, 2)
) -> PCAProjection | ChannelProjection:
    """The colour projection fitted on a reference volume's features ``(C, Z, Y, X)`` inside ``mask``."""
    if mode == "pca":
        return PCAProjection.fit(features, mask)
    if mode == "channels":
        return ChannelProjection.fit(features, channels, mask)
    raise ValueError(f"unknown colour mode {mode!r}; use 'pca' or 'channels'")
