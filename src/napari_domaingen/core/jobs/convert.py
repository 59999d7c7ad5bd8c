"""The convert job: a DICOM series (folder, zip or one of its files) → NIfTI with the right affine.

>>> # result = run(run_convert(ConvertJob("series/", "t1.nii.gz")))
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

from ...io.nifti import is_nifti_path
from ...progress import Progress
from .base import JobResult, as_path, guard

__all__ = ["ConvertJob", "ConvertResult", "run_convert"]


@dataclass(frozen=True)
class ConvertJob:
    """``dicom``: the series; ``out``: ``.nii``/``.nii.gz``, never inside the series' folder; ``series_uid``: the
    SeriesInstanceUID when the folder holds several series."""

    dicom: Path
    out: Path
    series_uid: str | None = None

    def __post_init__(self) -> None:
        for name in ("dicom", "out"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        self.guard()
        if not is_nifti_path(self.out):
            raise ValueError(f"{self.out}: the output file name must end in .nii or .nii.gz")

    def guard(self) -> None:
        """The output guard (also when the job is built): the output is not in the series' folder."""
        guard([self.out], [self.dicom])


@dataclass(kw_only=True)
class ConvertResult(JobResult):
    """What was written (the one NIfTI)."""


def run_convert(job: ConvertJob, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, ConvertResult]:
    """Run ``job``: check the output against the series (its folder included), read it, write the NIfTI."""
    from ...io.dicom import read_series
    from ...io.nifti import write_nifti
    from ...io.output_guard import require_input

    job.guard()
    require_input(job.dicom, "DICOM series")
    yield {"stage": "read", "fraction": 0.0, "message": f"reading {job.dicom.name}"}
    volume = read_series(job.dicom, uid=job.series_uid)
    path = write_nifti(job.out, volume.data, source=volume.source)
    codes = "".join(volume.source.axcodes) if volume.source is not None else "?"
    spacing = " x ".join(f"{s:.3g}" for s in reversed(volume.spacing))
    line = f"wrote {path}: {volume.name}, {tuple(reversed(volume.data.shape))} voxels of {spacing} mm, {codes}"
    return ConvertResult(written=[Path(path)], lines=[line])
