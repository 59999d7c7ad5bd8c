"""anatomix-style synthetic pretraining of a stable 3D feature extractor, at small scale.

The recipe (from the anatomix paper and code, procedural here):

1. :func:`label_ensemble` — a random 3D label map: Voronoi cells whose borders are bent by a smooth random
   displacement field, with random deformed ellipsoids packed on top (many "anatomical" shapes in one volume);
   and :func:`tissue_ensemble` — crops of the MNI152 tissue labels that nilearn ships, with random lesions.
2. :func:`render_view` — two views of the same labels, each with independent random intensities per label, a
   smooth per-label texture, then MONAI's bias field, Gaussian noise, Gaussian blur, gamma and simulated
   low resolution, min-max scaled to [0, 1] (the extractor's input convention).
3. :func:`supervised_contrastive_loss` — voxel-wise supervised contrastive loss over voxels sampled from both
   views: features of voxels with the same label (in either view) are pulled together, other labels pushed apart.
4. :func:`pretrain` — a generator over steps with the conventions of the other training loops
   (:mod:`napari_domaingen.core.training`): progress dicts, cancel, atomic checkpoints, bit-exact resume; at the
   end :func:`calibrate_batchnorm` re-estimates the batch-norm statistics on whole-brain renders, because the
   extractor is used frozen (eval mode) on whole scans.

The network is an :class:`~napari_domaingen.models.anatomix.AnatomixUNet` (any width); its checkpoint holds
``{"state_dict", "config"}`` so :func:`~napari_domaingen.models.anatomix.load_anatomix` reads it like anatomix's.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.anatomix import AnatomixUNet
from ..models.checkpoints import atomic_save, read_checkpoint
from .device import memory_format, resolve_device
from .progress import Cancelled, Progress
from .training import StepClock, checkpoint_due, cosine_scheduler, format_seconds, seeded_torch, step_seed

__all__ = [
    "PretrainResult",
    "PretrainSettings",
    "calibrate_batchnorm",
    "label_ensemble",
    "pretrain",
    "render_view",
    "shippable",
    "supervised_contrastive_loss",
    "tissue_ensemble",
]


# ------------------------------------------------------------------------------------------------ label maps


def _smooth_field(shape: tuple[int, ...], rng: np.random.Generator, coarse: int, channels: int) -> np.ndarray:
    """``(channels, *shape)`` smooth random field in about [-1, 1]: coarse white noise, trilinearly upsampled."""
    noise = torch.from_numpy(rng.uniform(-1.0, 1.0, (1, channels, coarse, coarse, coarse)).astype(np.float32))
    return F.interpolate(noise, size=shape, mode="trilinear", align_corners=True)[0].numpy()


def label_ensemble(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    cells: int = 24,
    ellipsoids: int = 12,
    warp: float = 0.15,
) -> np.ndarray:
    """A random label map ``(Z, Y, X)`` int64 with labels ``0 … cells + ellipsoids - 1`` (some may be absent).

    ``cells`` Voronoi cells (seeds uniform in the volume) computed on coordinates displaced by a smooth random
    field of amplitude ``warp`` (fraction of the volume side), then ``ellipsoids`` random ellipsoids with wavy
    borders painted over them (radii 5–25 % of the side, random orientation).
    """
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, s, dtype=np.float32) for s in shape], indexing="ij"))
    warped = grid + warp * _smooth_field(shape, rng, coarse=4, channels=3)
    seeds = rng.uniform(0.0, 1.0, (cells, 3)).astype(np.float32)
    points = warped.reshape(3, -1).T
    distance = ((points[:, None, :] - seeds[None]) ** 2).sum(-1)
    labels = distance.argmin(1).reshape(shape).astype(np.int64)
    wobble = _smooth_field(shape, rng, coarse=6, channels=1)[0]
    for k in range(ellipsoids):
        centre = rng.uniform(0.15, 0.85, 3).astype(np.float32)
        radii = rng.uniform(0.05, 0.25, 3).astype(np.float32)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        local = np.tensordot(rotation.astype(np.float32), grid - centre[:, None, None, None], axes=1)
        inside = ((local / radii[:, None, None, None]) ** 2).sum(0) + 0.3 * wobble < 1.0
        labels[inside] = cells + k
    return labels


def tissue_ensemble(shape: tuple[int, int, int], rng: np.random.Generator, lesions: int = 4) -> np.ndarray:
    """A label map ``(Z, Y, X)`` int64 from real anatomy: a random crop of the MNI152 tissue labels that nilearn
    ships (0 background, 1 grey matter, 2 white matter, 3 CSF), zoomed by 0.7–1.4, randomly flipped and with its
    axes permuted, plus up to ``lesions`` wavy ellipsoids (labels 4, 5, …) placed inside the brain."""
    tissue = _mni152_tissue()
    zoom = float(rng.uniform(0.7, 1.4))
    size = [min(max(8, int(round(s * zoom))), n) for s, n in zip(shape, tissue.shape, strict=True)]
    brain = np.argwhere(tissue[:: 4, :: 4, :: 4] > 0) * 4
    centre = brain[rng.integers(len(brain))]
    start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, size, tissue.shape, strict=True)]
    crop = tissue[tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))]
    crop = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]
    order = rng.permutation(3)
    before = [0, 0, 0]
    for axis, source in enumerate(order):  # zoom to the shape that the axis permutation turns into ``shape``
        before[source] = shape[axis]
    labels = F.interpolate(crop, size=tuple(before), mode="nearest")[0, 0].numpy().astype(np.int64)
    labels = np.transpose(labels, order)
    for axis in range(3):
        if rng.random() < 0.5:
            labels = np.flip(labels, axis)
    labels = np.ascontiguousarray(labels)
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, s, dtype=np.float32) for s in shape], indexing="ij"))
    wobble = _smooth_field(shape, rng, coarse=6, channels=1)[0]
    inside_brain = np.argwhere(labels > 0)
    for k in range(int(rng.integers(0, lesions + 1)) if len(inside_brain) else 0):
        centre = inside_brain[rng.integers(len(inside_brain))] / np.asarray(shape, dtype=np.float32)
        radii = rng.uniform(0.04, 0.2, 3).astype(np.float32)
        local = grid - centre.astype(np.float32)[:, None, None, None]
        inside = ((local / radii[:, None, None, None]) ** 2).sum(0) + 0.3 * wobble < 1.0
        labels[inside & (labels > 0)] = 4 + k
    return labels


@lru_cache(maxsize=1)
def _mni152_tissue() -> np.ndarray:
    """The MNI152 tissue labels ``(189, 233, 197)`` uint8, read once per process."""
    from ..io.samples import mni152_tissue_labels

    return mni152_tissue_labels().data


# ------------------------------------------------------------------------------------------------------ views


def render_view(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random appearance of ``labels`` ``(Z, Y, X)``: ``(Z, Y, X)`` float32 in [0, 1].

    Per label a random mean intensity and a random amount of smooth texture; then, each with probability 0.5
    (MONAI transforms, seeded from ``rng``): bias field, Gaussian blur, simulated low resolution, gamma; always
    Gaussian noise; finally min-max scaling.
    """
    from monai.transforms import (
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandSimulateLowResolution,
    )

    count = int(labels.max()) + 1
    means = rng.uniform(0.0, 1.0, count).astype(np.float32)
    texture_amount = rng.uniform(0.0, 0.15, count).astype(np.float32)
    texture = _smooth_field(labels.shape, rng, coarse=int(rng.integers(6, 16)), channels=1)[0]
    image = means[labels] + texture_amount[labels] * texture
    x = torch.from_numpy(image[None].astype(np.float32))
    transforms = [
        RandBiasField(coeff_range=(0.0, 0.3), prob=0.5),
        RandGaussianSmooth(sigma_x=(0.0, 1.0), sigma_y=(0.0, 1.0), sigma_z=(0.0, 1.0), prob=0.5),
        RandSimulateLowResolution(zoom_range=(0.5, 1.0), prob=0.5),
        RandAdjustContrast(gamma=(0.5, 2.0), prob=0.5),
        RandGaussianNoise(std=float(rng.uniform(0.0, 0.05)), prob=1.0),
    ]
    for transform in transforms:
        transform.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
        if isinstance(transform, RandAdjustContrast):
            x = x - x.min()  # gamma needs non-negative values
        x = torch.as_tensor(transform(x))
    x = x[0]
    low, high = float(x.min()), float(x.max())
    return ((x - low) / max(high - low, 1e-6)).numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------------ loss


