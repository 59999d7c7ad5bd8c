"""The comparison of two volumes held in memory (the *Compare representations* dock's job): B resampled onto A's
grid when asked and needed, then :func:`~.compare.compare_volumes`. No Qt or napari here.

The options are the compare job's own :class:`~.jobs.compare.CompareSettings` (features, colour mode, channels,
resample), so the dock and ``domaingen compare`` read them from one definition; the file job
(:func:`~.jobs.compare.run_compare`) reads volumes from files, this one takes arrays and their display affines.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.geometry import resample_to_grid
from ..progress import Progress
from .compare import Comparison, compare_volumes
from .jobs.compare import CompareSettings
from .stability import GridMismatchError, require_same_grid

__all__ = ["CompareArrays", "CompareSettings", "compare_arrays"]


@dataclass(frozen=True)
class CompareArrays:
    """Volumes A (the reference grid and colour basis) and B: ``(Z, Y, X)`` arrays (numpy, dask, … — read only in
    the job), their (4, 4) display affines (index → ``(S, A, R)`` mm) and their names for messages."""

    image_a: Any
    image_b: Any
    affine_a: np.ndarray
    affine_b: np.ndarray
    names: tuple[str, str] = ("A", "B")

    @property
    def shape_a(self) -> tuple[int, ...]:
        return tuple(int(s) for s in np.shape(self.image_a))

    @property
    def shape_b(self) -> tuple[int, ...]:
        return tuple(int(s) for s in np.shape(self.image_b))

    def needs_resampling(self, allowed: bool) -> bool:
        """Whether B must be resampled onto A's grid first: ``False`` on one grid, ``True`` off it when ``allowed``;
        :class:`~.stability.GridMismatchError` (a ``ValueError``) saying what differs otherwise. Cheap: no voxel is
        read."""
        try:
            require_same_grid(self.shape_a, self.affine_a, self.shape_b, self.affine_b, names=self.names)
        except GridMismatchError:
            if not allowed:
                raise
            return True
        return False


def compare_arrays(
    arrays: CompareArrays, settings: CompareSettings, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, Comparison]:
    """Job: read A and B, resample B onto A's grid (linear) when ``settings.resample`` allows it and the grids
    differ (:class:`~.stability.GridMismatchError` when they differ and it does not), then compare them."""
    resample = arrays.needs_resampling(settings.resample)
    image_a, image_b = np.asarray(arrays.image_a), np.asarray(arrays.image_b)
    if resample:
        yield {"stage": "resample", "fraction": 0.0, "message": "resampling B onto A's grid (linear)"}
        image_b = resample_to_grid(image_b, arrays.affine_b, arrays.shape_a, arrays.affine_a)
    job = compare_volumes(image_a, image_b, settings.features, settings.mode, settings.channels, cancel=cancel)
    return (yield from job)
