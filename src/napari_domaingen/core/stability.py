"""How alike two co-registered volumes' representations are: linear CKA, voxel-wise cosine, grid checks.

Features are ``(C, Z, Y, X)``; intensities ``(Z, Y, X)``. Sums run over a random voxel sample (default 100k
voxels inside a mask), so a 16×240×240×155 pair is compared in well under a second with bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DomaingenError
from ..io.geometry import same_grid


class GridMismatchError(DomaingenError, ValueError):
    """Two volumes are not on one voxel grid (shape or affine differ)."""


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of ``a`` (N, C1) and ``b`` (N, C2): 1 for identical representations.

    ``‖bᵀa‖²_F / (‖aᵀa‖_F ‖bᵀb‖_F)`` on column-centred data; invariant to orthogonal transforms and isotropic
    scaling of either side. Returns 0 when either side is constant.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"expected (N, C1) and (N, C2) arrays with the same N, got {a.shape} and {b.shape}")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    cross = np.linalg.norm(b.T @ a) ** 2
    norm = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(cross / norm) if norm > 0 else 0.0


def sample_indices(shape: tuple[int, ...], mask: np.ndarray | None, max_samples: int, seed: int = 0) -> np.ndarray:
    """Flat voxel indices: all of ``mask`` (or the volume), or a sorted random subset of ``max_samples``."""
    index = np.flatnonzero(mask) if mask is not None else np.arange(int(np.prod(shape)))
    if index.size == 0:
        raise ValueError("no voxels to compare: the mask (foreground) is empty")
    if index.size > max_samples:
        index = np.sort(np.random.default_rng(seed).choice(index, max_samples, replace=False))
    return index


def voxel_rows(features: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``(C, Z, Y, X)`` → ``(N, C)`` rows at flat voxel indices."""
    return features.reshape(features.shape[0], -1)[:, index].T


def patch_rows(image: np.ndarray, index: np.ndarray, radius: int = 1) -> np.ndarray:
    """Local intensity patches ``(N, (2r+1)³)`` around flat voxel indices (edges replicated)."""
    padded = np.pad(np.asarray(image, dtype=np.float32), radius, mode="edge")
    z, y, x = np.unravel_index(index, image.shape)
    offsets = range(-radius, radius + 1)
    columns = [
        padded[z + radius + dz, y + radius + dy, x + radius + dx] for dz in offsets for dy in offsets for dx in offsets
    ]
    return np.stack(columns, axis=1)


def cosine_map(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Voxel-wise cosine similarity of two ``(C, Z, Y, X)`` stacks → ``(Z, Y, X)`` float32 in [-1, 1]."""
    if a.shape[1:] != b.shape[1:]:
        raise GridMismatchError(f"feature stacks differ in spatial shape: {a.shape[1:]} vs {b.shape[1:]}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"cosine needs the same channels on both sides: {a.shape[0]} vs {b.shape[0]}")
    out = np.empty(a.shape[1:], np.float32)
    for z in range(a.shape[1]):  # slab by slab: bounded memory
        sa = a[:, z].astype(np.float32)
        sb = b[:, z].astype(np.float32)
        out[z] = (sa * sb).sum(0) / np.maximum(np.linalg.norm(sa, axis=0) * np.linalg.norm(sb, axis=0), eps)
    return out


@dataclass(frozen=True)
class StabilitySummary:
    """Numbers of one comparison: ``n_voxels`` compared, sampled from the ``foreground_voxels`` of the mask."""

    cka_features: float
    cka_intensity: float
    cka_intensity_patch: float
    mean_cosine: float
    n_voxels: int
    foreground_voxels: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "cka_features": self.cka_features,
            "cka_intensity": self.cka_intensity,
            "cka_intensity_patch": self.cka_intensity_patch,
            "mean_cosine": self.mean_cosine,
            "n_voxels": self.n_voxels,
            "foreground_voxels": self.foreground_voxels,
        }


def compare(
    features_a: np.ndarray,
    features_b: np.ndarray,
    image_a: np.ndarray,
    image_b: np.ndarray,
    mask: np.ndarray | None = None,
    max_samples: int = 100_000,
    seed: int = 0,
) -> StabilitySummary:
    """Feature CKA vs the intensity baselines (CKA of intensities, of 3×3×3 patches) and the mean cosine.

    All four are computed on the same voxel sample inside ``mask`` (Z, Y, X) (default: every voxel).
    """
    if features_a.shape[1:] != np.shape(image_a) or features_b.shape[1:] != np.shape(image_b):
        raise ValueError("features and images must share their spatial shape")
    if np.shape(image_a) != np.shape(image_b):
        raise GridMismatchError(f"volumes differ in shape: {np.shape(image_a)} vs {np.shape(image_b)}")
    index = sample_indices(np.shape(image_a), mask, max_samples, seed)
    foreground_voxels = int(np.count_nonzero(mask)) if mask is not None else int(np.prod(np.shape(image_a)))
    rows_a, rows_b = voxel_rows(features_a, index), voxel_rows(features_b, index)
    dot = (rows_a * rows_b).sum(1)
    norms = np.linalg.norm(rows_a, axis=1) * np.linalg.norm(rows_b, axis=1)
    return StabilitySummary(
        cka_features=linear_cka(rows_a, rows_b),
        cka_intensity=linear_cka(np.ravel(image_a)[index], np.ravel(image_b)[index]),
        cka_intensity_patch=linear_cka(patch_rows(image_a, index), patch_rows(image_b, index)),
        mean_cosine=float(np.mean(dot / np.maximum(norms, 1e-8))),
        n_voxels=int(index.size),
        foreground_voxels=foreground_voxels,
    )


def require_same_grid(shape_a, affine_a, shape_b, affine_b, names: tuple[str, str] = ("A", "B")) -> None:
    """Raise :class:`GridMismatchError` saying what differs unless both volumes share shape and affine."""
    if same_grid(shape_a, affine_a, shape_b, affine_b):
        return
    a, b = names
    if tuple(shape_a) != tuple(shape_b):
        detail = f"shapes differ: {a} {tuple(shape_a)} vs {b} {tuple(shape_b)}"
    else:
        detail = (
            f"voxel-to-world affines differ (max {np.abs(np.asarray(affine_a) - np.asarray(affine_b)).max():.3g} mm)"
        )
    raise GridMismatchError(
        f"{a} and {b} are not on one voxel grid ({detail}); resample {b} onto {a}'s grid to compare them voxel-wise"
    )
