"""Features of a volume and their colour preview in one job: the *Extract features* dock's job (no Qt here)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..progress import Cancelled, Progress, rescaled
from .features import FeatureResult, FeatureSettings, extract_features
from .rgb import pca_rgb

__all__ = ["FeaturePreview", "features_with_preview"]

EXTRACTION_SHARE = 0.95  # share of the progress for the features; the RGB preview takes the rest


@dataclass
class FeaturePreview:
    """``result``: the features ``(C, Z, Y, X)`` and how they were computed; ``rgb``: ``(Z, Y, X, 3)`` uint8, the
    PCA of the features fitted on the image's foreground."""

    result: FeatureResult
    rgb: np.ndarray


def features_with_preview(
    image: Any, settings: FeatureSettings, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, FeaturePreview]:
    """Job: :func:`~.features.extract_features` of ``image`` ``(Z, Y, X)`` (any array-like; read here), then the
    colour preview (:func:`~.rgb.pca_rgb`)."""
    cancel = cancel or (lambda: False)
    image = np.asarray(image)
    result = yield from rescaled(extract_features(image, settings, cancel=cancel), 0.0, EXTRACTION_SHARE)
    if cancel():
        raise Cancelled("feature extraction cancelled")
    yield {"stage": "preview", "fraction": EXTRACTION_SHARE, "message": "colour preview (PCA → RGB)"}
    return FeaturePreview(result, pca_rgb(result.features, image))
