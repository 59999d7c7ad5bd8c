"""Register a moving volume onto a fixed one in physical space with FireANTs (the registration engine of anatomix's
own code), on features that survive a change of contrast.

Each volume is resampled onto an isotropic grid of ``grid_mm`` voxels (its own orientation, cropped to its
foreground's box grown by 10 mm) and the foregrounds' centres of mass are lined up; the **linear stages**
(``rigid``, ``affine``) maximise FireANTs' global mutual information of the intensities, the **deformable stage**
FireANTs' greedy diffeomorphic registration with local normalised cross-correlation of the features:

* ``mindssc`` — MIND-SSC descriptors (12 channels, :mod:`.mindssc`), no weights needed;
* ``anatomix`` — the frozen anatomix network's features (16 channels), l2-normalised per voxel;
* ``anatomix+mindssc`` — both, each l2-normalised per voxel (28 channels);
* ``intensity`` — the intensities scaled to 0…1 (same contrast only);
* ``auto`` — ``anatomix+mindssc`` when the weights are on this machine, else ``mindssc`` (the result says which).

The result is a :class:`~.transform.SpatialTransform` (fixed LPS mm → moving LPS mm).

>>> settings = RegisterSettings(stages=("rigid", "affine"), features="mindssc")
>>> # registration = run(register(fixed_volume, moving_volume, settings))
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from ..progress import Cancelled, Progress
from .foreground import find_foreground
from .mindssc import mind_ssc
from .registration_space import as_sitk, isotropic_grid, physical_box
from .transform import SpatialTransform

__all__ = [
    "FEATURE_CHOICES",
    "STAGES",
    "RegisterSettings",
    "Registration",
    "RegistrationInputError",
    "register",
    "resolve_features",
    "robust_range",
    "unit_scaled",
]

STAGES = ("rigid", "affine", "deformable")
FEATURE_CHOICES = ("auto", "anatomix+mindssc", "mindssc", "anatomix", "intensity")
_SCALES = (4, 2, 1)
_CC_WINDOW = 5  # voxels of the registration grid, at every scale


class RegistrationInputError(ValueError):
    """Volumes that cannot be registered (no foreground, fields of view that do not overlap, …)."""


@dataclass(frozen=True)
class RegisterSettings:
    """``stages``: a non-empty subset of ``rigid``, ``affine``, ``deformable`` (run in that order);
    ``features``: see the module; ``weights``: the anatomix weights (a registry name or a ``.pth`` file);
    ``grid_mm``: the registration grid's voxel size (mm); ``linear_iterations``: iterations per scale (4×, 2× the
    grid) of each linear stage; ``deformable_iterations``: per scale (4×, 2×, 1×); ``masks``: crop each volume to
    its foreground's box; ``device``: ``auto``, ``cpu``, ``cuda``…; ``gradient_sigma``/``warp_sigma``: the
    deformable stage's smoothing of each update and of the warp (voxels of the scale's grid)."""

    stages: tuple[str, ...] = STAGES
    features: str = "auto"
    weights: str = "anatomix"
    grid_mm: float = 2.0
    linear_iterations: tuple[int, ...] = (200, 100)
    deformable_iterations: tuple[int, ...] = (200, 100, 50)
    masks: bool = True
    device: str = "auto"
    gradient_sigma: float = 1.0
    warp_sigma: float = 1.0

    def __post_init__(self) -> None:
        stages = tuple(str(s).strip().lower() for s in self.stages)
        unknown = [s for s in stages if s not in STAGES]
        if not stages or unknown:
            raise ValueError(f"stages must be some of {', '.join(STAGES)}; got {', '.join(self.stages) or 'none'}")
        object.__setattr__(self, "stages", tuple(s for s in STAGES if s in stages))
        if self.features not in FEATURE_CHOICES:
            raise ValueError(f"features must be one of {', '.join(FEATURE_CHOICES)}; got {self.features!r}")
        if not 0.25 <= float(self.grid_mm) <= 8.0:
            raise ValueError(f"grid_mm must be within 0.25…8 mm, got {self.grid_mm}")
        for name, counts, most in (("linear_iterations", self.linear_iterations, 2),
                                   ("deformable_iterations", self.deformable_iterations, 3)):  # fmt: skip
            counts = tuple(int(c) for c in counts)
            if not 1 <= len(counts) <= most or min(counts) < 0:
                raise ValueError(f"{name}: 1 to {most} non-negative counts (coarse to fine), got {counts}")
            object.__setattr__(self, name, counts)


@dataclass
class Registration:
    """What :func:`register` found: the ``transform`` (fixed → moving), the ``features`` used (and why),
    the ``stages`` run, ``seconds`` spent, and the registration grids' shapes."""

    transform: SpatialTransform
    features: str
    features_reason: str
    stages: tuple[str, ...]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def resolve_features(features: str, weights: str) -> tuple[str, str]:
    """``(features, reason)``: ``auto`` becomes ``anatomix+mindssc`` when the anatomix weights are on this machine
    (no download), else ``mindssc``."""
    if features != "auto":
        return features, "chosen"
    from ..models.weights import resolve_weights

    try:
        resolve_weights(weights, allow_download=False)
    except Exception:  # not present locally (or a bad file): MIND-SSC needs no weights
        return "mindssc", "auto: no anatomix weights on this machine, MIND-SSC only"
    return "anatomix+mindssc", "auto: anatomix weights found"


