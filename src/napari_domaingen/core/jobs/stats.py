"""The stats job: per-class voxel counts, volumes in mm³ and (with an image on the labels' grid) intensity
mean/std of a label volume (NIfTI or DICOM-SEG) → CSV.

A DICOM-SEG that covers only some slices of its series (writers such as dcmqi leave out empty frames) is placed on
the image series' grid first, when it lies on it (:func:`~napari_domaingen.io.dicom_seg.place_on_grid`).

>>> # result = run(run_stats(StatsJob("seg.dcm", "stats.csv", image="series/")))
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...progress import Progress
from .base import JobResult, as_path, check_labels_path, guard, read_image, read_labels

__all__ = ["StatsJob", "StatsResult", "StatsSettings", "run_stats"]


@dataclass(frozen=True)
class StatsSettings:
    """``class_names``: names by label value, over those the labels carry; ``background``: also list value 0."""

    class_names: dict[int, str] = field(default_factory=dict)
    background: bool = False

    def __post_init__(self) -> None:
        names = {int(value): str(name) for value, name in dict(self.class_names).items()}
        if any(value < 0 for value in names):
            raise ValueError(f"class names are for label values 0, 1, 2, …; got {sorted(names)}")
        object.__setattr__(self, "class_names", names)


@dataclass(frozen=True)
class StatsJob:
    """``labels``: NIfTI labels or a DICOM-SEG; ``out``: the CSV; ``image``: optional image on the labels' grid
    (NIfTI or DICOM series)."""

    labels: Path
    out: Path
    image: Path | None = None
    settings: StatsSettings = field(default_factory=StatsSettings)

    def __post_init__(self) -> None:
        for name in ("labels", "out", "image"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        self.guard()
        check_labels_path(self.labels)

    def guard(self) -> None:
        """The output guard (also when the job is built): the output is neither the labels nor the image, nor in
        the image's DICOM folder."""
        guard([self.out], [self.image], [self.labels])


@dataclass(kw_only=True)
class StatsResult(JobResult):
    """``rows``: one :class:`~napari_domaingen.core.label_stats.ClassStats` per class."""

    rows: list[Any] = field(default_factory=list)


def run_stats(job: StatsJob, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, StatsResult]:
    """Run ``job``: check the output against the inputs, read the labels (and image), compute, write the CSV."""
    from ...io.dicom_seg import grid_mismatch, place_on_grid
    from ..label_stats import label_statistics, write_stats_csv

    job.guard()
    yield {"stage": "read", "fraction": 0.0, "message": f"reading {job.labels.name}"}
    labels = read_labels(job.labels)
    names = labels.label_table.names() if labels.label_table is not None else {}
    names.update(job.settings.class_names)
    data, affine, image, notes = labels.data, labels.display_affine, None, []
    if job.image is not None:
        image_volume = read_image(job.image)
        problem = grid_mismatch(labels.spatial_shape, labels.display_affine, image_volume)
        if problem and str(job.labels).lower().endswith(".dcm"):
            placed = place_on_grid(labels, image_volume)
            if placed is not None:
                data, affine, problem = placed, image_volume.display_affine, None
                notes.append(
                    f"note: {job.labels} covers {labels.spatial_shape[0]} of the {image_volume.spatial_shape[0]} "
                    f"slices of {job.image}; placed on its grid"
                )
        if problem:
            raise ValueError(f"{job.labels}: the labels are not on the grid of --image {job.image}: {problem}")
        image = image_volume.data
    if cancel is not None and cancel():
        from ...progress import Cancelled

        raise Cancelled("statistics cancelled")
    rows = label_statistics(data, affine, image, names, include_background=job.settings.background)
    path = Path(write_stats_csv(job.out, rows))
    lines = [*notes, f"wrote {path}: {len(rows)} classes"]
    for row in rows:
        extra = "" if row.mean is None else f", mean {row.mean:.4g} ± {row.std:.4g}"
        lines.append(f"  {row.value} {row.name}: {row.voxels} voxels, {row.volume_mm3:.1f} mm³{extra}")
    yield {"stage": "done", "fraction": 1.0, "message": f"{len(rows)} classes"}
    figures = {f"{row.name}_voxels": row.voxels for row in rows} | {f"{row.name}_mm3": row.volume_mm3 for row in rows}
    return StatsResult(written=[path], lines=lines, figures=figures, rows=rows)
