"""The export job: a label volume on a DICOM series → a DICOM Segmentation (DICOM-SEG) referencing that series.

>>> # result = run(run_export(ExportJob("labels.nii.gz", "series/", "labels.dcm")))
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from ...progress import Progress
from .base import JobResult, as_path, check_labels_path, guard, read_labels

__all__ = ["ExportJob", "ExportResult", "ExportSettings", "run_export"]


@dataclass(frozen=True)
class ExportSettings:
    """``class_names``: names by label value, over those the labels carry; ``series_uid``: the
    SeriesInstanceUID when the reference folder holds several series."""

    class_names: dict[int, str] = field(default_factory=dict)
    series_uid: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", {int(v): str(n) for v, n in dict(self.class_names).items()})


@dataclass(frozen=True)
class ExportJob:
    """``labels`` (NIfTI, or a DICOM-SEG) on the grid of the DICOM series ``reference`` (folder, zip or one of its
    files) → ``out`` (``.dcm``), never inside the series' folder."""

    labels: Path
    reference: Path
    out: Path
    settings: ExportSettings = field(default_factory=ExportSettings)

    def __post_init__(self) -> None:
        for name in ("labels", "reference", "out"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        self.guard()
        check_labels_path(self.labels)
        if self.out.suffix.lower() != ".dcm":
            raise ValueError(f"{self.out}: a DICOM Segmentation's file name must end in .dcm")

    def guard(self) -> None:
        """The output guard (also when the job is built): the output is neither the labels nor in the series'
        folder (also when the series is given by one of its files or a zip)."""
        guard([self.out], [self.reference], [self.labels])


@dataclass(kw_only=True)
class ExportResult(JobResult):
    """What was written (the one ``.dcm``)."""


def run_export(job: ExportJob, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, ExportResult]:
    """Run ``job``: check the output against the labels and the series (its folder included), read, write."""
    from ...io.dicom_seg import write_dicom_seg
    from ...io.label_table import LabelTable
    from ...io.output_guard import require_input

    job.guard()
    require_input(job.reference, "reference series")
    yield {"stage": "read", "fraction": 0.0, "message": f"reading {job.labels.name}"}
    labels = read_labels(job.labels)
    known = labels.label_table or LabelTable(())
    names = {**known.names(), **job.settings.class_names}
    table = LabelTable.from_names(
        [], names, known.colours(), source_series_uid=known.source_series_uid, algorithm=known.algorithm
    )
    path = write_dicom_seg(
        job.out,
        labels.data,
        job.reference,
        table,
        labels_affine=labels.display_affine,
        series_uid=job.settings.series_uid,
        labels_source=job.labels,
    )
    yield {"stage": "done", "fraction": 1.0, "message": f"wrote {path}"}
    return ExportResult(written=[Path(path)], lines=[f"wrote {path}: DICOM Segmentation of {job.reference}"])
