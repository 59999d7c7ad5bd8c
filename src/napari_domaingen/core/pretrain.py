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
4. :func:`pretrain` — a job through the one training loop (:func:`napari_domaingen.core.training.fit`: progress
   dicts, cancel, atomic checkpoints, bit-exact resume, ``MODEL.history.csv``); at the end
   :func:`calibrate_batchnorm` re-estimates the batch-norm statistics on whole-brain renders, because the
   extractor is used frozen (eval mode) on whole scans.

Steps 1–2 live in :mod:`napari_domaingen.core.synthetic_labels`.

The network is an :class:`~napari_domaingen.models.anatomix.AnatomixUNet` (any width); its file holds
``{"format", "version", "state_dict", "config", "pretraining"}`` so
:func:`~napari_domaingen.models.anatomix.load_anatomix` reads it like anatomix's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.anatomix import AnatomixUNet
from ..models.checkpoints import CheckpointLoadError, atomic_save, read_kind, tagged
from ..progress import Progress
from .device import memory_format
from .distributed import training_device
from .synthetic_labels import label_ensemble, mni152_tissue, render_view, tissue_ensemble
from .training import FitResult, LoopSettings, RunState, Validation, fit, resumed_run, run_state, seeded_init, step_seed
from .training import settings_to_dict as plain_settings

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
class PretrainSettings(LoopSettings):
    """How to pretrain: the loop's own settings (:class:`~napari_domaingen.core.training.LoopSettings`; AdamW
    ``lr`` 1e-3, ``weight_decay`` 1e-5, ``warmup`` 50 steps, gradients clipped to norm ``grad_clip`` 1) and the
    recipe's, each described above its field."""

    #: training steps
    steps: int = 1000
    #: AdamW learning rate and weight decay
    lr: float = 1e-3
    weight_decay: float = 1e-5
    #: steps of linear warm-up before the cosine decay
    warmup: int = 50
    #: gradients are clipped to this norm
    grad_clip: float = 1.0
    #: the AnatomixUNet (batch norm, max pooling, nearest upsampling): channels of the first level,
    ngf: int = 8
    #: feature channels out,
    out_channels: int = 16
    #: and 2× poolings
    num_downs: int = 4
    #: label-map side in voxels (a multiple of ``2**num_downs``)
    crop: int = 32
    #: label maps per step, two views each
    batch_size: int = 2
    #: share of label maps taken from MNI152 tissue (:func:`tissue_ensemble`), the rest procedural
    #: (:func:`label_ensemble`)
    tissue_fraction: float = 0.5
    #: voxels sampled per view for the contrastive loss
    voxels: int = 1024
    #: of the supervised contrastive loss
    temperature: float = 0.1
    #: whole-brain renders that re-estimate the batch-norm statistics at the end (:func:`calibrate_batchnorm`;
    #: 0: keep the statistics of the training crops)
    calibration_volumes: int = 64

    def check(self) -> None:
        super().check()
        if self.crop % (2**self.num_downs) or self.crop < 2 ** (self.num_downs + 1):
            raise ValueError(
                f"crop {self.crop} must be a multiple of {2**self.num_downs} and at least {2 ** (self.num_downs + 1)}"
            )
        if self.batch_size < 1 or self.voxels < 8:
            raise ValueError("the batch size must be at least 1, voxels at least 8")
        if not 0.0 <= self.tissue_fraction <= 1.0:
            raise ValueError(f"tissue_fraction must be in [0, 1], got {self.tissue_fraction}")

    def network(self) -> dict[str, Any]:
        return {
            "in_channels": 1,
            "out_channels": self.out_channels,
            "ngf": self.ngf,
            "num_downs": self.num_downs,
            "norm": "batch",
            "pooling": "max",
            "upsample": "nearest",
            "norm_eps": 1e-5,
        }


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
    tissue = mni152_tissue()
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


PretrainResult = FitResult


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


