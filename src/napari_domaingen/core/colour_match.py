"""The style image's tissue colours on a swap's tissue: colour statistics matched in CIELAB at render time.

The swap model renders the anatomy's tissue in its idea of the style; on stains it never saw, that idea is pale
and close to the anatomy's own colours. The render's tissue colours are therefore mapped onto the style image's
tissue colours, measured on the tissue pixels of both (:func:`~napari_domaingen.core.tissue.tissue_weight`
above 0.5), in two steps fitted once per swap:

1. a linear map in CIELAB that takes the render's mean and covariance to the style's (the Monge–Kantorovich
   map between two Gaussians: it moves all three axes together, so a stain's hue and its darkness move as one);
2. per chroma channel (a*, b*), the quantiles of the mapped render to the style's quantiles (monotone, so the
   order of colours — the structure — is kept; L* keeps the linear map, which keeps the grey structure).

Chosen by the leave-one-source-out benchmark (``benchmarks/bench_swap_quality.py --loso``) over matching in optical
density, Reinhard-style per-channel means and standard deviations and full per-channel quantile matching
(docs/swap.md). The glass is not mapped: it takes the style's glass (:func:`~napari_domaingen.core.swap.onto_glass`).

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> style = rng.normal((0.6, 0.3, 0.5), 0.05, (64, 64, 3)).clip(0, 1)       # a pink tissue
    >>> render = rng.normal((0.5, 0.4, 0.6), 0.05, (64, 64, 3)).clip(0, 1)      # a lavender render
    >>> weight = np.ones((64, 64), np.float32)
    >>> mapping = ColourMap.fit(tissue_lab(render, weight), TissueColours.of(tissue_lab(style, weight)))
    >>> out = mapping.apply(render)
    >>> bool(np.abs(out.mean((0, 1)) - style.mean((0, 1))).max() < 0.02)
    True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MIN_PIXELS", "ColourMap", "TissueColours", "tissue_lab"]

#: fewer tissue pixels than this: no colour statistics (the swap keeps the model's colours)
MIN_PIXELS = 256
#: about this many pixels (up to twice as many) enter the statistics, at an even stride over the tissue
SAMPLE = 100_000
#: a pixel counts as tissue for the statistics above this tissue weight
TISSUE_WEIGHT = 0.5
_QUANTILES = np.linspace(0.0, 100.0, 101)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float32 CIELAB (D65) of ``(…, 3)`` sRGB in [0, 1] (clipped)."""
    from skimage.color import rgb2lab

    pixels = np.clip(np.asarray(rgb, np.float32).reshape(-1, 1, 3), 0.0, 1.0)
    return rgb2lab(pixels).reshape(-1, 3).astype(np.float32, copy=False)


