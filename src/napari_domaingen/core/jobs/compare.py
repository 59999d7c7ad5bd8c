"""The compare job: feature stability of two volumes of one subject on one grid (e.g. FLAIR vs T1) — linear CKA of
the features vs of the intensities, voxel-wise cosine similarity, RGB renderings sharing A's colour projection;
optionally written to a folder (RGB and cosine NIfTIs on A's grid, PNG montages, ``summary.json``).

Two entry points on one computation: :func:`compare_arrays` takes two volumes in memory with their display affines
(the *Compare representations* dock), :func:`run_compare` reads them from files and writes the outputs (the
``compare`` command and the batch). B is resampled onto A's grid (linear) only when ``resample`` allows it and the
grids differ.

>>> job = CompareJob("t1.nii.gz", "flair.nii.gz", "cmp/", CompareSettings(FeatureSettings(weights="anatomix")))
>>> # result = run(run_compare(job)); result.numbers["cka_features"]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...io.geometry import resample_to_grid
from ...io.nifti import strip_nifti_suffix
from ...progress import Progress
from ..compare import Comparison, compare_volumes
from ..features import FeatureSettings
from ..stability import GridMismatchError, require_same_grid
from .base import JobResult, as_path, check_feature_settings, guard, read_image, require_choice

__all__ = [
    "COSINE_STEM",
    "RGB_SUFFIX",
    "CompareArrays",
    "CompareJob",
    "CompareResult",
    "CompareSettings",
    "compare_arrays",
    "run_compare",
]

#: ``<stem of A or B>_features_rgb.nii.gz`` / ``.png``: the feature renderings; ``cosine_similarity.*``: the map
RGB_SUFFIX = "_features_rgb"
COSINE_STEM = "cosine_similarity"


@dataclass(frozen=True)
class CompareSettings:
    """``features``: the extractor options; ``mode``: colours from a PCA of A (``"pca"``) or three ``channels``;
    ``resample``: B resampled onto A's grid through the affines (linear) instead of being required on it;
    ``register``: stages (e.g. ``("rigid", "affine")``) that register B onto A first (:mod:`..register`), so the
    figures compare aligned anatomy; B is then resampled through that transform, whatever its grid."""

    features: FeatureSettings = field(default_factory=FeatureSettings)
    mode: Literal["pca", "channels"] = "pca"
    channels: tuple[int, int, int] = (0, 1, 2)
    resample: bool = False
    register: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_feature_settings(self.features)
        require_choice("colour mode", self.mode, ("pca", "channels"))
        channels = tuple(int(c) for c in self.channels)
        if len(channels) != 3 or min(channels) < 0:
            raise ValueError(f"channels must be three non-negative channel numbers, got {self.channels}")
        object.__setattr__(self, "channels", channels)
        if self.register:
            from ..register import RegisterSettings

            object.__setattr__(self, "register", RegisterSettings(stages=tuple(self.register)).stages)

    def registration_settings(self):
        """The settings of the registration B goes through first (``None`` without one)."""
        from ..register import RegisterSettings

        return RegisterSettings(stages=self.register, weights=self.features.weights) if self.register else None


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
        :class:`~napari_domaingen.core.stability.GridMismatchError` (a ``ValueError``) saying what differs
        otherwise. Cheap: no voxel is read."""
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
    differ (:class:`~napari_domaingen.core.stability.GridMismatchError` when they differ and it does not), then
    compare them."""
    image_a, image_b = np.asarray(arrays.image_a), np.asarray(arrays.image_b)
    aligned = "one voxel grid"
    if settings.register:
        from ...progress import rescaled
        from ..register import register

        job = register(
            image_a, arrays.affine_a, image_b, arrays.affine_b, settings.registration_settings(), arrays.names, cancel
        )
        registration = yield from rescaled(job, 0.0, 0.3, "registering B onto A: ")
        image_b = registration.transform.move_array(image_b, arrays.affine_b, image_a.shape, arrays.affine_a)
        aligned = (
            f"B registered onto A first ({' + '.join(registration.stages)}, FireANTs, mutual information of the "
            f"intensities; {registration.seconds:.0f} s) and resampled through that transform"
        )
    elif arrays.needs_resampling(settings.resample):
        yield {"stage": "resample", "fraction": 0.0, "message": "resampling B onto A's grid (linear)"}
        image_b = resample_to_grid(image_b, arrays.affine_b, arrays.shape_a, arrays.affine_a)
        aligned = "B resampled onto A's grid through the scanner coordinates (not registered)"
    job = compare_volumes(image_a, image_b, settings.features, settings.mode, settings.channels, cancel=cancel)
    comparison = yield from job
    comparison.aligned = aligned
    return comparison


@dataclass(frozen=True)
class CompareJob:
    """``a`` (the reference grid and colour basis) and ``b``: NIfTI files or DICOM series; ``out``: the folder of
    the renderings, or ``None`` for the numbers only."""

    a: Path
    b: Path
    out: Path | None = None
    settings: CompareSettings = field(default_factory=CompareSettings)

    def __post_init__(self) -> None:
        for name in ("a", "b", "out"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        if not isinstance(self.settings, CompareSettings):
            raise TypeError(f"expected CompareSettings, got {type(self.settings).__name__}")
        self.guard()

    def guard(self) -> None:
        """The output guard (also when the job is built): each output file (not the folder, which may hold the
        inputs) is neither A nor B, nor in their DICOM folders; no two outputs are one file."""
        guard(self.outputs, [self.a, self.b])

    @property
    def outputs(self) -> list[Path]:
        """Every file the job writes into ``out`` (none without it)."""
        if self.out is None:
            return []
        stem_a, stem_b = strip_nifti_suffix(self.a), strip_nifti_suffix(self.b)
        names = [
            f"{stem_a}{RGB_SUFFIX}.nii.gz",
            f"{stem_b}{RGB_SUFFIX}.nii.gz",
            f"{COSINE_STEM}.nii.gz",
            f"{stem_a}{RGB_SUFFIX}.png",
            f"{stem_b}{RGB_SUFFIX}.png",
            f"{COSINE_STEM}.png",
            "summary.json",
        ]
        return [self.out / name for name in names]


@dataclass(kw_only=True)
class CompareResult(JobResult):
    """``numbers``: the summary (CKAs, mean cosine, voxel counts, ``nan_voxels_a``/``_b``) as in ``summary.json``;
    ``comparison``: the arrays (features, RGBs, cosine map, mask)."""

    numbers: dict[str, Any] = field(default_factory=dict)
    comparison: Any = None

    def summary_lines(self, a: str, b: str) -> list[str]:
        """The one-line summary (and what was left out) for people."""
        n = self.numbers
        lines = [
            f"feature CKA {n['cka_features']:.3f} | intensity CKA {n['cka_intensity']:.3f} "
            f"(3x3x3 patches {n['cka_intensity_patch']:.3f}) | mean cosine {n['mean_cosine']:.3f} "
            f"over {n['n_voxels']:,} voxels sampled from {n['foreground_voxels']:,} foreground voxels"
        ]
        if "aligned" in n:
            lines.append(f"  {n['aligned']}")
        counts = ((a, n["nan_voxels_a"]), (b, n["nan_voxels_b"]))
        left_out = [f"{k:,} NaN/inf voxels of {name}" for name, k in counts if k]
        if left_out:
            lines.append(f"  left out: {'; '.join(left_out)}")
        return lines


def run_compare(job: CompareJob, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, CompareResult]:
    """Run ``job``: check the outputs (each file, not the folder) against the inputs, read A and B, check or
    resample the grid, compare, write every output atomically."""
    from ...io.atomic import atomic_write_text
    from ...io.nifti import write_nifti
    from ...io.preview import colour_map, rgb_montage, save_png

    job.guard()
    settings = job.settings
    volume_a, volume_b = read_image(job.a), read_image(job.b)
    arrays = CompareArrays(
        volume_a.data, volume_b.data, volume_a.display_affine, volume_b.display_affine, (str(job.a), str(job.b))
    )
    comparison = yield from compare_arrays(arrays, settings, cancel)
    numbers = comparison.summary.as_dict()
    numbers["nan_voxels_a"], numbers["nan_voxels_b"] = comparison.non_finite
    numbers["aligned"] = comparison.aligned
    written: list[Path] = []
    if job.out is not None:
        rgb_a_nii, rgb_b_nii, cosine_nii, rgb_a_png, rgb_b_png, cosine_png, summary = job.outputs
        source, spacing = volume_a.source, volume_a.spacing
        cosine_rgb = colour_map(comparison.cosine, -1.0, 1.0)
        cosine_rgb[~comparison.mask] = 0  # background black, as in the RGB renderings
        written = [
            write_nifti(rgb_a_nii, np.moveaxis(comparison.rgb_a, -1, 0), source=source),
            write_nifti(rgb_b_nii, np.moveaxis(comparison.rgb_b, -1, 0), source=source),
            write_nifti(cosine_nii, comparison.cosine, source=source),
            save_png(rgb_a_png, rgb_montage(comparison.rgb_a, spacing)),
            save_png(rgb_b_png, rgb_montage(comparison.rgb_b, spacing)),
            save_png(cosine_png, rgb_montage(cosine_rgb, spacing)),
        ]
        atomic_write_text(summary, json.dumps({"a": str(job.a), "b": str(job.b), **numbers}, indent=2) + "\n")
        written = [Path(p) for p in written] + [summary]
    result = CompareResult(
        written=written,
        figures={key: numbers[key] for key in ("cka_features", "cka_intensity", "mean_cosine")},
        numbers=numbers,
        comparison=comparison,
    )
    result.lines = [f"  wrote {path}" for path in written] + result.summary_lines(str(job.a), str(job.b))
    return result
