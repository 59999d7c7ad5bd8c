"""Per-class statistics of a label volume: voxel count, volume in mm³ and, with an image on the same grid, the
mean and standard deviation of its intensities in each class.

The voxel volume is ``|det A|`` of the (4, 4) affine's 3×3 part, so it is right for anisotropic, oblique and
sheared (tilted-gantry) grids alike.

>>> import numpy as np
>>> labels = np.zeros((2, 2, 2), np.uint8); labels[0, 0, :] = 3
>>> rows = label_statistics(labels, np.diag([2.0, 1.0, 0.5, 1.0]), names={3: "tumour"})
>>> (rows[0].value, rows[0].name, rows[0].voxels, rows[0].volume_mm3)
(3, 'tumour', 2, 2.0)
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_write_text

__all__ = ["COLUMNS", "ClassStats", "label_statistics", "stats_csv_text", "voxel_volume_mm3", "write_stats_csv"]

COLUMNS = ("value", "name", "voxels", "volume_mm3", "mean", "std")


@dataclass(frozen=True)
class ClassStats:
    """One class: ``voxels`` (count), ``volume_mm3`` and, with an image, ``mean``/``std`` of its intensities
    (``None`` without an image or for an empty class)."""

    value: int
    name: str
    voxels: int
    volume_mm3: float
    mean: float | None = None
    std: float | None = None

    def row(self) -> dict[str, object]:
        return {
            "value": self.value,
            "name": self.name,
            "voxels": self.voxels,
            "volume_mm3": round(self.volume_mm3, 6),
            "mean": "" if self.mean is None else f"{self.mean:.6g}",
            "std": "" if self.std is None else f"{self.std:.6g}",
        }


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel in mm³: ``|det|`` of the affine's 3×3 part (any axis order)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))


def label_statistics(
    labels: np.ndarray,
    affine: np.ndarray,
    image: np.ndarray | None = None,
    names: dict[int, str] | None = None,
    include_background: bool = False,
) -> list[ClassStats]:
    """Statistics of every non-zero value of ``labels`` ``(Z, Y, X)`` integers (0 too with
    ``include_background``) and of every named value, present or not (count 0), sorted by value.

    ``affine`` (4, 4) maps the labels' voxel indices to mm (e.g. the display affine). ``image``: the same shape
    as ``labels``. Raises ``ValueError`` for shapes that differ, non-integer or negative labels.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if image is not None and np.shape(image) != labels.shape:
        raise ValueError(f"the image has shape {np.shape(image)} but the labels {labels.shape}; they must match")
    flat = labels.reshape(-1)
    if flat.size and flat.min() < 0:
        raise ValueError("labels must be non-negative")
    where = None if include_background else np.flatnonzero(flat)  # the background's statistics are not shown
    if where is not None:
        flat = flat[where]
    present, index = _distinct(flat)
    counts = np.bincount(index, minlength=present.size)
    names = names or {}
    values = {int(v) for v, n in zip(present.tolist(), counts.tolist()) if n} | {int(v) for v in names}
    if not include_background:
        values.discard(0)
    means = spreads = None
    if image is not None:  # two passes: the mean, then the squared deviations from it (no cancellation)
        pixels = np.asarray(image).reshape(-1)
        pixels = (pixels if where is None else pixels[where]).astype(np.float64, copy=False)
        means = np.bincount(index, weights=pixels, minlength=present.size) / np.maximum(counts, 1)
        deviations = pixels - means[index]
        spreads = np.bincount(index, weights=deviations * deviations, minlength=present.size) / np.maximum(counts, 1)
    slot = {int(v): i for i, v in enumerate(present.tolist())}
    voxel = voxel_volume_mm3(affine)
    rows = []
    for value in sorted(values):
        at = slot.get(value)
        count = int(counts[at]) if at is not None else 0
        mean = std = None
        if means is not None and spreads is not None and count:
            mean, std = float(means[at]), float(np.sqrt(spreads[at]))
        name = names.get(value, "background" if value == 0 else f"class {value}")
        rows.append(ClassStats(value, name, count, count * voxel, mean, std))
    return rows


def _distinct(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, index)``: the label values (sorted; every value below a small top, else only those present) and,
    per voxel, the slot of its value in ``values``. Memory is bounded by the voxel count, never by the largest
    value (a label 4e9 must not allocate a 4e9-long table)."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.intp)
    top = int(flat.max())
    if top < max(1 << 16, flat.size):  # a dense table no longer than the volume: the fast path
        return np.arange(top + 1), flat.astype(np.intp, copy=False)
    values, index = np.unique(flat, return_inverse=True)
    return values, index.reshape(-1)


def stats_csv_text(rows: Sequence[ClassStats]) -> str:
    """CSV with the header :data:`COLUMNS` (``mean``/``std`` empty without an image)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.row() for row in rows)
    return buffer.getvalue()


def write_stats_csv(path: str | os.PathLike, rows: Sequence[ClassStats]) -> Path:
    """Write :func:`stats_csv_text` to ``path`` atomically."""
    return atomic_write_text(path, stats_csv_text(rows))