def supervised_contrastive_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Supervised contrastive loss of ``features`` ``(N, C)`` (L2-normalised here) with ``labels`` ``(N,)``.

    For every anchor with at least one positive (another sample of its label): minus the mean log-probability of
    its positives under the softmax over all other samples of ``cos / temperature``. Mean over anchors.
    """
    z = F.normalize(features.float(), dim=1)
    logits = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, -math.inf)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    valid = count > 0
    if not bool(valid.any()):
        return z.sum() * 0.0
    mean_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1) / count.clamp_min(1)
    return -mean_log_prob[valid].mean()


def sample_voxels(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` flat voxel indices, about equally many per label present (small structures are not drowned)."""
    flat = labels.reshape(-1)
    present = np.unique(flat)
    per_label = max(1, count // len(present))
    chosen = []
    for value in present:
        where = np.flatnonzero(flat == value)
        chosen.append(rng.choice(where, size=min(per_label, len(where)), replace=False))
    out = np.concatenate(chosen)
    return out[:count]


# --------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class PretrainSettings:
    """``ngf``/``out_channels``/``num_downs``: the AnatomixUNet (batch norm, max pooling, nearest upsampling);
    ``crop``: label-map side in voxels (a multiple of ``2**num_downs``); ``batch_size`` label maps per step, two
    views each; ``tissue_fraction``: share of label maps taken from MNI152 tissue (:func:`tissue_ensemble`), the
    rest procedural (:func:`label_ensemble`); ``voxels``: voxels sampled per view for the loss; ``temperature``;
    AdamW ``lr``/``weight_decay`` with a linear warm-up over ``warmup_fraction`` of the steps, then per-step cosine
    decay; gradients clipped to norm ``grad_clip`` (0: off); ``checkpoint_every``; ``seed``; ``device``;
    ``calibration_volumes``: whole-brain renders that re-estimate the batch-norm statistics at the end
    (:func:`calibrate_batchnorm`; 0: keep the statistics of the training crops)."""

    ngf: int = 8
    out_channels: int = 16
    num_downs: int = 4
    crop: int = 32
    batch_size: int = 2
    tissue_fraction: float = 0.5
    voxels: int = 1024
    temperature: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    steps: int = 1000
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"
    calibration_volumes: int = 64

    def check(self) -> None:
        if self.crop % (2**self.num_downs) or self.crop < 2 ** (self.num_downs + 1):
            raise ValueError(f"crop {self.crop} must be a multiple of {2**self.num_downs} and at least "
                             f"{2 ** (self.num_downs + 1)}")
        if self.steps < 1 or self.batch_size < 1 or self.voxels < 8:
            raise ValueError("steps and batch size must be at least 1, voxels at least 8")
        if not 0.0 <= self.warmup_fraction < 1.0 or self.grad_clip < 0:
            raise ValueError(f"warmup_fraction must be in [0, 1) and grad_clip at least 0, got "
                             f"{self.warmup_fraction} and {self.grad_clip}")
        if not 0.0 <= self.tissue_fraction <= 1.0:
            raise ValueError(f"tissue_fraction must be in [0, 1], got {self.tissue_fraction}")

    def network(self) -> dict[str, Any]:
        return {"in_channels": 1, "out_channels": self.out_channels, "ngf": self.ngf, "num_downs": self.num_downs,
                "norm": "batch", "pooling": "max", "upsample": "nearest", "norm_eps": 1e-5}


def calibrate_batchnorm(model: torch.nn.Module, settings: PretrainSettings) -> int:
    """Re-estimate every BatchNorm's running mean/variance (exact average, no gradient) on
    ``settings.calibration_volumes`` whole-brain renders: the MNI152 tissue labels at 0.4–0.6× (about 2 mm), each
    in a random contrast (:func:`render_view`), the background set to 0 in 70 % of them (skull-stripped scans).

    Why: the statistics gathered on ``crop``³ training crops, which have random intensities everywhere, do not
    match whole scans with a dark background; frozen (eval-mode) features then lose most of their contrast
    stability. Seeded from ``(seed, steps)``. Returns the number of volumes used."""
    if settings.calibration_volumes <= 0:
        return 0
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average over the calibration volumes
    tissue = _mni152_tissue()
    rng = np.random.default_rng(step_seed(settings.seed, settings.steps, stream=3))
    device = next(model.parameters()).device
    multiple = 2**settings.num_downs
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for _ in range(settings.calibration_volumes):
                zoom = rng.uniform(0.4, 0.6)
                shape = tuple(max(multiple * 2, int(round(n * zoom / multiple)) * multiple) for n in tissue.shape)
                source = torch.from_numpy(tissue.astype(np.float32))[None, None]
                labels = F.interpolate(source, size=shape, mode="nearest")[0, 0].numpy().astype(np.int64)
                view = render_view(labels, rng)
                if rng.random() < 0.7:
                    view[labels == 0] = 0.0
                model(torch.from_numpy(view)[None, None].to(device))
    finally:
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
        model.train(was_training)
    return settings.calibration_volumes


@dataclass
class PretrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    history: dict[str, list] = field(default_factory=dict)


def training_pair(settings: PretrainSettings, step: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Step ``step``'s batch: views ``(2B, 1, S, S, S)`` (view 1 of every map, then view 2), labels ``(B, S, S, S)``
    and the sampled voxel indices ``(B, V)`` (the same voxels in both views). Seeded from ``(seed, step)``."""
    rng = np.random.default_rng(step_seed(settings.seed, step, stream=1))
    shape = (settings.crop,) * 3
    maps, first, second, picks = [], [], [], []
    for _ in range(settings.batch_size):
        tissue = rng.random() < settings.tissue_fraction
        labels = tissue_ensemble(shape, rng) if tissue else label_ensemble(shape, rng)
        maps.append(labels)
        first.append(render_view(labels, rng))
        second.append(render_view(labels, rng))
        picks.append(sample_voxels(labels, settings.voxels, rng))
    size = min(len(p) for p in picks)
    views = torch.from_numpy(np.stack(first + second))[:, None]
    return views, torch.from_numpy(np.stack(maps)), np.stack([p[:size] for p in picks])


def pretrain(
    out: str | os.PathLike[str],
    settings: PretrainSettings = PretrainSettings(),
    resume: str | os.PathLike[str] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, PretrainResult]:
    """Pretrain an extractor on synthetic label ensembles; writes ``out`` (``{"state_dict", "config",
    "pretraining"}``; ``"training"`` state while unfinished). ``resume``: continue that checkpoint exactly."""
    cancel = cancel or (lambda: False)
    start_time = time.perf_counter()
    stored = None
    if resume is not None:
        stored = read_checkpoint(resume)
        if not isinstance(stored, dict) or "training" not in stored:
            raise ValueError(f"{Path(resume).name} holds no pretraining state to resume")
        saved = {"warmup_fraction": 0.0, "grad_clip": 0.0,  # files from before these settings existed
                 **stored["training"]["settings"]}
        settings = PretrainSettings(**{**saved, "steps": max(settings.steps, saved["steps"]),
                                       "device": settings.device})
    settings.check()
    device = resolve_device(settings.device)
    layout = memory_format(device)
    with seeded_torch(step_seed(settings.seed, -1)):
        model = AnatomixUNet(**settings.network())
    if stored is not None:
        model.load_state_dict(stored["state_dict"])
    model = model.to(device=device, memory_format=layout).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = int(settings.warmup_fraction * settings.steps)
    scheduler = cosine_scheduler(optimizer, settings.steps, warmup_steps=warmup)
    history: dict[str, list] = {"loss": [], "lr": []}
    first_step = 0
    if stored is not None:
        state = stored["training"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_step = int(state["step"])
        history = {k: list(v) for k, v in state["history"].items()}

    def checkpoint(step: int) -> Path:
        if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
            raise FloatingPointError(f"the weights are no longer finite at step {step}; not saved")
        payload: dict[str, Any] = {
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            "config": settings.network(),
            "pretraining": {"recipe": "napari-domaingen synthetic label ensembles, supervised contrastive",
                            "steps": step, "settings": asdict(settings)},
        }
        if step < settings.steps:
            payload["training"] = {"step": step, "steps": settings.steps, "settings": asdict(settings),
                                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                   "history": history}
        return atomic_save(payload, out)

    clock = StepClock()
    yield {"stage": "train", "fraction": first_step / settings.steps, "step": first_step, "steps": settings.steps,
           "history": history,
           "message": f"pretraining AnatomixUNet ngf {settings.ngf} on {settings.crop}³ synthetic label maps, "
                      f"batch {settings.batch_size}×2 views, on {device}"
                      + (f" (resumed at step {first_step})" if first_step else "")}
    path = Path(out)
    for step in range(first_step, settings.steps):
        if cancel():
            raise Cancelled(f"pretraining cancelled at step {step}")
        clock.start()
        views, labels, picks = training_pair(settings, step)
        with seeded_torch(step_seed(settings.seed, step, stream=2)):
            features = model(views.to(device).contiguous(memory_format=layout))  # (2B, C, S, S, S)
        b, c = labels.shape[0], features.shape[1]
        flat = features.reshape(2, b, c, -1)
        index = torch.from_numpy(picks).to(device)
        losses = []
        for i in range(b):
            chosen = torch.cat([flat[0, i][:, index[i]], flat[1, i][:, index[i]]], dim=1).T  # (2V, C)
            label = labels[i].reshape(-1)[index[i].cpu()].to(device)
            losses.append(supervised_contrastive_loss(chosen, torch.cat([label, label]), settings.temperature))
        loss = torch.stack(losses).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step + 1}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        clock.stop()
        done = step + 1
        history["loss"].append(float(loss.item()))
        history["lr"].append(float(lr))
        left = settings.steps - done
        update: Progress = {
            "stage": "train", "step": done, "steps": settings.steps, "loss": float(loss.item()), "lr": float(lr),
            "seconds_per_step": clock.seconds_per_step, "eta": clock.eta(left), "fraction": done / settings.steps,
            "message": f"step {done}/{settings.steps}: loss {loss.item():.4f}, {clock.seconds_per_step:.2f} s/step, "
                       f"{format_seconds(clock.eta(left))} left",
        }
        if done == settings.steps and settings.calibration_volumes:
            yield {"stage": "calibrate", "fraction": 1.0, "step": done, "steps": settings.steps,
                   "message": f"re-estimating the batch-norm statistics on {settings.calibration_volumes} whole-brain "
                              "renders"}
            calibrate_batchnorm(model, settings)
        if checkpoint_due(done, settings.steps, settings.checkpoint_every):
            path = checkpoint(done)
            update = {**update, "checkpoint": str(path), "checkpoint_step": done}
        yield update
    seconds = time.perf_counter() - start_time
    yield {"stage": "done", "fraction": 1.0, "step": settings.steps, "steps": settings.steps,
           "message": f"pretrained {settings.steps - first_step} steps in {format_seconds(seconds)}; saved {path}"}
    return PretrainResult(checkpoint=path, steps=settings.steps, seconds=seconds, history=history)


def shippable(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], **card: Any
) -> Path:
    """Write a finished pretraining ``checkpoint`` as an extractor file ``out``: ``{"state_dict", "config",
    "pretraining"}`` without the optimizer state, ``card`` entries (hardware, wall time, …) added to
    ``"pretraining"``. Refuses an unfinished checkpoint."""
    stored = read_checkpoint(checkpoint)
    if "training" in stored:
        state = stored["training"]
        raise ValueError(f"{Path(checkpoint).name} is unfinished (step {state['step']} of {state['steps']}); "
                         "resume it to the end first")
    payload = {"state_dict": stored["state_dict"], "config": stored["config"],
               "pretraining": {**stored["pretraining"], **card}}
    return atomic_save(payload, out)
