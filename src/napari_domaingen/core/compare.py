"""Compare two co-registered volumes through their features: shared-basis RGB, cosine map, CKA summary.

:func:`compare_volumes` is a generator job (progress dicts, cancel) used by the *Compare representations*
widget and ``domaingen compare``; it reuses cached features.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ..progress import Progress, rescaled
from .features import FeatureCache, FeatureResult, FeatureSettings, extract_features
from .foreground import Foreground, find_foreground
from .rgb import ColourMode, colour_projection
from .stability import GridMismatchError, StabilitySummary, compare, cosine_map


@dataclass
class Comparison:
    """Everything the views show. RGBs ``(Z, Y, X, 3)`` uint8 share one projection (fitted on A);
    ``cosine`` ``(Z, Y, X)`` float32; ``mask`` the foreground (A ∧ B, NaN voxels excluded) the numbers are
    computed in; ``non_finite`` the NaN/inf voxels of A and B (left out of every figure); ``aligned``: how B came onto
    A's grid (one grid, resampled through scanner coordinates, or registered — and with which transform)."""

    features_a: FeatureResult
    features_b: FeatureResult
    rgb_a: np.ndarray
    rgb_b: np.ndarray
    cosine: np.ndarray
    mask: np.ndarray
    summary: StabilitySummary
    non_finite: tuple[int, int] = (0, 0)
    aligned: str = "one voxel grid"


MIN_COMMON_VOXELS = 10


def common_foreground(
    image_a: np.ndarray, image_b: np.ndarray, names: tuple[str, str] = ("A", "B")
) -> tuple[np.ndarray, Foreground, Foreground]:
    """The foreground both volumes share ``(Z, Y, X)`` bool (see :mod:`.foreground`), and each one's foreground.

    ``ValueError`` naming the real problem: a volume without finite voxels, a constant volume, a volume without
    foreground, or two foregrounds that do not overlap.
    """
    found = []
    for name, image in zip(names, (image_a, image_b)):
        try:
            foreground = find_foreground(image)
        except ValueError as err:
            raise ValueError(f"volume {name}: {err}") from None
        nan = f" ({foreground.non_finite:,} NaN/inf voxels left out)" if foreground.non_finite else ""
        finite = np.asarray(image)[np.isfinite(image)] if foreground.non_finite else np.asarray(image)
        if finite.min() == finite.max():
            raise ValueError(
                f"volume {name} is constant (every voxel is {finite.min():g}){nan}: there is nothing to compare"
            )
        if foreground.voxels == 0:
            raise ValueError(
                f"volume {name} has no foreground: it is its background level {foreground.level:g} "
                f"everywhere but its NaN voxels{nan}"
            )
        found.append(foreground)
    mask = found[0].mask & found[1].mask
    if np.count_nonzero(mask) < MIN_COMMON_VOXELS:
        raise ValueError(
            f"{names[0]} ({found[0].voxels:,} foreground voxels) and {names[1]} ({found[1].voxels:,}) have "
            f"{int(np.count_nonzero(mask))} foreground voxels in common: are they on one grid and of the same subject?"
        )
    return mask, found[0], found[1]


def comparison_mask(image_a: np.ndarray, image_b: np.ndarray) -> np.ndarray:
    """The foreground both volumes share ``(Z, Y, X)`` bool; a clear error when there is none."""
    return common_foreground(image_a, image_b)[0]


def finite_or_background(image: np.ndarray, foreground: Foreground) -> np.ndarray:
    """``image`` with its NaN/inf voxels set to the background level (the feature extractor needs finite input)."""
    if not foreground.non_finite:
        return image
    return np.where(np.isfinite(image), image, np.asarray(foreground.level, dtype=image.dtype))