class _PretrainTask:
    """One supervised-contrastive step for :func:`~napari_domaingen.core.training.fit`; batch-norm calibration at
    the end."""

    validates = False

    def __init__(self, model: AnatomixUNet, settings: PretrainSettings, device: torch.device) -> None:
        self.module, self.settings, self.device = model, settings, device
        self.layout = memory_format(device)

    def loss(self, step: int) -> torch.Tensor:
        views, labels, picks = training_pair(self.settings, step)
        features = self.module(views.to(self.device).contiguous(memory_format=self.layout))  # (2B, C, S, S, S)
        b, c = labels.shape[0], features.shape[1]
        flat = features.reshape(2, b, c, -1)
        index = torch.from_numpy(picks).to(self.device)
        losses = []
        for i in range(b):
            chosen = torch.cat([flat[0, i][:, index[i]], flat[1, i][:, index[i]]], dim=1).T  # (2V, C)
            label = labels[i].reshape(-1)[index[i].cpu()].to(self.device)
            losses.append(supervised_contrastive_loss(chosen, torch.cat([label, label]), self.settings.temperature))
        return torch.stack(losses).mean()

    def validate(self, cancel: Callable[[], bool]) -> Validation:  # pragma: no cover - validates is False
        raise NotImplementedError

    def payload(self, state: RunState) -> dict[str, Any]:
        weights = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        return tagged(
            "extractor",
            state_dict=weights,
            config=self.settings.network(),
            pretraining={
                "recipe": "napari-domaingen synthetic label ensembles, supervised contrastive",
                "steps": state.step,
                "settings": plain_settings(self.settings),
            },
        )

    def finish(self) -> str:
        n = calibrate_batchnorm(self.module, self.settings)
        return f"re-estimated the batch-norm statistics on {n} whole-brain renders" if n else ""


def pretrain(
    out: str | os.PathLike[str],
    settings: PretrainSettings = PretrainSettings(),
    resume: str | os.PathLike[str] | None = None,
    cancel: Callable[[], bool] | None = None,
    init: str | os.PathLike[str] | None = None,
) -> Generator[Progress, None, PretrainResult]:
    """Pretrain an extractor on synthetic label ensembles and write ``out`` (loads like anatomix weights).
    ``resume``: continue that run exactly (its settings win; a larger ``steps`` extends it); ``init``: fine-tune
    the weights of that extractor file (its network size wins) with these settings."""
    if resume is not None and init is not None:
        raise ValueError("give either a checkpoint to resume or one to fine-tune from, not both")
    state: RunState | None = None
    stored = None
    if resume is not None:
        stored = read_kind(resume, "extractor")
        settings, state = resumed_run(PretrainSettings, stored, resume, settings, warmup=0, grad_clip=0.0)
    elif init is not None:
        stored = read_kind(init, "extractor")
        network = {k: v for k, v in (stored.get("config") or {}).items() if k in ("ngf", "out_channels", "num_downs")}
        settings = replace(settings, **network)
    settings.check()
    device = training_device(settings.device)  # under torchrun: this process's GPU
    with seeded_init(settings.seed):
        model = AnatomixUNet(**settings.network())
    if stored is not None:
        try:
            model.load_state_dict(stored["state_dict"])
        except (KeyError, RuntimeError) as err:
            raise CheckpointLoadError(
                f"{resume or init}: the weights do not fit a {settings.network()} network: {err}"
            ) from None
    model = model.to(device=device, memory_format=memory_format(device))
    what = (
        f"AnatomixUNet ngf {settings.ngf} on {settings.crop}³ synthetic label maps, batch "
        f"{settings.batch_size}×2 views, on {device}"
    )
    return (yield from fit(_PretrainTask(model, settings, device), settings, out, state, resume, cancel, describe=what))


def shippable(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], **card: Any) -> Path:
    """Write a finished pretraining ``checkpoint`` as an extractor file ``out``: ``{"state_dict", "config",
    "pretraining"}`` without the optimizer state, ``card`` entries (hardware, wall time, …) added to
    ``"pretraining"``. Refuses an unfinished checkpoint."""
    stored = read_kind(checkpoint, "extractor")
    state = run_state(stored, checkpoint) if "training" in stored else None
    if state is not None and not state.finished:
        raise ValueError(
            f"{Path(checkpoint).name} is unfinished (step {state.step} of {state.steps}); resume it to the end first"
        )
    payload = tagged(
        "extractor",
        state_dict=stored["state_dict"],
        config=stored["config"],
        pretraining={**stored["pretraining"], **card},
    )
    return atomic_save(payload, out)
