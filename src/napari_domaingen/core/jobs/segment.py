"""The segment job: a MaskGen/ERM model applied to one volume or DICOM series → labels on the image's grid (NIfTI
with class-name sidecars, or a DICOM Segmentation), optionally the class probabilities and per-class statistics.

:class:`SegmentRunner` holds the model, loaded once (as nnU-Net's predictor does), for many cases; the model is
also kept per process (:func:`~napari_domaingen.core.segment.cached_model`), so a batch loads it once per worker.

>>> options = SegmentOptions("model.pt", SegmentSettings(overlap=0.5))
>>> # result = run(run_segment(SegmentJob("t1.nii.gz", "t1_seg.nii.gz", options, stats="t1_stats.csv")))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...io.nifti import Volume, is_nifti_path, strip_nifti_suffix
from ...progress import Progress
from ..segment import Segmentation, SegmentSettings
from .base import JobResult, as_path, guard, read_image, require_choice

__all__ = ["SegmentJob", "SegmentOptions", "SegmentResult", "SegmentRunner", "SegmentSettings", "run_segment"]


@dataclass(frozen=True)
class SegmentOptions:
    """What every case of a segmentation shares: ``model`` (a ``.pt`` from ``domaingen train``) and ``settings``
    (overlap, feature mode, ablation, device, extractor file; ``probabilities`` is set by the job)."""

    model: Path
    settings: SegmentSettings = field(default_factory=SegmentSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        s = self.settings
        if not isinstance(s, SegmentSettings):
            raise TypeError(f"expected SegmentSettings, got {type(s).__name__}")
        if not 0.0 <= float(s.overlap) < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {s.overlap}")
        require_choice("feature mode", s.feature_mode, ("auto", "shared", "per-window"))
        require_choice("ablation", s.ablation, ("none", "image", "features"))

    @property
    def inputs(self) -> list[Path]:
        """The model, and the extractor file when one is given as a path."""
        weights = self.settings.weights
        return [self.model] + ([Path(weights)] if weights and os.path.exists(weights) else [])


@dataclass(frozen=True)
class SegmentJob:
    """``image``: NIfTI file or DICOM series; ``out``: labels ``.nii``/``.nii.gz`` (with ``.json``/``.txt`` class
    sidecars) or ``.dcm`` (a DICOM Segmentation, for a DICOM series); ``stats``: optional per-class ``.csv``;
    ``probabilities``: optional 4D ``.nii.gz``."""

    image: Path
    out: Path
    options: SegmentOptions
    stats: Path | None = None
    probabilities: Path | None = None

    def __post_init__(self) -> None:
        for name in ("image", "out", "stats", "probabilities"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        if not isinstance(self.options, SegmentOptions):
            raise TypeError(f"expected SegmentOptions, got {type(self.options).__name__}")
        self.guard()
        for path in filter(None, [None if self.as_seg else self.out, self.probabilities]):
            if not is_nifti_path(path):
                raise ValueError(f"{path}: the output file name must end in .nii or .nii.gz (or .dcm for DICOM-SEG)")
        if self.probabilities and Path(self.probabilities).resolve() == Path(self.out).resolve():
            raise ValueError("--out and --probabilities must be two different files")
        if self.stats and not str(self.stats).lower().endswith(".csv"):
            raise ValueError(f"{self.stats}: the statistics file name must end in .csv")

    @property
    def as_seg(self) -> bool:
        return str(self.out).lower().endswith(".dcm")

    @property
    def outputs(self) -> list[Path]:
        """Every file the job writes (the labels' sidecars included)."""
        stem = strip_nifti_suffix(self.out)
        sidecars = [] if self.as_seg else [self.out.with_name(stem + suffix) for suffix in (".json", ".txt")]
        return [p for p in [self.out, *sidecars, self.probabilities, self.stats] if p is not None]

    def guard(self) -> None:
        """The output guard (also when the job is built): no output is the image, the model or the extractor, nor
        lies in the image's DICOM folder; no two outputs are one file."""
        guard(self.outputs, [self.image], self.options.inputs)


@dataclass(kw_only=True)
class SegmentResult(JobResult):
    """``segmentation``: labels (and probabilities) in memory; ``rows``: the per-class statistics written."""

    segmentation: Segmentation | None = None
    rows: list[Any] = field(default_factory=list)


class SegmentRunner:
    """A model loaded once, applied to many cases: :meth:`run` a :class:`SegmentJob`, or :meth:`predict` a
    :class:`~napari_domaingen.io.nifti.Volume` in memory."""

    def __init__(self, options: SegmentOptions) -> None:
        from ...io.output_guard import require_input_file
        from ..device import resolve_device
        from ..segment import cached_model

        require_input_file(options.model, "model")
        self.options = options
        self.device = resolve_device(options.settings.device)
        self.model, self.spec = cached_model(options.model, self.device)

    def predict(
        self, volume: Volume, probabilities: bool = False, cancel: Callable[[], bool] | None = None
    ) -> Generator[Progress, None, Segmentation]:
        """Segment a volume in memory (display order) → :class:`~napari_domaingen.core.segment.Segmentation`."""
        from ..segment import segment

        settings = replace(self.options.settings, probabilities=probabilities, device=str(self.device))
        loaded = (self.model, self.spec)
        job = segment(volume.data, self.options.model, settings, spacing=volume.spacing, cancel=cancel, loaded=loaded)
        return (yield from job)

    def run(
        self, job: SegmentJob, cancel: Callable[[], bool] | None = None
    ) -> Generator[Progress, None, SegmentResult]:
        """Run ``job`` with this runner's model (its options' model is ignored)."""
        job.guard()
        guard(job.outputs, [job.image], self.options.inputs)
        volume = read_image(job.image)
        return (yield from self._segment(job, volume, cancel))

    def _segment(
        self, job: SegmentJob, volume: Volume, cancel: Callable[[], bool] | None
    ) -> Generator[Progress, None, SegmentResult]:
        from ...io.nifti import save_labels_nifti, write_nifti
        from ..label_stats import label_statistics, write_stats_csv

        series_uid = volume.source.dicom_series_uid if volume.source is not None else None
        if job.as_seg and series_uid is None:
            raise ValueError(
                f"{job.out}: a DICOM Segmentation needs a DICOM series as IMAGE ({job.image} is not one); write "
                ".nii.gz instead"
            )
        result = yield from self.predict(volume, probabilities=job.probabilities is not None, cancel=cancel)
        table = result.label_table(self.options.model, series_uid)
        lines: list[str] = []
        if job.as_seg:
            from ...io.dicom_seg import write_dicom_seg

            written = [write_dicom_seg(job.out, result.labels, job.image, table, series_uid=series_uid)]
        else:
            written, notes = save_labels_nifti(job.out, result.labels, table, source=volume.source)
            lines += [f"note: {note}" for note in notes]
        written = [Path(p) for p in written]
        lines.append(f"wrote {', '.join(str(p) for p in written)}: {result.describe()}")
        names = zip(result.spec.label_values, result.spec.class_names)
        lines.append("  label values: " + ", ".join(f"{value} = {name}" for value, name in names))
        if result.probabilities is not None and job.probabilities is not None:
            prob = Path(write_nifti(job.probabilities, result.probabilities, source=volume.source))
            written.append(prob)
            lines.append(
                f"wrote {prob}: {result.probabilities.shape[0]} class probabilities (4D, channels last, in the order "
                "of the label values above)"
            )
        rows: list[Any] = []
        figures: dict[str, Any] = {}
        if job.stats is not None:
            rows = label_statistics(result.labels, volume.display_affine, volume.data, table.names())
            path = Path(write_stats_csv(job.stats, rows))
            written.append(path)
            lines.append(f"wrote {path}: per-class statistics of {len(rows)} classes")
            for row in rows:
                figures[f"{row.name}_voxels"], figures[f"{row.name}_mm3"] = int(row.voxels), float(row.volume_mm3)
        lines += [f"warning: {warning}" for warning in result.warnings]
        return SegmentResult(
            written=written,
            lines=lines,
            warnings=list(result.warnings),
            figures=figures,
            segmentation=result,
            rows=rows,
        )


def run_segment(
    job: SegmentJob, cancel: Callable[[], bool] | None = None, runner: SegmentRunner | None = None
) -> Generator[Progress, None, SegmentResult]:
    """Run ``job``: check the outputs against the inputs, read the image, load the model (once per process, or
    ``runner``'s), segment, write every output atomically."""
    job.guard()
    volume = read_image(job.image)  # before the model: a bad image is reported as such
    yield {"stage": "load", "fraction": 0.0, "message": f"loading {job.options.model.name}"}
    runner = runner or SegmentRunner(job.options)
    return (yield from runner._segment(job, volume, cancel))