def compare_volumes(
    image_a: np.ndarray,
    image_b: np.ndarray,
    settings: FeatureSettings = FeatureSettings(),
    mode: ColourMode = "pca",
    channels: tuple[int, int, int] = (0, 1, 2),
    cancel: Callable[[], bool] | None = None,
    cache: FeatureCache | None = None,
    max_samples: int = 100_000,
) -> Generator[Progress, None, Comparison]:
    """Features of A and B (cached), RGB with A's projection for both, cosine map and the CKA summary.

    ``image_a``/``image_b``: ``(Z, Y, X)`` on one grid (the caller checks the affines; shapes are checked here).
    """
    image_a, image_b = np.asarray(image_a), np.asarray(image_b)
    if image_a.shape != image_b.shape:
        raise GridMismatchError(
            f"A {image_a.shape} and B {image_b.shape} are not on one voxel grid; resample B onto A's grid first"
        )
    mask, foreground_a, foreground_b = common_foreground(image_a, image_b)
    image_a, image_b = finite_or_background(image_a, foreground_a), finite_or_background(image_b, foreground_b)
    results = []
    for name, image, offset in (("A", image_a, 0.0), ("B", image_b, 0.45)):
        job = extract_features(image, settings, cancel=cancel, cache=cache)
        results.append((yield from rescaled(job, offset, 0.45, f"{name}: ")))
    features_a, features_b = (r.features for r in results)
    yield {"stage": "compare", "fraction": 0.92, "message": "colours, cosine map and CKA"}
    projection = colour_projection(features_a, mask, mode, channels)
    summary = compare(features_a, features_b, image_a, image_b, mask=mask, max_samples=max_samples)
    cosine = cosine_map(features_a, features_b)
    comparison = Comparison(
        features_a=results[0],
        features_b=results[1],
        rgb_a=projection.apply(features_a, mask),
        rgb_b=projection.apply(features_b, mask),
        cosine=cosine,
        mask=mask,
        summary=summary,
        non_finite=(foreground_a.non_finite, foreground_b.non_finite),
    )
    yield {"stage": "done", "fraction": 1.0, "message": "done"}
    return comparison


def similarity_to_voxel(
    features_query: np.ndarray, voxel: tuple[int, int, int], features_target: np.ndarray
) -> np.ndarray:
    """Cosine similarity ``(Z, Y, X)`` of every voxel of ``features_target`` to the feature of ``features_query``
    at ``voxel``.

    The "pick voxel" view: click a voxel in A, see where B has the most similar feature.
    """
    z, y, x = (int(v) for v in voxel)
    shape = features_query.shape[1:]
    if not all(0 <= v < s for v, s in zip((z, y, x), shape)):
        raise ValueError(f"voxel {(z, y, x)} is outside the volume {shape}")
    query = features_query[:, z, y, x].astype(np.float32)
    query = query / max(float(np.linalg.norm(query)), 1e-8)
    out = np.empty(features_target.shape[1:], np.float32)
    for k in range(features_target.shape[1]):
        slab = features_target[:, k].astype(np.float32)
        out[k] = np.tensordot(query, slab, axes=(0, 0)) / np.maximum(np.linalg.norm(slab, axis=0), 1e-8)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Added for the "Compare representations" widget (plain text, no Qt/napari; usable by the CLI as well).


def describe_summary(summary: StabilitySummary, non_finite: tuple[int, int] = (0, 0), margin: float = 0.05) -> str:
    """One paragraph for people: feature CKA against the intensity baselines, mean cosine, voxels compared (and
    the NaN/inf voxels of A and B that were left out).

    The features are called "more alike" (or "less alike") than the images when the feature CKA beats (or trails)
    both intensity baselines — single voxels and 3×3×3 patches — by more than ``margin``.
    """
    features, intensity, patch = summary.cka_features, summary.cka_intensity, summary.cka_intensity_patch
    if features > max(intensity, patch) + margin:
        verdict = "the features are more alike across these two volumes than the images are"
    elif features < min(intensity, patch) - margin:
        verdict = "the features are less alike across these two volumes than the images are"
    else:
        verdict = "the features are about as alike across these two volumes as the images are"
    sampled = f"{summary.n_voxels:,} voxels"
    if summary.foreground_voxels > summary.n_voxels:
        sampled += f" sampled from {summary.foreground_voxels:,} foreground voxels"
    else:
        sampled += " (the whole common foreground)"
    left_out = [f"{count:,} NaN/inf voxels of {name}" for name, count in zip("AB", non_finite) if count]
    note = f" Left out: {' and '.join(left_out)}." if left_out else ""
    return (
        f"Feature CKA {features:.2f} vs intensity CKA {intensity:.2f} (3×3×3 patches {patch:.2f}): {verdict}. "
        f"Mean cosine of the feature vectors {summary.mean_cosine:.2f} inside the foreground; {sampled}.{note}"
    )