def robust_range(volume: np.ndarray, mask: np.ndarray | None = None, percentiles=(0.5, 99.5)) -> tuple[float, float]:
    """``(low, high)``: the ``percentiles`` of the voxels in ``mask`` (all voxels without one, or when it is
    empty), from a regular sample of at most ~2 M voxels; ``high > low``."""
    values = volume[mask] if mask is not None and mask.any() else np.ravel(volume)
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values[:: max(1, values.size // 2_000_000)], percentiles)
    return float(low), float(max(high, low + 1e-6))


def unit_scaled(volume: np.ndarray, mask: np.ndarray | None = None, percentiles=(0.5, 99.5)) -> np.ndarray:
    """``volume`` scaled to 0…1 by :func:`robust_range` (float32)."""
    low, high = robust_range(volume, mask, percentiles)
    return np.clip((volume - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _features(unit: np.ndarray, kind: str, weights: str) -> torch.Tensor:
    """``(C, Z, Y, X)`` float32 features of a 0…1 volume on its registration grid."""
    from .features import normalise

    parts = []
    if "anatomix" in kind:
        from ..progress import run
        from .features import FeatureSettings, extract_features

        result = run(extract_features(unit, FeatureSettings(weights=weights, normalisation="unit")))
        parts.append(torch.from_numpy(np.asarray(result.features, np.float32)))
    if "mindssc" in kind:
        parts.append(normalise(mind_ssc(unit), "unit"))
    if kind == "intensity":
        parts.append(torch.from_numpy(unit)[None])
    return torch.cat(parts, 0)


class _Watch(torch.nn.Module):
    """Wraps an engine loss: counts its calls (the iterations) and stops the engine when ``cancel()`` says so."""

    def __init__(self, loss: torch.nn.Module, cancel: Callable[[], bool] | None) -> None:
        super().__init__()
        self.loss, self.cancel, self.calls = loss, cancel, 0

    def forward(self, moved: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        if self.cancel is not None and self.cancel():
            raise Cancelled("registration cancelled")
        self.calls += 1
        return self.loss(moved, fixed)


def _engine_image(grid: sitk.Image, array: torch.Tensor, device: torch.device):
    from fireants.io.image import BatchedImages, Image

    image = Image(grid, device=str(device))
    image.array = array[None].to(device)
    image.channels = int(array.shape[0])
    return BatchedImages([image])


def _run_stage(make: Callable[[], Any], watch: _Watch, total: int, label: str, start: float, span: float):
    """Run one engine stage in a helper thread, yielding progress from its iteration count; returns the engine."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            engine = make()
            engine.optimize()
            outcome["engine"] = engine
        except BaseException as err:  # re-raised in the job's thread
            outcome["error"] = err

    thread = threading.Thread(target=work, name=f"register-{label}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.25)
        done = min(watch.calls / max(total, 1), 1.0)
        yield {"stage": label, "fraction": start + span * done, "message": f"{label}: iteration {watch.calls}/{total}"}
    if "error" in outcome:
        raise outcome["error"]
    return outcome["engine"]


def _foreground(volume: np.ndarray, name: str) -> np.ndarray:
    try:
        foreground = find_foreground(volume)
    except ValueError as err:
        raise RegistrationInputError(f"{name}: {err}") from None
    if foreground.voxels == 0:
        level = f"{foreground.level:g}"
        raise RegistrationInputError(f"{name}: no foreground (it is its background level {level} everywhere)")
    return foreground.mask


def _region(volume: np.ndarray, mask: np.ndarray | None, name: str) -> np.ndarray:
    """The region to register: the given mask (checked) or the volume's foreground."""
    if mask is None:
        return _foreground(volume, name)
    mask = np.asarray(mask) != 0
    if mask.shape != volume.shape:
        raise RegistrationInputError(f"{name}: its mask {mask.shape} is not on its grid {volume.shape}")
    if not mask.any():
        raise RegistrationInputError(f"{name}: its mask is empty")
    return mask


def _check_overlap(fixed: sitk.Image, fixed_mask: np.ndarray, moving: sitk.Image, moving_mask: np.ndarray,
                   names: tuple[str, str]) -> None:  # fmt: skip
    """Refuse two foregrounds whose boxes (LPS mm) do not overlap: no stage would bring them together."""
    box_f, box_m = physical_box(fixed, fixed_mask), physical_box(moving, moving_mask)
    low_f, high_f, low_m, high_m = box_f.min(0), box_f.max(0), box_m.min(0), box_m.max(0)
    overlap = np.minimum(high_f, high_m) - np.maximum(low_f, low_m)
    if np.any(overlap < 0):
        gap = float(np.linalg.norm(np.maximum(-overlap, 0.0)))
        raise RegistrationInputError(
            f"{names[1]} and {names[0]}: their fields of view do not overlap in scanner coordinates (the foregrounds "
            f"are {gap:.0f} mm apart); are they of the same subject, with their headers' geometry intact?"
        )


def register(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    settings: RegisterSettings = RegisterSettings(),
    names: tuple[str, str] = ("fixed", "moving"),
    cancel: Callable[[], bool] | None = None,
    masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> Generator[Progress, None, Registration]:
    """Job: register ``moving`` ``(Z, Y, X)`` (display affine ``moving_affine``) onto ``fixed``; see the module.

    ``masks``: ``(Z, Y, X)`` masks of the region to register on each volume's grid (non-zero inside); ``None``
    takes the volume's foreground (:mod:`.foreground`).

    :class:`RegistrationInputError` for volumes without foreground or fields of view that do not overlap;
    :class:`~napari_domaingen.progress.Cancelled` when ``cancel()`` turns true (checked every iteration).
    """
    LocalNormalizedCrossCorrelationLoss, GlobalMutualInformationLoss = _engine_losses()
    from .device import resolve_device

    start = time.perf_counter()
    for name, volume in zip(names, (fixed, moving)):
        if np.ndim(volume) != 3:
            raise RegistrationInputError(f"{name}: expected a 3D volume, got shape {np.shape(volume)}")
    fixed, moving = np.asarray(fixed, np.float32), np.asarray(moving, np.float32)
    kind, reason = resolve_features(settings.features, settings.weights)
    device = resolve_device(settings.device)
    grid_text = f"a {settings.grid_mm:g} mm grid"
    yield {"stage": "prepare", "fraction": 0.0, "message": f"foregrounds, {kind} features on {grid_text}"}
    masks = [_region(volume, mask, name) for volume, mask, name in zip((fixed, moving), masks, names)]
    images = [as_sitk(np.nan_to_num(v), a) for v, a in ((fixed, fixed_affine), (moving, moving_affine))]
    _check_overlap(images[0], masks[0], images[1], masks[1], names)
    grids = [isotropic_grid(image, settings.grid_mm, mask if settings.masks else None)
             for image, mask in zip(images, masks)]  # fmt: skip
    units, centres = [], []
    for grid, mask, image in zip(grids, masks, images):
        on_grid = sitk.GetArrayFromImage(grid)
        mask_image = sitk.Resample(_mask_image(mask, image), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        mask_on_grid = sitk.GetArrayFromImage(mask_image).astype(bool)
        units.append(unit_scaled(on_grid, mask_on_grid))
        centres.append(_centre(mask_on_grid if mask_on_grid.any() else on_grid >= 0, grid))
    intensity = [_engine_image(g, torch.from_numpy(u)[None], device) for g, u in zip(grids, units)]
    if cancel is not None and cancel():
        raise Cancelled("registration cancelled")

    stages = settings.stages
    weights = {"rigid": 1.0, "affine": 1.0, "deformable": 3.0}
    total_weight = sum(weights[s] for s in stages)
    # start from the foregrounds' centres of mass lined up (ANTs' and FireANTs' usual initialisation)
    init = torch.eye(4, dtype=torch.float32)[None]
    init[0, :3, 3] = torch.as_tensor(centres[1] - centres[0], dtype=torch.float32)
    init, position = init.to(device), 0.05
    for stage in [s for s in stages if s != "deformable"]:
        span = 0.9 * weights[stage] / total_weight
        watch = _Watch(GlobalMutualInformationLoss(kernel_type="gaussian", reduction="mean"), cancel)
        make = functools.partial(_linear_engine, stage, intensity, settings.linear_iterations, watch, init)
        engine = yield from _run_stage(make, watch, sum(settings.linear_iterations), stage, position, span)
        init = (engine.get_rigid_matrix() if stage == "rigid" else engine.get_affine_matrix()).detach()
        position += span
    matrix = init[0].double().cpu().numpy()  # (4, 4): the engines' homogeneous matrices
    transform = SpatialTransform(matrix)
    info: dict[str, Any] = {
        "grid_fixed": tuple(sitk.GetArrayFromImage(grids[0]).shape),
        "grid_moving": tuple(sitk.GetArrayFromImage(grids[1]).shape),
    }
    if "deformable" in stages:
        span = 0.9 * weights["deformable"] / total_weight
        yield {"stage": "features", "fraction": position, "message": f"{kind} features"}
        feats = [_engine_image(g, _features(u, kind, settings.weights), device) for g, u in zip(grids, units)]
        info["channels"] = int(feats[0]().shape[1])
        iterations = settings.deformable_iterations
        loss = LocalNormalizedCrossCorrelationLoss(
            kernel_type="rectangular", spatial_dims=3, kernel_size=_CC_WINDOW, reduction="mean"
        )
        watch = _Watch(loss, cancel)
        init_affine = torch.as_tensor(matrix, dtype=torch.float32)[None].to(device)
        smoothing = (settings.gradient_sigma, settings.warp_sigma)
        make = functools.partial(_deformable_engine, feats, iterations, smoothing, watch, init_affine)
        engine = yield from _run_stage(make, watch, sum(iterations), "deformable", position, span)
        transform = _deformable_transform(engine, feats, grids[0], matrix)
    seconds = time.perf_counter() - start
    yield {"stage": "done", "fraction": 1.0, "message": f"registered in {seconds:.1f} s"}
    return Registration(transform, kind, reason, stages, seconds, info)


def _engine_losses():
    """FireANTs' LNCC and MI losses, imported quietly (the engine prints its build options and logs every stage at
    INFO level)."""
    logging.disable(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        from fireants.losses.cc import LocalNormalizedCrossCorrelationLoss
        from fireants.losses.mi import GlobalMutualInformationLoss
        from fireants.registration import affine, greedy, rigid  # noqa: F401
    logging.disable(logging.NOTSET)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("fireants"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return LocalNormalizedCrossCorrelationLoss, GlobalMutualInformationLoss


def _linear_engine(stage: str, images, iterations: tuple[int, ...], watch: _Watch, init: torch.Tensor):
    """A FireANTs rigid or affine registration of the intensities (global mutual information via ``watch``)."""
    from fireants.registration.affine import AffineRegistration
    from fireants.registration.rigid import RigidRegistration

    common = {
        "scales": list(_SCALES[: len(iterations)]),
        "iterations": list(iterations),
        "fixed_images": images[0],
        "moving_images": images[1],
        "loss_type": "custom",
        "custom_loss": watch,
        "optimizer": "Adam",
        "optimizer_lr": 1e-2,
        "tolerance": 0.0,  # run every iteration asked for (the engine's early stop ends too soon on CPU budgets)
        "max_tolerance_iters": 10**9,
        "progress_bar": False,
    }
    if stage == "rigid":
        return RigidRegistration(init_translation=init[:, :3, 3].clone(), **common)
    return AffineRegistration(init_rigid=init, **common)


def _deformable_engine(
    images, iterations: tuple[int, ...], smoothing: tuple[float, float], watch: _Watch, init_affine: torch.Tensor | None
):
    """FireANTs' greedy (compositive) deformable registration of the features, LNCC via ``watch``."""
    from fireants.registration.greedy import GreedyRegistration

    return GreedyRegistration(
        scales=list(_SCALES[3 - len(iterations) :]),
        iterations=list(iterations),
        fixed_images=images[0],
        moving_images=images[1],
        loss_type="custom",
        custom_loss=watch,
        cc_kernel_size=_CC_WINDOW,
        smooth_grad_sigma=smoothing[0],
        smooth_warp_sigma=smoothing[1],
        optimizer_lr=0.5,
        init_affine=init_affine,
        tolerance=0.0,
        max_tolerance_iters=10**9,
        progress_bar=False,
    )


def _centre(mask: np.ndarray, grid: sitk.Image) -> np.ndarray:
    """The centre of mass (LPS mm) of a ``(Z, Y, X)`` mask on ``grid``."""
    index = np.argwhere(mask).mean(0)[::-1]
    return np.asarray(grid.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def _deformable_transform(engine, feats, fixed_grid: sitk.Image, matrix: np.ndarray) -> SpatialTransform:
    """The engine's fixed → moving mapping as ``A · (x + u(x))`` with the linear stages' ``A``: ``u`` is read off
    the engine's sample points ``y(x)`` on the fixed grid as ``A⁻¹ y(x) − x``."""
    with torch.no_grad():
        coords = engine.get_warped_coordinates(feats[0], feats[1])[0].double()  # (Z, Y, X, 3) normalised, x-y-z
        torch2phy = feats[1].get_torch2phy()[0].double().to(coords.device)
        moving_points = coords @ torch2phy[:3, :3].T + torch2phy[:3, 3]
    size = fixed_grid.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")[::-1], -1).astype(np.float64)
    direction = np.asarray(fixed_grid.GetDirection()).reshape(3, 3) * np.asarray(fixed_grid.GetSpacing())
    fixed_points = index @ direction.T + np.asarray(fixed_grid.GetOrigin())
    inverse = np.linalg.inv(matrix)
    y = moving_points.cpu().numpy()
    displacement = (y @ inverse[:3, :3].T + inverse[:3, 3]) - fixed_points
    warp = sitk.GetImageFromArray(displacement, isVector=True)
    warp.CopyInformation(fixed_grid)
    return SpatialTransform(matrix, warp)
