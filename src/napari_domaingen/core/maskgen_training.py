"""Train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model: a generator over steps.

:func:`train` yields progress dicts ``{"stage", "step", "steps", "loss", "lr", "seconds_per_step", "eta",
"fraction", "message"}`` after every step (``"stage": "validate"`` dicts add ``"val_dice"`` and
``"val_dice_per_class"``), checks ``cancel()`` between steps, writes the checkpoint atomically every
``checkpoint_every`` steps and at the end, and returns a :class:`TrainResult`. A cancelled run raises
:class:`~napari_domaingen.core.progress.Cancelled`; the last checkpoint written stays intact.

One step (the MaskGen code's): batch of random crops with augmentation → frozen features of the augmented crops
(no grad, per-crop InstanceNorm) → ``cat([image, features])`` → view masking (``F.dropout3d``, rate p) → UNet →
MONAI ``DiceCELoss`` (Dice + CE 1:1, softmax, one-hot, background excluded from Dice) → AdamW → per-step cosine
learning rate. bf16 autocast on GPUs; fp32 on the CPU.

* new model: ``train(volumes, out, settings)``;
* fine-tune: ``init=checkpoint`` — its network, classes and extractor, with the new settings' lr/steps/data;
* resume: ``resume=checkpoint`` — continue an interrupted run exactly (optimizer, schedule, step, settings).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.segunet import PRESETS, SegUNet
from .device import memory_format as preferred_memory_format
from .device import resolve_device
from .maskgen import (
    DEFAULT_MASK_RATE,
    FeatureInput,
    ModelCompatibilityError,
    ModelSpec,
    extractor_location,
    read_model_file,
    save_model,
    view_mask,
)
from .progress import Cancelled, Progress
from .segment import predict_logits
from .segmentation_data import CropSampler, LabelledVolume, LabelMap, default_class_name
from .training import StepClock, checkpoint_due, cosine_scheduler, format_seconds, seeded_torch, step_seed

__all__ = ["TrainResult", "TrainSettings", "resolve_preset", "train"]


@dataclass(frozen=True)
class TrainSettings:
    """How to train. Defaults follow the MaskGen code where a laptop can follow it.

    * ``use_features``: MaskGen (image + frozen features); ``False`` trains the ERM baseline (image only).
    * ``weights`` / ``layer``: the frozen extractor (registry name or ``.pth``) and its feature layer.
    * ``mask_rate``: view-masking rate p (0.75 in the code; 0.5 when untuned), ignored for ERM.
    * ``preset``: UNet size, ``"paper"`` (base 20, 5 levels) or ``"cpu"`` (base 8, 4 levels); ``"auto"`` → paper
      on a GPU, cpu otherwise. ``base``/``levels`` override it.
    * ``crop``: training crop edge in voxels (paper: 128 at 1 mm); also the inference window.
    * ``steps``, ``batch_size`` (paper 4), ``lr`` (2e-4), ``weight_decay`` (1e-5): AdamW, cosine to 0 per step.
    * ``foreground_ratio``: share of crops centred on a labelled voxel.
    * ``augment``: the paper's MONAI augmentations (p = 0.33 each); ``flips``: include flips/90° rotations (turn off
      for left/right-sensitive anatomy).
    * ``precision``: UNet autocast — ``"auto"`` = bf16 on CUDA, fp32 elsewhere.
    * ``checkpoint_every`` / ``validate_every``: steps between checkpoints / validation Dice (0: only at the end).
    * ``seed``: seeds the network initialisation and every random draw (crops, augmentation, masking).
    * ``clip_percentiles``: clip intensities to these percentiles of non-zero voxels before min-max scaling.
    * ``class_names``: names of the label values (sorted, background first); default "class <value>".
    """

    use_features: bool = True
    weights: str = "anatomix"
    layer: str = "final"
    mask_rate: float = DEFAULT_MASK_RATE
    preset: str = "auto"
    base: int | None = None
    levels: int | None = None
    crop: int = 96
    steps: int = 1000
    batch_size: int = 2
    lr: float = 2e-4
    weight_decay: float = 1e-5
    foreground_ratio: float = 0.5
    augment: bool = True
    flips: bool = True
    device: str = "auto"
    precision: str = "auto"
    checkpoint_every: int = 50
    validate_every: int = 50
    seed: int = 0
    clip_percentiles: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None

    def check(self) -> None:
        if not 0.0 <= self.mask_rate < 1.0:
            raise ValueError(f"the view-masking rate must be in [0, 1), got {self.mask_rate}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch size must be at least 1")
        if self.lr <= 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")


@dataclass
class TrainResult:
    """``checkpoint``: the file written last; ``history``: ``{"loss": [...], "lr": [...], "val": [[step, dice]]}``
    plus ``"skipped": [[step, reason]]`` for steps that changed nothing (their loss is NaN)."""

    checkpoint: Path
    spec: ModelSpec
    steps_done: int
    steps: int
    seconds: float
    history: dict[str, list] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        losses = self.history.get("loss", [])
        finite = [v for v in losses[-10:] if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan


def resolve_preset(settings: TrainSettings, device: torch.device) -> dict[str, int]:
    """``{"base", "levels"}`` of the UNet the settings describe on ``device``."""
    preset = settings.preset
    if preset == "auto":
        preset = "paper" if device.type == "cuda" else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}; known: auto, {', '.join(PRESETS)}")
    size = PRESETS[preset]
    return {"base": settings.base or size.base, "levels": settings.levels or size.levels}


def _class_names(values: Sequence[int], names: Sequence[str] | None) -> tuple[str, ...]:
    if names is not None:
        if len(names) != len(values):
            raise ValueError(f"{len(names)} class names given for {len(values)} classes (label values {list(values)})")
        return tuple(str(n) for n in names)
    return tuple(default_class_name(v) for v in values)


def _median_spacing(volumes: Sequence[LabelledVolume]) -> tuple[float, float, float]:
    return tuple(float(s) for s in np.median(np.array([v.spacing for v in volumes]), axis=0))  # type: ignore


def train(
    volumes: Sequence[LabelledVolume],
    out: str | os.PathLike[str],
    settings: TrainSettings = TrainSettings(),
    validation: Sequence[LabelledVolume] = (),
    resume: str | os.PathLike[str] | None = None,
    init: str | os.PathLike[str] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train on ``volumes`` and write the checkpoint to ``out`` (see the module docstring)."""
    cancel = cancel or (lambda: False)
    if resume is not None and init is not None:
        raise ValueError("give either a checkpoint to resume or one to fine-tune from, not both")
    start_time = time.perf_counter()
    yield {"stage": "prepare", "fraction": 0.0, "message": "preparing the training run"}

    stored: dict[str, Any] | None = None
    if resume is not None or init is not None:
        stored = read_model_file(resume if resume is not None else init)  # type: ignore[arg-type]
    if resume is not None:
        assert stored is not None
        if "training" not in stored:
            raise ModelCompatibilityError(f"{resume}: holds no training state (a final export?); fine-tune from it instead")
        kept = TrainSettings(**_settings_from_dict(stored["training"]["settings"]))
        settings = replace(kept, device=settings.device, checkpoint_every=settings.checkpoint_every,
                           validate_every=settings.validate_every)
    settings.check()
    device = resolve_device(settings.device)
    crop = (int(settings.crop),) * 3

    # ---- what the model is: new, or taken from the checkpoint
    if stored is not None:
        spec = ModelSpec.from_dict(stored["spec"])
        if init is not None:  # fine-tuning keeps the network, classes and extractor; crop and p may change
            spec = replace(spec, crop=crop, mask_rate=settings.mask_rate if spec.features is not None else 0.0)
        label_map = LabelMap(spec.label_values)
    else:
        label_map = LabelMap.from_volumes(volumes)
        spec = None
    for volume in [*volumes, *validation]:
        label_map.check(volume)

    if stored is not None and spec is not None:
        features = FeatureInput.none(device)
        if spec.features is not None:
            weights = settings.weights if init is not None and settings.weights != TrainSettings.weights else None
            features = FeatureInput.load(extractor_location(spec, weights), spec.features.layer, device)
        features.check_matches(spec)
    else:
        yield {"stage": "prepare", "fraction": 0.0, "message": f"loading the extractor {settings.weights}"
               if settings.use_features else "ERM baseline: image only"}
        features = (FeatureInput.load(settings.weights, settings.layer, device) if settings.use_features
                    else FeatureInput.none(device))
        size = resolve_preset(settings, device)
        spec = ModelSpec(
            unet={"in_channels": features.channels, "num_classes": label_map.num_classes, **size},
            crop=crop,  # type: ignore[arg-type]
            label_values=label_map.values,
            class_names=_class_names(label_map.values, settings.class_names),
            features=features.spec,
            mask_rate=settings.mask_rate if settings.use_features else 0.0,
            spacing=_median_spacing(volumes),
            clip_percentiles=settings.clip_percentiles,
        )
    if label_map.num_classes < 2:
        raise ValueError("the labels hold only background (0); at least one labelled class is needed")

    # ---- network, optimiser, schedule, loss
    with seeded_torch(step_seed(settings.seed, -1)):
        model = SegUNet(**spec.unet)
    model.check_crop(spec.crop)
    if stored is not None:
        model.load_state_dict(stored["state_dict"])
    memory_format = preferred_memory_format(device)
    model = model.to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = cosine_scheduler(optimizer, settings.steps)
    history: dict[str, list] = {"loss": [], "lr": [], "val": []}
    first_step = 0
    if resume is not None:
        assert stored is not None
        state = stored["training"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_step = int(state["step"])
        history = {k: list(v) for k, v in state.get("history", history).items()}
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True)
    autocast_bf16 = settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")
    sampler = CropSampler(volumes, spec.crop, label_map, settings.foreground_ratio, settings.augment, settings.flips)
    data_names = [v.name for v in volumes]

    def checkpoint(step: int) -> Path:
        if not all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point()):
            raise FloatingPointError(
                f"the network's weights are no longer finite at step {step}; not saved (the last checkpoint written "
                "is kept): lower the learning rate"
            )
        training = {
            "step": step, "steps": settings.steps, "settings": _settings_to_dict(settings),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history,
            "data": data_names, "validation": [v.name for v in validation],
        }
        return save_model(out, model, spec, training)

    clock = StepClock()
    what = f"{spec.method}, UNet base {spec.unet['base']}/{spec.unet['levels']} levels, crop {settings.crop}³, " \
           f"batch {settings.batch_size}, on {device}"
    yield {"stage": "train", "fraction": first_step / settings.steps, "step": first_step, "steps": settings.steps,
           "message": f"training {what}" + (f" (resumed at step {first_step})" if first_step else ""),
           "history": history, "spec": spec.describe()}
    path = Path(out)
    for step in range(first_step, settings.steps):
        if cancel():
            raise Cancelled(f"training cancelled at step {step}")
        clock.start()
        image, target = sampler.sample(settings.seed, step, settings.batch_size)
        x = masked_input(features(image), spec.mask_rate, settings.seed, step)
        x = x.contiguous(memory_format=memory_format)
        target = target.to(device)
        skipped = ""
        if not has_signal(x):
            skipped = "the crops carry no signal (constant input)"
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
                logits = model(x)
            loss = loss_fn(logits.float(), target)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at step {step + 1}; lower the learning rate (the last checkpoint "
                    "written is kept)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=math.inf)
            if torch.isfinite(grad_norm):
                optimizer.step()
            else:  # never let an overflowing gradient into the weights or the optimizer state
                optimizer.zero_grad(set_to_none=True)
                skipped = "non-finite gradients"
        lr = optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # a skipped step still advances the per-step schedule, on purpose
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            scheduler.step()
        clock.stop()
        done = step + 1
        value = math.nan if skipped else float(loss.item())
        history["loss"].append(value)
        history["lr"].append(float(lr))
        if skipped:
            history.setdefault("skipped", []).append([done, skipped])
            recent = [s for s, _ in history["skipped"] if s > done - 20]
            if len(recent) >= 10:
                raise FloatingPointError(
                    f"{len(recent)} of the last 20 steps were skipped ({skipped}); lower the learning rate or check "
                    "the data (the last checkpoint written is kept)"
                )
        left = settings.steps - done
        said = f"skipped ({skipped})" if skipped else f"loss {value:.4f}"
        update: Progress = {
            "stage": "train", "step": done, "steps": settings.steps, "loss": value, "lr": float(lr),
            "seconds_per_step": clock.seconds_per_step, "eta": clock.eta(left), "fraction": done / settings.steps,
            "message": f"step {done}/{settings.steps}: {said}, "
                       f"{clock.seconds_per_step:.1f} s/step, {format_seconds(clock.eta(left))} left",
        }
        if skipped:
            update["skipped"] = skipped
        if validation and (done == settings.steps or (settings.validate_every and done % settings.validate_every == 0)):
            yield update
            dice, per_class = validate(model, features, validation, spec, cancel)
            model.train()
            history["val"].append([done, dice])
            update = {**update, "stage": "validate", "val_dice": dice, "val_dice_per_class": per_class,
                      "message": f"step {done}: validation Dice {dice:.3f}"}
        if checkpoint_due(done, settings.steps, settings.checkpoint_every):
            path = checkpoint(done)
            update = {**update, "checkpoint": str(path), "checkpoint_step": done}
        yield update
    seconds = time.perf_counter() - start_time
    yield {"stage": "done", "fraction": 1.0, "step": settings.steps, "steps": settings.steps,
           "message": f"trained {settings.steps - first_step} steps in {format_seconds(seconds)}; saved {path}"}
    return TrainResult(checkpoint=path, spec=spec, steps_done=settings.steps, steps=settings.steps, seconds=seconds,
                       history=history)


def masked_input(x: torch.Tensor, rate: float, seed: int, step: int, attempts: int = 10) -> torch.Tensor:
    """View masking of step ``step``'s batch, seeded from ``(seed, step)``.

    A draw that leaves no signal in the whole batch (every channel of every sample zeroed: probability ``p^(C·B)``,
    0.75 % of steps at batch 1 with 17 channels and p = 0.75) is redrawn: a constant input carries nothing to learn
    from and drives batch norm to divide by a zero variance.
    """
    masked = x
    for attempt in range(attempts):
        with seeded_torch(step_seed(seed, step, stream=2 + 1000 * attempt)):
            masked = view_mask(x, rate, training=True)
        if has_signal(masked) or not has_signal(x):
            return masked
    return masked


def has_signal(x: torch.Tensor) -> bool:
    """Whether a network input ``(B, C, Z, Y, X)`` varies anywhere (some channel is not constant over the batch)."""
    flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1)
    return bool((flat.amax(dim=1) > flat.amin(dim=1)).any())


