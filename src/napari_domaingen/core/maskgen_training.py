"""Train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model through the one training loop.

:func:`train` is a job over steps (:func:`napari_domaingen.core.training.fit`: progress dicts, cancel, atomic
checkpoints, ``MODEL.best.pt`` by validation Dice, ``MODEL.history.csv``, bit-exact resume); validation dicts add
``"val_dice"`` (mean foreground Dice, the score) and ``"val_dice_per_class"``. It returns a :class:`TrainResult`.

One step (the MaskGen code's): batch of random crops with augmentation → frozen features of the augmented crops
(no grad, per-crop InstanceNorm) → ``cat([image, features])`` → view masking (``F.dropout3d``, rate p) → UNet →
MONAI ``DiceCELoss`` (Dice + CE 1:1, softmax, one-hot, background excluded from Dice) → AdamW → per-step cosine
learning rate. bf16 autocast on GPUs; fp32 on the CPU.

* new model: ``train(volumes, out, settings)``;
* fine-tune: ``init=checkpoint`` — its network, classes and extractor, with the new settings' lr/steps/data;
* resume: ``resume=checkpoint`` — continue a run exactly (its own settings; a larger ``steps`` extends it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..models.segunet import PRESETS, SegUNet
from ..progress import Cancelled, Progress
from .device import memory_format as preferred_memory_format
from .distributed import training_device
from .maskgen import (
    DEFAULT_MASK_RATE,
    FeatureInput,
    ModelSpec,
    extractor_location,
    model_payload,
    read_model_file,
    view_mask,
)
from .segment import predict_logits
from .segmentation_data import CropSampler, LabelledVolume, LabelMap, default_class_name
from .training import (
    FitResult,
    LoopSettings,
    RunState,
    Skip,
    Validation,
    fit,
    resumed_run,
    seeded_init,
    seeded_torch,
    step_seed,
)

__all__ = ["TrainResult", "TrainSettings", "resolve_preset", "train"]


@dataclass(frozen=True)
class TrainSettings(LoopSettings):
    """How to train (the loop's own settings: :class:`~napari_domaingen.core.training.LoopSettings`). Defaults
    follow the MaskGen code where a laptop can follow it.

    * ``use_features``: MaskGen (image + frozen features); ``False`` trains the ERM baseline (image only).
    * ``weights`` / ``layer``: the frozen extractor (registry name or ``.pth``) and its feature layer.
    * ``mask_rate``: view-masking rate p (0.75 in the code; 0.5 when untuned), ignored for ERM.
    * ``preset``: UNet size, ``"paper"`` (base 20, 5 levels) or ``"cpu"`` (base 8, 4 levels); ``"auto"`` → paper
      on a GPU, cpu otherwise. ``base``/``levels`` override it.
    * ``crop``: training crop edge in voxels (paper: 128 at 1 mm); also the inference window.
    * ``steps``, ``batch_size`` (paper 4), ``lr`` (2e-4), ``weight_decay`` (1e-5): AdamW, cosine to 0 per step,
      no warm-up, no clipping (steps with non-finite gradients are skipped).
    * ``foreground_ratio``: share of crops centred on a labelled voxel.
    * ``augment``: the paper's MONAI augmentations (p = 0.33 each); ``flips``: include flips/90° rotations (turn off
      for left/right-sensitive anatomy).
    * ``precision``: UNet autocast — ``"auto"`` = bf16 on CUDA, fp32 elsewhere.
    * ``validate_every`` / ``patience``: validation Dice cadence and early stopping (with validation volumes).
    * ``clip_percentiles``: clip intensities to these percentiles of non-zero voxels before min-max scaling.
    * ``class_names``: names of the label values (sorted, background first); default "class <value>".
    """

    steps: int = 1000
    lr: float = 2e-4
    weight_decay: float = 1e-5
    use_features: bool = True
    weights: str = "anatomix"
    layer: str = "final"
    mask_rate: float = DEFAULT_MASK_RATE
    preset: str = "auto"
    base: int | None = None
    levels: int | None = None
    crop: int = 96
    batch_size: int = 2
    foreground_ratio: float = 0.5
    augment: bool = True
    flips: bool = True
    precision: str = "auto"
    clip_percentiles: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.mask_rate < 1.0:
            raise ValueError(f"the view-masking rate must be in [0, 1), got {self.mask_rate}")
        if self.batch_size < 1:
            raise ValueError("the batch size must be at least 1")


@dataclass
class TrainResult(FitResult):
    """:class:`~napari_domaingen.core.training.FitResult` and the model's :class:`ModelSpec`. ``history``:
    ``{"step", "loss", "lr", "seconds", "val": [[step, dice]], "skipped": [[step, reason]]}`` (skipped steps:
    loss NaN)."""

    spec: ModelSpec | None = None


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


class _MaskGenTask:
    """One MaskGen/ERM step and validation for :func:`~napari_domaingen.core.training.fit`."""

    def __init__(
        self,
        model: SegUNet,
        spec: ModelSpec,
        features: FeatureInput,
        settings: TrainSettings,
        sampler: CropSampler,
        validation: Sequence[LabelledVolume],
        device: torch.device,
    ) -> None:
        from monai.losses import DiceCELoss

        self.module, self.spec, self.features, self.settings = model, spec, features, settings
        self.sampler, self.validation, self.device = sampler, validation, device
        self.validates = bool(validation)
        self.memory_format = preferred_memory_format(device)
        self.bf16 = settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")
        self.loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True)

    def loss(self, step: int) -> torch.Tensor | Skip:
        image, target = self.sampler.sample(self.settings.seed, step, self.settings.batch_size)
        x = masked_input(self.features(image), self.spec.mask_rate, self.settings.seed, step)
        if not has_signal(x):
            return Skip("the crops carry no signal (constant input)")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.module(x.contiguous(memory_format=self.memory_format))
        return self.loss_fn(logits.float(), target.to(self.device))

    def validate(self, cancel: Callable[[], bool]) -> Validation:
        dice, per_class = validate(self.module, self.features, self.validation, self.spec, cancel)
        detail = ", ".join(f"{name} {value:.3f}" for name, value in per_class.items())
        return Validation(
            dice,
            f"validation Dice {dice:.3f}" + (f" ({detail})" if detail else ""),
            {"val_dice": dice, "val_dice_per_class": per_class},
        )

    def payload(self, state: RunState) -> dict[str, Any]:
        return model_payload(self.module, self.spec)

    def finish(self) -> str:
        return ""


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
    if resume is not None and init is not None:
        raise ValueError("give either a checkpoint to resume or one to fine-tune from, not both")
    yield {"stage": "prepare", "fraction": 0.0, "message": "preparing the training run"}

    stored: dict[str, Any] | None = None
    state: RunState | None = None
    if resume is not None or init is not None:
        stored = read_model_file(resume if resume is not None else init)  # type: ignore[arg-type]
    if resume is not None:
        assert stored is not None
        settings, state = resumed_run(TrainSettings, stored, resume, settings)
    settings.check()
    device = training_device(settings.device)  # under torchrun: this process's GPU
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
        yield {
            "stage": "prepare",
            "fraction": 0.0,
            "message": f"loading the extractor {settings.weights}"
            if settings.use_features
            else "ERM baseline: image only",
        }
        features = (
            FeatureInput.load(settings.weights, settings.layer, device)
            if settings.use_features
            else FeatureInput.none(device)
        )
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

    with seeded_init(settings.seed):
        model = SegUNet(**spec.unet)
    model.check_crop(spec.crop)
    if stored is not None:
        model.load_state_dict(stored["state_dict"])
    model = model.to(device=device, memory_format=preferred_memory_format(device))
    sampler = CropSampler(volumes, spec.crop, label_map, settings.foreground_ratio, settings.augment, settings.flips)
    task = _MaskGenTask(model, spec, features, settings, sampler, validation, device)
    what = (
        f"{spec.method}, UNet base {spec.unet['base']}/{spec.unet['levels']} levels, crop {settings.crop}³, "
        f"batch {settings.batch_size}, on {device}"
    )
    fitted = yield from fit(task, settings, out, state, resume, cancel, describe=what)
    return TrainResult(**vars(fitted), spec=spec)


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
        one_hot = [
            torch.nn.functional.one_hot(t, spec.num_classes).permute(3, 0, 1, 2)[None].float()
            for t in (predicted, truth)
        ]
        dice = compute_dice(*one_hot, include_background=False, ignore_empty=True)
        scores.append(dice[0].numpy())
    per_class_values = np.nanmean(np.stack(scores), axis=0) if scores else np.array([])
    per_class = {name: float(v) for name, v in zip(spec.class_names[1:], per_class_values)}
    valid = [v for v in per_class_values if np.isfinite(v)]
    return (float(np.mean(valid)) if valid else math.nan), per_class


__all__ += ["validate", "validation_region"]
