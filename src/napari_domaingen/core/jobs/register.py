"""The register and apply-transform jobs: a moving volume registered onto a fixed one (:mod:`..register`), its
image and labels moved onto the fixed grid, the transform written for ANTs/SimpleITK, and the figures in
``metrics.csv``; a written transform applied to another volume.

Outputs of :func:`run_register` in ``out``: ``<moving>_moved.nii.gz`` (the fixed file's grid and affine),
``<moving labels>_moved.nii.gz`` (nearest neighbour), ``affine.mat``, ``affine_inverse.mat``, and for a deformable
result ``warp.nii.gz``, ``warp_inverse.nii.gz`` (:mod:`..transform`), ``metrics.csv``.

>>> job = RegisterJob("t1.nii.gz", "flair.nii.gz", "reg/", moving_labels="flair_seg.nii.gz")
>>> # result = run(run_register(job)); result.figures["mean_dice"]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...io.geometry import same_grid
from ...io.nifti import Volume, strip_nifti_suffix, write_nifti
from ...progress import Progress
from ..register import RegisterSettings, Registration, register, unit_scaled
from ..transform import AFFINE_FILE, AFFINE_INVERSE_FILE, WARP_FILE, WARP_INVERSE_FILE, SpatialTransform
from .base import JobResult, as_path, check_labels_path, guard, read_image, read_labels

__all__ = [
    "ApplyTransformJob",
    "RegisterArrays",
    "RegisteredArrays",
    "RegisterJob",
    "RegisterResult",
    "dice_per_class",
    "move_volume",
    "register_arrays",
    "run_apply_transform",
    "run_register",
]

METRICS_FILE = "metrics.csv"


def dice_per_class(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    """Dice of every non-zero label value present in ``a`` or ``b`` (same shape)."""
    values = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0})
    out = {}
    for value in values:
        in_a, in_b = a == value, b == value
        total = int(in_a.sum()) + int(in_b.sum())
        out[int(value)] = 2.0 * int(np.count_nonzero(in_a & in_b)) / total if total else 1.0
    return out


def move_volume(transform: SpatialTransform, volume: Volume, reference: Volume, labels: bool) -> np.ndarray:
    """``volume`` moved onto ``reference``'s grid through ``transform`` → ``(Z, Y, X)`` (labels: nearest
    neighbour, their dtype; images: linear, float32), 0 outside the moving volume."""
    return transform.move_array(
        volume.data, volume.display_affine, reference.spatial_shape, reference.display_affine, labels
    )


def _require_on_grid(labels: Volume, image: Volume, labels_path: Path, image_path: Path) -> None:
    if not same_grid(labels.spatial_shape, labels.display_affine, image.spatial_shape, image.display_affine):
        raise ValueError(
            f"{labels_path}: the labels are not on the grid of {image_path} (shape {labels.spatial_shape} vs "
            f"{image.spatial_shape}, or another affine); give the labels drawn on that image"
        )


@dataclass(frozen=True)
class RegisterArrays:
    """Volumes in memory (the Register and Compare docks): ``fixed`` and ``moving`` ``(Z, Y, X)`` with their (4, 4)
    display affines; ``moving_labels`` on the moving grid (or ``None``); ``names`` for messages."""

    fixed: Any
    fixed_affine: np.ndarray
    moving: Any
    moving_affine: np.ndarray
    moving_labels: Any = None
    names: tuple[str, str] = ("fixed", "moving")

    def __post_init__(self) -> None:
        if self.moving_labels is not None and np.shape(self.moving_labels) != np.shape(self.moving):  # one affine
            raise ValueError(
                f"the labels {np.shape(self.moving_labels)} are not on the grid of {self.names[1]} "
                f"{np.shape(self.moving)}; give the labels drawn on the moving volume"
            )


@dataclass
class RegisteredArrays:
    """What :func:`register_arrays` gives, all on the fixed grid ``(Z, Y, X)``: the ``moved`` image (float32), the
    ``moved_labels`` (or ``None``), ``displacement_mm`` (how far each voxel's sample point lies from it, float32),
    a ``checkerboard`` of fixed and moved (both scaled to 0…1, float32) and the ``registration``."""

    registration: Registration
    moved: np.ndarray
    moved_labels: np.ndarray | None
    displacement_mm: np.ndarray
    checkerboard: np.ndarray


CHECKER_MM = 20.0  # the checkerboard's squares (mm)


def register_arrays(
    arrays: RegisterArrays, settings: RegisterSettings, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, RegisteredArrays]:
    """Job: register ``arrays.moving`` onto ``arrays.fixed`` and move the image and labels onto the fixed grid;
    the transform's inverse warp is computed here too (saving it later costs only the writing)."""
    from ..registration_space import as_sitk

    fixed, moving = np.asarray(arrays.fixed, np.float32), np.asarray(arrays.moving, np.float32)
    registration = yield from register(
        fixed, arrays.fixed_affine, moving, arrays.moving_affine, settings, arrays.names, cancel
    )
    yield {"stage": "move", "fraction": 0.97, "message": "moving the image and labels onto the fixed grid"}
    transform, on_fixed = registration.transform, (fixed.shape, arrays.fixed_affine)
    moved = transform.move_array(moving, arrays.moving_affine, *on_fixed)
    moved_labels = None
    if arrays.moving_labels is not None:
        moved_labels = transform.move_array(arrays.moving_labels, arrays.moving_affine, *on_fixed, labels=True)
    transform.inverse_warp()
    spacing = np.linalg.norm(np.asarray(arrays.fixed_affine)[:3, :3], axis=0)
    index = np.indices(fixed.shape, sparse=True)
    squares = sum((i * s // CHECKER_MM).astype(int) for i, s in zip(index, spacing)) % 2 == 0
    checker = [unit_scaled(volume, percentiles=(1, 99)) for volume in (fixed, moved)]
    checkerboard = np.where(squares, *checker).astype(np.float32)
    reference = as_sitk(np.zeros(fixed.shape, np.uint8), arrays.fixed_affine, np.uint8)
    return RegisteredArrays(registration, moved, moved_labels, transform.displacement_mm(reference), checkerboard)


@dataclass(frozen=True)
class RegisterJob:
    """``fixed`` and ``moving``: NIfTI files or DICOM series; ``out``: the output folder; ``moving_labels`` (on the
    moving grid) are moved with the image; ``fixed_labels`` (on the fixed grid) give the Dice in ``metrics.csv``;
    ``fixed_mask``/``moving_mask`` (label files on their image's grid, non-zero inside): the regions to register
    instead of the foregrounds."""

    fixed: Path
    moving: Path
    out: Path
    moving_labels: Path | None = None
    fixed_labels: Path | None = None
    settings: RegisterSettings = field(default_factory=RegisterSettings)
    fixed_mask: Path | None = None
    moving_mask: Path | None = None

    def __post_init__(self) -> None:
        for name in ("fixed", "moving", "out", "moving_labels", "fixed_labels", "fixed_mask", "moving_mask"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        if not isinstance(self.settings, RegisterSettings):
            raise TypeError(f"expected RegisterSettings, got {type(self.settings).__name__}")
        for labels in (self.moving_labels, self.fixed_labels, self.fixed_mask, self.moving_mask):
            if labels is not None:
                check_labels_path(labels)
        self.guard()

    def guard(self) -> None:
        """The output guard: ``out`` is a folder (or not there yet); no output is an input or inside an input DICOM
        series' folder."""
        from ...io.output_guard import OutputError

        if self.out.exists() and not self.out.is_dir():
            raise OutputError(self.out, "is a file; the output must be a folder")
        segs = [self.moving_labels, self.fixed_labels, self.fixed_mask, self.moving_mask]
        guard(self.outputs, [self.fixed, self.moving], segs)

    @property
    def outputs(self) -> list[Path]:
        """Every file the job may write (the warps only for a deformable result)."""
        names = [f"{strip_nifti_suffix(self.moving)}_moved.nii.gz"]
        if self.moving_labels is not None:
            names.append(f"{strip_nifti_suffix(self.moving_labels)}_moved.nii.gz")
        names += [AFFINE_FILE, AFFINE_INVERSE_FILE, WARP_FILE, WARP_INVERSE_FILE, METRICS_FILE]
        return [self.out / name for name in names]


@dataclass(kw_only=True)
class RegisterResult(JobResult):
    """``registration``: the transform and how it was found; ``moved``/``moved_labels``: on the fixed grid;
    ``metrics``: the row of ``metrics.csv``."""

    registration: Registration | None = None
    moved: np.ndarray | None = None
    moved_labels: np.ndarray | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def _metrics_csv(metrics: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(metrics), lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in metrics.items()})
    return buffer.getvalue()


def run_register(
    job: RegisterJob, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, RegisterResult]:
    """Run ``job``: guard the outputs, read the volumes (labels checked against their image's grid before any
    work), register, move image and labels, write every output atomically."""
    from ...io.atomic import atomic_write_text

    job.guard()
    fixed, moving = read_image(job.fixed), read_image(job.moving)
    moving_labels = read_labels(job.moving_labels) if job.moving_labels else None
    fixed_labels = read_labels(job.fixed_labels) if job.fixed_labels else None
    if moving_labels is not None:
        _require_on_grid(moving_labels, moving, job.moving_labels, job.moving)
    if fixed_labels is not None:
        _require_on_grid(fixed_labels, fixed, job.fixed_labels, job.fixed)
    masks = []
    for mask_path, image, image_path in ((job.fixed_mask, fixed, job.fixed), (job.moving_mask, moving, job.moving)):
        mask = read_labels(mask_path) if mask_path is not None else None
        if mask is not None:
            _require_on_grid(mask, image, mask_path, image_path)
        masks.append(None if mask is None else np.asarray(mask.data) != 0)
    registration = yield from register(
        fixed.data, fixed.display_affine, moving.data, moving.display_affine, job.settings,
        (str(job.fixed), str(job.moving)), cancel, tuple(masks),
    )  # fmt: skip
    yield {"stage": "write", "fraction": 0.97, "message": "moving the image and labels, writing"}
    transform = registration.transform
    moved = move_volume(transform, moving, fixed, labels=False)
    metrics: dict[str, Any] = {
        "fixed": str(job.fixed),
        "moving": str(job.moving),
        "features": registration.features,
        "stages": "+".join(registration.stages),
        "seconds": registration.seconds,
        "folds": transform.folds(),
    }
    written = [write_nifti(job.outputs[0], moved, source=fixed.source, display_affine=fixed.display_affine)]
    moved_labels = None
    if moving_labels is not None:
        moved_labels = move_volume(transform, moving_labels, fixed, labels=True)
        written.append(write_nifti(job.outputs[1], moved_labels, source=fixed.source,
                                   display_affine=fixed.display_affine, is_label=True))  # fmt: skip
        if fixed_labels is not None:
            before = move_volume(SpatialTransform.identity(), moving_labels, fixed, labels=True)
            dice_before = dice_per_class(np.asarray(fixed_labels.data), before)
            dice_after = dice_per_class(np.asarray(fixed_labels.data), moved_labels)
            for value, dice in dice_after.items():
                metrics[f"dice_before_{value}"] = dice_before.get(value, 0.0)
                metrics[f"dice_{value}"] = dice
            if dice_after:
                metrics["mean_dice_before"] = float(np.mean([dice_before.get(v, 0.0) for v in dice_after]))
                metrics["mean_dice"] = float(np.mean(list(dice_after.values())))
                reference = np.asarray(fixed_labels.data) > 0
                for key, moved_any in (("dice_all_before", before > 0), ("dice_all", moved_labels > 0)):
                    metrics[key] = dice_per_class(reference.astype(np.uint8), moved_any.astype(np.uint8)).get(1, 1.0)
    # an earlier deformable run's warps would be read with this run's affine: a linear write removes them
    stale = [p for p in (job.out / WARP_FILE, job.out / WARP_INVERSE_FILE) if transform.is_linear and p.exists()]
    written += transform.write(job.out)
    written.append(atomic_write_text(job.out / METRICS_FILE, _metrics_csv(metrics)))
    written = [Path(p) for p in written]
    lines = [f"  wrote {path}" for path in written] + [f"  removed {path} (an earlier run's warp)" for path in stale]
    lines.append(
        f"registered {job.moving} onto {job.fixed}: {metrics['stages']} on {registration.features} features "
        f"({registration.features_reason}), {registration.seconds:.1f} s, {metrics['folds']} folded voxels"
    )
    if "mean_dice" in metrics:
        before, after = metrics["mean_dice_before"], metrics["mean_dice"]
        lines.append(
            f"  label Dice, mean of the classes {before:.3f} (scanner coordinates) → {after:.3f}; all labels as one "
            f"{metrics['dice_all_before']:.3f} → {metrics['dice_all']:.3f}"
        )
    figures = {k: metrics[k] for k in ("seconds", "folds", "mean_dice", "dice_all") if k in metrics}
    return RegisterResult(written=written, lines=lines, figures=figures, registration=registration, moved=moved,
                          moved_labels=moved_labels, metrics=metrics)  # fmt: skip


@dataclass(frozen=True)
class ApplyTransformJob:
    """``moving`` (image, or labels with ``labels``) moved onto ``reference``'s grid through ``transform`` (a
    register output folder, or transform files in ANTs order) → ``out`` (a NIfTI file)."""

    moving: Path
    reference: Path
    transform: tuple[Path, ...]
    out: Path
    labels: bool = False

    def __post_init__(self) -> None:
        for name in ("moving", "reference", "out"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        transform = (self.transform,) if isinstance(self.transform, (str, Path)) else self.transform
        object.__setattr__(self, "transform", tuple(Path(p) for p in transform))
        if not self.transform:
            raise ValueError("give a transform: a register output folder or transform files")
        if self.labels:
            check_labels_path(self.moving)
        self.guard()

    def guard(self) -> None:
        guard([self.out], [self.reference] + ([] if self.labels else [self.moving]),
              [*self.transform] + ([self.moving] if self.labels else []))  # fmt: skip


def run_apply_transform(
    job: ApplyTransformJob, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, JobResult]:
    """Run ``job``: read the transform (a clear error for a file of another kind), the volumes, move, write."""
    from ..transform import read_transform

    job.guard()
    transform = read_transform(*job.transform)
    reference = read_image(job.reference)
    moving = read_labels(job.moving) if job.labels else read_image(job.moving)
    yield {"stage": "apply", "fraction": 0.2, "message": f"moving {job.moving.name} onto {job.reference.name}"}
    moved = move_volume(transform, moving, reference, labels=job.labels)
    path = Path(write_nifti(job.out, moved, source=reference.source, display_affine=reference.display_affine,
                            is_label=job.labels))  # fmt: skip
    yield {"stage": "done", "fraction": 1.0, "message": "done"}
    return JobResult(written=[path], lines=[f"  wrote {path}"])