def _settings_to_dict(settings: TrainSettings) -> dict[str, Any]:
    out = asdict(settings)
    for key in ("clip_percentiles", "class_names"):
        if out[key] is not None:
            out[key] = list(out[key])
    return out


def _settings_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    known = {f for f in TrainSettings.__dataclass_fields__}
    out = {k: v for k, v in data.items() if k in known}
    for key in ("clip_percentiles", "class_names"):
        if out.get(key) is not None:
            out[key] = tuple(out[key])
    return out


# ----------------------------------------------------------------------------------------------- validation


def validation_region(volume: LabelledVolume, crop: Sequence[int]) -> tuple[slice, ...]:
    """The labelled structures' bounding box grown by half a crop per side (within the volume)."""
    index = np.unravel_index(volume.foreground, volume.labels.shape)  # type: ignore[arg-type]
    region = []
    for axis, size in enumerate(volume.labels.shape):
        low, high = int(index[axis].min()), int(index[axis].max()) + 1
        margin = int(crop[axis]) // 2
        region.append(slice(max(0, low - margin), min(size, high + margin)))
    return tuple(region)


def validate(
    model: SegUNet,
    features: FeatureInput,
    volumes: Sequence[LabelledVolume],
    spec: ModelSpec,
    cancel: Callable[[], bool] | None = None,
) -> tuple[float, dict[str, float]]:
    """Mean Dice over the foreground classes (and per class name) on the labelled region of each volume.

    Classes absent from both the labels and the prediction of a volume are left out of its mean.
    """
    from monai.metrics import compute_dice

    model.eval()
    label_map = LabelMap(spec.label_values)
    scores: list[np.ndarray] = []

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("validation cancelled")

    for volume in volumes:
        region = validation_region(volume, spec.crop)
        image = torch.from_numpy(np.ascontiguousarray(volume.image[region]))[None, None]
        logits = predict_logits(model, features, image, spec.crop, overlap=0.25, on_window=check)
        predicted = logits.argmax(0)
        truth = torch.from_numpy(label_map.encode(volume.labels[region]))
        k = spec.num_classes
        one_hot = lambda t: torch.nn.functional.one_hot(t, k).permute(3, 0, 1, 2)[None].float()  # noqa: E731
        dice = compute_dice(one_hot(predicted), one_hot(truth), include_background=False, ignore_empty=True)
        scores.append(dice[0].numpy())
    per_class_values = np.nanmean(np.stack(scores), axis=0) if scores else np.array([])
    per_class = {name: float(v) for name, v in zip(spec.class_names[1:], per_class_values)}
    valid = [v for v in per_class_values if np.isfinite(v)]
    return (float(np.mean(valid)) if valid else math.nan), per_class


__all__ += ["validate", "validation_region"]
