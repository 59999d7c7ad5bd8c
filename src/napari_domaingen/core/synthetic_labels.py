"""Synthetic training data for extractor pretraining (anatomix's recipe, procedural): label maps and their views.

* :func:`label_ensemble` — a random 3D label map: Voronoi cells whose borders are bent by a smooth random
  displacement field, with random deformed ellipsoids packed on top (many "anatomical" shapes in one volume);
* :func:`tissue_ensemble` — crops of the MNI152 tissue labels that nilearn ships, with random lesions;
* :func:`render_view` — one view of the labels: independent random intensities per label, a smooth per-label
  texture, then MONAI's bias field, Gaussian noise, Gaussian blur, gamma and simulated low resolution, min-max
  scaled to [0, 1] (the extractor's input convention).

All of them draw from the ``numpy.random.Generator`` they are given, so a seeded step draws the same data again.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["label_ensemble", "mni152_tissue", "render_view", "tissue_ensemble"]


# ------------------------------------------------------------------------------------------------ label maps


def _smooth_field(shape: tuple[int, ...], rng: np.random.Generator, coarse: int, channels: int) -> np.ndarray:
    """``(channels, *shape)`` smooth random field in about [-1, 1]: coarse white noise, trilinearly upsampled."""
    noise = torch.from_numpy(rng.uniform(-1.0, 1.0, (1, channels, coarse, coarse, coarse)).astype(np.float32))
    return F.interpolate(noise, size=shape, mode="trilinear", align_corners=True)[0].numpy()


def label_ensemble(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    cells: int = 24,
    ellipsoids: int = 12,
    warp: float = 0.15,
) -> np.ndarray:
    """A random label map ``(Z, Y, X)`` int64 with labels ``0 … cells + ellipsoids - 1`` (some may be absent).

    ``cells`` Voronoi cells (seeds uniform in the volume) computed on coordinates displaced by a smooth random
    field of amplitude ``warp`` (fraction of the volume side), then ``ellipsoids`` random ellipsoids with wavy
    borders painted over them (radii 5–25 % of the side, random orientation).
    """
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, s, dtype=np.float32) for s in shape], indexing="ij"))
    warped = grid + warp * _smooth_field(shape, rng, coarse=4, channels=3)
    seeds = rng.uniform(0.0, 1.0, (cells, 3)).astype(np.float32)
    points = warped.reshape(3, -1).T
    distance = ((points[:, None, :] - seeds[None]) ** 2).sum(-1)
    labels = distance.argmin(1).reshape(shape).astype(np.int64)
    wobble = _smooth_field(shape, rng, coarse=6, channels=1)[0]
    for k in range(ellipsoids):
        centre = rng.uniform(0.15, 0.85, 3).astype(np.float32)
        radii = rng.uniform(0.05, 0.25, 3).astype(np.float32)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        local = np.tensordot(rotation.astype(np.float32), grid - centre[:, None, None, None], axes=1)
        inside = ((local / radii[:, None, None, None]) ** 2).sum(0) + 0.3 * wobble < 1.0
        labels[inside] = cells + k
    return labels


def tissue_ensemble(shape: tuple[int, int, int], rng: np.random.Generator, lesions: int = 4) -> np.ndarray:
    """A label map ``(Z, Y, X)`` int64 from real anatomy: a random crop of the MNI152 tissue labels that nilearn
    ships (0 background, 1 grey matter, 2 white matter, 3 CSF), zoomed by 0.7–1.4, randomly flipped and with its
    axes permuted, plus up to ``lesions`` wavy ellipsoids (labels 4, 5, …) placed inside the brain."""
    tissue = mni152_tissue()
    zoom = float(rng.uniform(0.7, 1.4))
    size = [min(max(8, int(round(s * zoom))), n) for s, n in zip(shape, tissue.shape, strict=True)]
    brain = np.argwhere(tissue[::4, ::4, ::4] > 0) * 4
    centre = brain[rng.integers(len(brain))]
    start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, size, tissue.shape, strict=True)]
    crop = tissue[tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))]
    crop = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]
    order = rng.permutation(3)
    before = [0, 0, 0]
    for axis, source in enumerate(order):  # zoom to the shape that the axis permutation turns into ``shape``
        before[source] = shape[axis]
    labels = F.interpolate(crop, size=tuple(before), mode="nearest")[0, 0].numpy().astype(np.int64)
    labels = np.transpose(labels, order)
    for axis in range(3):
        if rng.random() < 0.5:
            labels = np.flip(labels, axis)
    labels = np.ascontiguousarray(labels)
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, s, dtype=np.float32) for s in shape], indexing="ij"))
    wobble = _smooth_field(shape, rng, coarse=6, channels=1)[0]
    inside_brain = np.argwhere(labels > 0)
    for k in range(int(rng.integers(0, lesions + 1)) if len(inside_brain) else 0):
        centre = inside_brain[rng.integers(len(inside_brain))] / np.asarray(shape, dtype=np.float32)
        radii = rng.uniform(0.04, 0.2, 3).astype(np.float32)
        local = grid - centre.astype(np.float32)[:, None, None, None]
        inside = ((local / radii[:, None, None, None]) ** 2).sum(0) + 0.3 * wobble < 1.0
        labels[inside & (labels > 0)] = 4 + k
    return labels


@lru_cache(maxsize=1)
def mni152_tissue() -> np.ndarray:
    """The MNI152 tissue labels ``(189, 233, 197)`` uint8, read once per process."""
    from ..io.samples import mni152_tissue_labels

    return mni152_tissue_labels().data


# ------------------------------------------------------------------------------------------------------ views


def render_view(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random appearance of ``labels`` ``(Z, Y, X)``: ``(Z, Y, X)`` float32 in [0, 1].

    Per label a random mean intensity and a random amount of smooth texture; then, each with probability 0.5
    (MONAI transforms, seeded from ``rng``): bias field, Gaussian blur, simulated low resolution, gamma; always
    Gaussian noise; finally min-max scaling.
    """
    from monai.transforms import (
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandSimulateLowResolution,
    )

    count = int(labels.max()) + 1
    means = rng.uniform(0.0, 1.0, count).astype(np.float32)
    texture_amount = rng.uniform(0.0, 0.15, count).astype(np.float32)
    texture = _smooth_field(labels.shape, rng, coarse=int(rng.integers(6, 16)), channels=1)[0]
    image = means[labels] + texture_amount[labels] * texture
    x = torch.from_numpy(image[None].astype(np.float32))
    transforms = [
        RandBiasField(coeff_range=(0.0, 0.3), prob=0.5),
        RandGaussianSmooth(sigma_x=(0.0, 1.0), sigma_y=(0.0, 1.0), sigma_z=(0.0, 1.0), prob=0.5),
        RandSimulateLowResolution(zoom_range=(0.5, 1.0), prob=0.5),
        RandAdjustContrast(gamma=(0.5, 2.0), prob=0.5),
        RandGaussianNoise(std=float(rng.uniform(0.0, 0.05)), prob=1.0),
    ]
    for transform in transforms:
        transform.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
        if isinstance(transform, RandAdjustContrast):
            x = x - x.min()  # gamma needs non-negative values
        x = torch.as_tensor(transform(x))
    x = x[0]
    low, high = float(x.min()), float(x.max())
    return ((x - low) / max(high - low, 1e-6)).numpy().astype(np.float32)
