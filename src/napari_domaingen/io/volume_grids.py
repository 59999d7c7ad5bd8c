"""Compare the grids of a group of volumes: which are off the reference's grid (shape, affine) and why."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .geometry import same_grid
from .nifti import Volume


def reference_index(volumes: Sequence[Volume]) -> int:
    """The reference of a group: the first image (non-label) volume, else the first volume."""
    for index, volume in enumerate(volumes):
        if not volume.is_label:
            return index
    return 0


def off_grid(volumes: Sequence[Volume], reference: int | None = None) -> list[int]:
    """Indices of the volumes that are not on the reference's grid (shape and affine)."""
    ref = volumes[reference_index(volumes) if reference is None else reference]
    return [
        i
        for i, v in enumerate(volumes)
        if not same_grid(v.spatial_shape, v.display_affine, ref.spatial_shape, ref.display_affine)
    ]


def grid_report(volumes: Sequence[Volume], reference: int | None = None) -> list[str]:
    """One line per volume that is not on the reference's grid, saying why (empty list: one grid)."""
    if not volumes:
        return []
    ref_index = reference_index(volumes) if reference is None else reference
    ref = volumes[ref_index]
    return [_difference(volumes[i], ref) for i in off_grid(volumes, ref_index)]


def _difference(volume: Volume, ref: Volume) -> str:
    reasons = []
    if volume.spatial_shape != ref.spatial_shape:
        reasons.append(f"shape {_shape(volume.spatial_shape)} vs {_shape(ref.spatial_shape)}")
    a, b = np.asarray(volume.display_affine, float), np.asarray(ref.display_affine, float)
    spacing_a, spacing_b = np.linalg.norm(a[:3, :3], axis=0), np.linalg.norm(b[:3, :3], axis=0)
    if not np.allclose(spacing_a, spacing_b, atol=1e-4):
        reasons.append(f"spacing {_mm(spacing_a)} vs {_mm(spacing_b)} mm")
    direction_a, direction_b = a[:3, :3] / spacing_a, b[:3, :3] / spacing_b
    cos = np.clip((np.trace(direction_a.T @ direction_b) - 1) / 2, -1.0, 1.0)
    angle = math.degrees(math.acos(cos))
    if angle > 0.01:
        reasons.append(f"rotated by {angle:.1f}°")
    shift = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    if shift > 1e-4:
        reasons.append(f"origin shifted by {shift:.1f} mm")
    if not reasons:
        reasons.append(f"affines differ (max {np.abs(a - b).max():.3g})")
    return f"{volume.name}: {', '.join(reasons)} (reference {ref.name})"


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def _mm(values: Sequence[float]) -> str:
    return "×".join(f"{float(v):.3g}" for v in values)
