"""One run function per job, shared by the command line, the batch and the dock widgets.

Each job is a frozen dataclass (inputs, outputs, options — checked when it is built, so a bad option fails before
any work) and a run function, a generator of :class:`~napari_domaingen.progress.Progress` updates that returns a
typed result (``written`` files, ``lines`` for people, ``warnings``, ``figures``). A run function does the whole
job: the output guard first (:mod:`napari_domaingen.io.output_guard`: no input overwritten, no file added to an
input DICOM series), then reading, computing and writing every output atomically. Drive one with
``napari_domaingen.progress.run(run_features(job), on_progress)``.

Jobs:
  features  :class:`FeaturesJob` → :func:`run_features`: frozen anatomix features of a volume → 4D NIfTI.
  segment   :class:`SegmentJob` (+ :class:`SegmentOptions`) → :func:`run_segment`; :class:`SegmentRunner` keeps
            the model loaded for many cases: labels (NIfTI or DICOM-SEG), probabilities, statistics.
  compare   :class:`CompareJob` (+ :class:`CompareSettings`) → :func:`run_compare`: CKA, cosine map, renderings.
  stats     :class:`StatsJob` (+ :class:`StatsSettings`) → :func:`run_stats`: per-class voxels, mm³, mean/std.
  export    :class:`ExportJob` (+ :class:`ExportSettings`) → :func:`run_export`: labels → DICOM-SEG of a series.
  convert   :class:`ConvertJob` → :func:`run_convert`: a DICOM series → NIfTI.
  register  :class:`RegisterJob` (+ :class:`~..register.RegisterSettings`) → :func:`run_register`: moving onto
            fixed, the moved image and labels, the transform files, ``metrics.csv``; :class:`ApplyTransformJob` →
            :func:`run_apply_transform`.
"""

from __future__ import annotations

from .base import JobResult
from .compare import CompareJob, CompareResult, CompareSettings, run_compare
from .convert import ConvertJob, ConvertResult, run_convert
from .export import ExportJob, ExportResult, ExportSettings, run_export
from .features import FeatureSettings, FeaturesJob, FeaturesResult, run_features
from .register import ApplyTransformJob, RegisterJob, RegisterResult, run_apply_transform, run_register
from .segment import SegmentJob, SegmentOptions, SegmentResult, SegmentRunner, SegmentSettings, run_segment
from .stats import StatsJob, StatsResult, StatsSettings, run_stats

__all__ = [
    "ApplyTransformJob",
    "CompareJob",
    "CompareResult",
    "CompareSettings",
    "ConvertJob",
    "ConvertResult",
    "ExportJob",
    "ExportResult",
    "ExportSettings",
    "FeatureSettings",
    "FeaturesJob",
    "FeaturesResult",
    "JobResult",
    "RegisterJob",
    "RegisterResult",
    "SegmentJob",
    "SegmentOptions",
    "SegmentResult",
    "SegmentRunner",
    "SegmentSettings",
    "StatsJob",
    "StatsResult",
    "StatsSettings",
    "run_apply_transform",
    "run_compare",
    "run_convert",
    "run_export",
    "run_features",
    "run_register",
    "run_segment",
    "run_stats",
]