def _rgb(lab: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float32 sRGB in [0, 1] of ``(N, 3)`` CIELAB; colours outside the sRGB gamut are clipped."""
    from skimage.color import lab2rgb

    with warnings.catch_warnings():  # scikit-image warns when it clips out-of-gamut colours, as intended here
        warnings.simplefilter("ignore", UserWarning)
        rgb = lab2rgb(np.asarray(lab, np.float32).reshape(-1, 1, 3))
    return np.clip(rgb, 0.0, 1.0).reshape(-1, 3).astype(np.float32, copy=False)


def tissue_lab(rgb: np.ndarray, weight: np.ndarray, where: np.ndarray | None = None) -> np.ndarray | None:
    """``(N, 3)`` float32 CIELAB of the tissue pixels of ``rgb`` ``(Y, X, 3)`` float in [0, 1] — tissue
    ``weight`` ``(Y, X)`` above :data:`TISSUE_WEIGHT` (and inside ``where`` ``(Y, X)`` bool), every k-th of them
    with k = ⌊N / :data:`SAMPLE`⌋ (so :data:`SAMPLE` to twice as many when there are more); ``None`` under
    :data:`MIN_PIXELS`."""
    if weight.shape != rgb.shape[:2]:
        raise ValueError(f"the tissue weight is {weight.shape}, the image {rgb.shape[:2]}")
    chosen = weight > TISSUE_WEIGHT
    if where is not None:
        chosen &= where
    pixels = rgb[chosen]
    if len(pixels) < MIN_PIXELS:
        return None
    return _lab(pixels[:: max(1, len(pixels) // SAMPLE)])


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _covariance(lab: np.ndarray) -> np.ndarray:
    return np.cov(lab.astype(np.float64).T) + 1e-3 * np.eye(3)


def _increasing(values: np.ndarray) -> np.ndarray:
    """Quantiles made strictly increasing (np.interp needs it; ties come from flat regions)."""
    return np.maximum.accumulate(values + np.arange(len(values)) * 1e-6)


@dataclass(frozen=True)
class TissueColours:
    """CIELAB statistics of an image's tissue: ``mean`` ``(3,)``, ``covariance`` ``(3, 3)``, ``chroma`` ``(2, Q)``
    the a*/b* quantiles (0–100 %, Q = 101)."""

    mean: np.ndarray
    covariance: np.ndarray
    chroma: np.ndarray

    @classmethod
    def of(cls, lab: np.ndarray) -> TissueColours:
        """Statistics of ``(N, 3)`` CIELAB pixels (:func:`tissue_lab`)."""
        return cls(lab.mean(0), _covariance(lab), np.percentile(lab[:, 1:], _QUANTILES, axis=0).T)


@dataclass(frozen=True)
class ColourMap:
    """A render's tissue colours → a style's (module docstring): ``lab' = (lab − source) @ matrix.T + target``,
    then a* and b* through the quantile pairs ``chroma_from`` → ``chroma_to`` ``(2, Q)``."""

    source: np.ndarray
    matrix: np.ndarray
    target: np.ndarray
    chroma_from: np.ndarray
    chroma_to: np.ndarray
    _kept: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, render_lab: np.ndarray, style: TissueColours) -> ColourMap:
        """The map of a render's tissue pixels ``(N, 3)`` CIELAB onto ``style``'s colours."""
        root = _sqrtm(_covariance(render_lab))
        inverse = np.linalg.inv(root)
        matrix = inverse @ _sqrtm(root @ style.covariance @ root) @ inverse
        source = render_lab.mean(0)
        linear = (render_lab - source) @ matrix.T + style.mean
        chroma_from = np.percentile(linear[:, 1:], _QUANTILES, axis=0).T
        return cls(source, matrix, style.mean, chroma_from, style.chroma)

    def map_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float32 in [0, 1]: sRGB ``pixels`` ``(N, 3)`` in [0, 1] mapped exactly."""
        source, target = self.source.astype(np.float32), self.target.astype(np.float32)
        lab = (_lab(pixels) - source) @ self.matrix.T.astype(np.float32) + target
        for channel in (1, 2):
            before, after = self.chroma_from[channel - 1], self.chroma_to[channel - 1]
            lab[:, channel] = np.interp(lab[:, channel], _increasing(before), after)
        return _rgb(lab)

    def for_blocks(self) -> ColourMap:
        """The same map, keeping what it computes for every 8-bit colour it meets (a table of 2²⁴ colours, about
        220 MB, allocated as it fills), for a map applied to block after block of a slide: later blocks mostly look
        colours up."""
        table = (np.zeros((1 << 24, 3), np.float32), np.zeros(1 << 24, bool))
        return ColourMap(self.source, self.matrix, self.target, self.chroma_from, self.chroma_to, table)

    def apply(self, rgb: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """``(Y, X, 3)`` float32 in [0, 1]: ``rgb`` (float in [0, 1]) with its colours mapped; with ``where``
        ``(Y, X)`` bool, only those pixels (the rest copied). Exact (:meth:`map_pixels`); a map made
        :meth:`for_blocks` adds to each pixel the shift the map gives its colour rounded to 8 bits, computed once
        per colour: on real renders within 0.2–1.3 grey levels of the exact map on average, up to 14–20 where the
        map is steepest (its chroma quantiles stretch a narrow range of the render's colours)."""
        out = np.array(rgb, dtype=np.float32)
        pixels = out.reshape(-1, 3) if where is None else out[where]
        mapped = self.map_pixels(pixels) if self._kept is None else self._shifted(pixels)
        if where is None:
            return mapped.reshape(out.shape)
        out[where] = mapped
        return out

    def _shifted(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float32: ``pixels`` plus the kept shift of their 8-bit colours (:meth:`for_blocks`)."""
        assert self._kept is not None
        shifts, known = self._kept
        levels = np.clip(pixels, 0.0, 1.0)
        levels *= np.float32(255.0)
        levels += np.float32(0.5)
        codes = levels.astype(np.uint32)  # rounded: the values are ≥ 0
        codes = (codes[:, 0] << 16) | (codes[:, 1] << 8) | codes[:, 2]
        missing = ~known[codes]
        if missing.any():
            new = np.unique(codes[missing])
            colours = np.stack([(new >> 16) & 255, (new >> 8) & 255, new & 255], axis=1).astype(np.float32) / 255.0
            shifts[new] = self.map_pixels(colours) - colours
            known[new] = True
        shifted = shifts[codes]
        shifted += pixels
        return np.clip(shifted, 0.0, 1.0, out=shifted)
