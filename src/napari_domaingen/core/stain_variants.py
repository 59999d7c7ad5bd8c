"""Random re-stainings of a histology image: the training data of the shipped anatomy/style model.

Colour deconvolution (scikit-image ``rgb2hed``) gives per-pixel stain amounts (haematoxylin, eosin, DAB optical
densities). :func:`random_restain` re-renders them with random stain colours (haematoxylin blue-purple, a second
stain anywhere from eosin pink to DAB brown), random stain strengths, a random background (glass) tint and a
little brightness change — the same tissue under many labs' protocols and scanners. :func:`training_images`
makes such a set from scikit-image's IHC image (real tissue shipped in its wheel), so the shipped model is
trained on data our dependencies ship and on nothing else.
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_restain", "training_images"]

_HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
_EOSIN = np.array([0.07, 0.99, 0.11])
_DAB = np.array([0.27, 0.57, 0.78])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def random_restain(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(Y, X, 3)`` uint8 → the same tissue re-stained with random stain colours and strengths, uint8."""
    from skimage import color

    hed = np.clip(color.rgb2hed(rgb), 0.0, None)
    first = _unit(_HAEMATOXYLIN + rng.normal(0.0, 0.08, 3).clip(-0.3, 0.3))
    mix = rng.uniform()
    second = _unit((1 - mix) * _EOSIN + mix * _DAB + rng.normal(0.0, 0.08, 3))
    third = _unit(np.abs(np.cross(first, second)) + 1e-3)
    matrix = np.stack([np.abs(first), np.abs(second), third])
    strengths = np.array([rng.uniform(0.6, 1.8), rng.uniform(0.3, 1.6), rng.uniform(0.0, 0.3)])
    # The second stain takes the DAB signal plus part of the haematoxylin (eosin stains broadly).
    stains = np.stack(
        [
            hed[..., 0] * strengths[0],
            (hed[..., 2] + rng.uniform(0.0, 0.4) * hed[..., 0]) * strengths[1],
            hed[..., 1] * strengths[2],
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
