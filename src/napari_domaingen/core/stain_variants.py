"""Random re-stainings of histology images and the training set of the shipped anatomy/style model.

Colour deconvolution (scikit-image ``rgb2hed``) gives per-pixel stain amounts (haematoxylin, eosin, DAB optical
densities). :func:`random_restain` re-renders them with random stain colours (haematoxylin blue-purple, a second
stain anywhere from eosin pink to DAB brown), random stain strengths, a random background (glass) tint and a
little brightness change — the same tissue under many labs' protocols and scanners. The second stain takes the
DAB signal (``second_from="dab"``, IHC-like looks) or the eosin signal (``"eosin"``, H&E-like looks).

:func:`training_images` makes such a set from scikit-image's IHC image alone (real tissue shipped in its wheel);
:func:`histology_training_set` makes one from any named sources, keeping part of each source apart
(:func:`held_out_split`) to choose the run and to measure swaps on tissue the model never saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "TrainingSet",
    "held_out_split",
    "histology_training_set",
    "random_restain",
    "tissue_bounding_box",
    "training_images",
]

_HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
_EOSIN = np.array([0.07, 0.99, 0.11])
_DAB = np.array([0.27, 0.57, 0.78])
#: Fraction of every source's rows (the bottom part) kept out of training.
HELD_OUT_FRACTION = 0.3


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def random_restain(
    rgb: np.ndarray, rng: np.random.Generator, second_from: Literal["dab", "eosin"] = "dab"
) -> np.ndarray:
    """``(Y, X, 3)`` uint8 → the same tissue re-stained with random stain colours and strengths, uint8."""
    from skimage import color

    hed = np.clip(color.rgb2hed(rgb), 0.0, None)
    first = _unit(_HAEMATOXYLIN + rng.normal(0.0, 0.08, 3).clip(-0.3, 0.3))
    mix = rng.uniform()
    second = _unit((1 - mix) * _EOSIN + mix * _DAB + rng.normal(0.0, 0.08, 3))
    third = _unit(np.abs(np.cross(first, second)) + 1e-3)
    matrix = np.stack([np.abs(first), np.abs(second), third])
    strengths = np.array([rng.uniform(0.6, 1.8), rng.uniform(0.3, 1.6), rng.uniform(0.0, 0.3)])
    # The second stain takes the DAB (or eosin) signal plus part of the haematoxylin (eosin stains broadly).
    signal, rest = (hed[..., 2], hed[..., 1]) if second_from == "dab" else (hed[..., 1], hed[..., 2])
    stains = np.stack(
        [
            hed[..., 0] * strengths[0],
            (signal + rng.uniform(0.0, 0.4) * hed[..., 0]) * strengths[1],
            rest * strengths[2],
        ],
        axis=-1,
    )
    out = color.combine_stains(stains, matrix)
    tint = 1.0 - rng.uniform(0.0, 0.08, 3)
    out = np.clip(out * tint * rng.uniform(0.9, 1.05), 0.0, 1.0)
    return np.rint(out * 255.0).astype(np.uint8)


def training_images(count: int = 24, seed: int = 0, include_original: bool = True) -> list[np.ndarray]:
    """``count`` random re-stainings of scikit-image's IHC image (512 × 512), plus the original when asked."""
    from skimage import data

    source = np.ascontiguousarray(data.immunohistochemistry())
    rng = np.random.default_rng(seed)
    images = [source] if include_original else []
    images += [random_restain(source, rng) for _ in range(count)]
    return images


def held_out_split(image: np.ndarray, fraction: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """``(training rows, held-out rows)`` of ``(Y, X, C)``: the bottom ``fraction`` of the rows is held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    cut = int(round(image.shape[0] * (1.0 - fraction)))
    return image[:cut], image[cut:]


def tissue_bounding_box(rgb: np.ndarray, margin: int = 32) -> tuple[slice, slice]:
    """Rows and columns around the tissue of a ``(Y, X, 3)`` uint8 slide region (pixels darker or more saturated
    than glass), widened by ``margin`` px; the whole image when nothing looks like tissue."""
    from .tissue import tissue_mask

    mask = tissue_mask(rgb)
    rows, cols = np.flatnonzero(mask.mean(1) > 0.02), np.flatnonzero(mask.mean(0) > 0.02)
    if not len(rows) or not len(cols):
        return slice(0, rgb.shape[0]), slice(0, rgb.shape[1])
    return (
        slice(max(0, rows[0] - margin), min(rgb.shape[0], rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(rgb.shape[1], cols[-1] + 1 + margin)),
    )


@dataclass
class TrainingSet:
    """Images to train on, their names, and the held-out images (same order as the sources) to choose the run."""

    images: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    held_out: list[np.ndarray] = field(default_factory=list)
    held_out_names: list[str] = field(default_factory=list)


def histology_training_set(
    sources: Mapping[str, np.ndarray],
    variants: int = 6,
    scales: Sequence[float] | Mapping[str, Sequence[float]] = (1.0, 0.5),
    seed: int = 0,
    held_out: float = HELD_OUT_FRACTION,
) -> TrainingSet:
    """Training images from ``sources`` (name → ``(Y, X, 3)`` uint8): each source's training rows
    (:func:`held_out_split`) at every scale in ``scales`` (anti-aliased), plus ``variants`` random re-stainings of
    them (alternately IHC-like and H&E-like, at alternating scales). Held-out rows go to ``held_out`` untouched.
    """
    from skimage.transform import rescale

    out = TrainingSet()
    rng = np.random.default_rng(seed)
    for name, image in sources.items():
        train, kept = held_out_split(np.ascontiguousarray(image[..., :3]), held_out)
        out.held_out.append(kept)
        out.held_out_names.append(f"{name} (held-out rows)")
        scaled = {}
        own = tuple(scales[name]) if isinstance(scales, Mapping) else tuple(scales)
        for scale in own:
            if scale == 1.0:
                scaled[scale] = train
            else:
                resized = rescale(train, scale, channel_axis=-1, anti_aliasing=True, preserve_range=True)
                scaled[scale] = np.rint(resized).astype(np.uint8)
            out.images.append(scaled[scale])
            out.names.append(f"{name} ×{scale:g}")
        for k in range(variants):
            scale = own[k % len(own)]
            second = "dab" if k % 2 == 0 else "eosin"
            out.images.append(random_restain(scaled[scale], rng, second_from=second))
            out.names.append(f"{name} ×{scale:g} restained ({second}-like {k + 1})")
    return out
