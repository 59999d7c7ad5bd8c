"""The features job: frozen anatomix features of one volume → a 4D NIfTI (channels last) with the source affine.

>>> job = FeaturesJob("t1.nii.gz", "t1_features.nii.gz", FeatureSettings(layer="penultimate"))
>>> # result = run(run_features(job), ProgressPrinter()); print(*result.lines, sep="\\n")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from ...io.nifti import is_nifti_path
from ...progress import Progress
from ..features import FeatureSettings
from .base import JobResult, check_feature_settings, guard, read_image

__all__ = ["FeatureSettings", "FeaturesJob", "FeaturesResult", "run_features"]


@dataclass(frozen=True)
class FeaturesJob:
    """``image``: a NIfTI file or DICOM series; ``out``: the 4D ``.nii``/``.nii.gz`` to write; ``settings``: what to
    extract and how (the anatomix extractor is loaded once per process and kept)."""

    image: Path
    out: Path
    settings: FeatureSettings = field(default_factory=FeatureSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", Path(self.image))
        object.__setattr__(self, "out", Path(self.out))
        self.guard()
        if not is_nifti_path(self.out):
            raise ValueError(f"{self.out}: the features file name must end in .nii or .nii.gz")
        check_feature_settings(self.settings)

    @property
    def outputs(self) -> list[Path]:
        return [self.out]

    def guard(self) -> None:
        """The output guard (also when the job is built): the output is not the image nor in its DICOM folder."""
        guard(self.outputs, [self.image])


@dataclass(kw_only=True)
class FeaturesResult(JobResult):
    """``channels``: feature channels written; ``description``: how they were computed."""

    channels: int = 0
    description: str = ""


def run_features(
    job: FeaturesJob, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, FeaturesResult]:
    """Run ``job``: check the output against the input, read the volume, extract, write atomically."""
    from ...io.nifti import write_nifti
    from ..features import extract_features

    job.guard()
    volume = read_image(job.image)
    result = yield from extract_features(volume.data, job.settings, cancel=cancel)
    path = write_nifti(job.out, result.features, source=volume.source)
    channels = result.features.shape[0]
    line = f"wrote {path}: {channels} channels ({job.settings.layer}), {result.describe()}"
    return FeaturesResult(
        written=[Path(path)],
        lines=[line],
        figures={"features": os.fspath(path)},
        channels=channels,
        description=result.describe(),
    )
