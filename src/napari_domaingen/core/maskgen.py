"""MaskGen: a segmentation UNet fed the image plus frozen anatomix features, with view masking in training.

* :class:`FeatureInput` builds the network input from an image batch ``(B, 1, Z, Y, X)`` in [0, 1]: frozen
  features (extractor in eval mode, no gradients), an affine-free InstanceNorm per window/crop (per sample and
  channel, as in the MaskGen code), concatenated after the image: ``(B, 1 + C, Z, Y, X)``.
* :func:`view_mask` is the paper's view masking: ``F.dropout3d`` on that input, i.e. every channel of every
  sample zeroed independently with probability ``p`` and the survivors scaled by ``1 / (1 - p)``; training only.
* :func:`ablate` zeroes the image or the feature channels at inference (the paper's Fig. 4 analysis).
* :class:`ModelSpec` says what a model was trained with (UNet size, classes, crop, extractor identity) and travels
  in its checkpoint; :func:`save_model` / :func:`load_model` write and read checkpoints that load with
  ``torch.load(..., weights_only=True)``.

The ERM baseline is the same code with ``features=None`` (1 input channel, no masking).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import DomaingenError
from ..models.anatomix import AnatomixUNet
from ..models.checkpoints import KINDS, CheckpointLoadError, atomic_save, read_kind, tagged
from ..models.segunet import SegUNet
from ..models.weights import REGISTRY
from .device import memory_format, resolve_precision
from .features import EXTRACTOR_LOCK, get_extractor, model_family

__all__ = [
    "DEFAULT_MASK_RATE",
    "FORMAT",
    "model_payload",
    "MASK_RATE_HELP",
    "FeatureInput",
    "FeatureSpec",
    "ModelCompatibilityError",
    "ModelSpec",
    "ablate",
    "extractor_fingerprint",
    "load_model",
    "save_model",
    "view_mask",
]

FORMAT = KINDS["maskgen"][0]

#: The MaskGen code's view-masking rate.
DEFAULT_MASK_RATE = 0.75
MASK_RATE_HELP = (
    "view masking: probability that each input channel (the image and every feature channel) of a training sample "
    "is zeroed. 0.75 is the MaskGen code's value; the paper shows an untuned 0.5 still beats the baselines, so use "
    "0.5 when you cannot tune it. 0 turns masking off. Never applied at inference."
)

Ablation = Literal["none", "image", "features"]


class ModelCompatibilityError(DomaingenError, ValueError):
    """A model checkpoint does not fit the data, the extractor or the run it is used for; the message says why."""


@dataclass(frozen=True)
class FeatureSpec:
    """The frozen extractor a model's features came from.

    ``weights``: registry name or file path as given; ``layer``: ``"final"``/``"penultimate"``; ``channels``:
    feature channels; ``extractor``: the :class:`AnatomixUNet` config; ``fingerprint``: SHA-256 of its state dict
    (names, shapes, values), which identifies the weights wherever the file lives; ``precision``: ``"bf16"`` or
    ``"fp32"`` autocast of the extractor.
    """

    weights: str
    layer: str
    channels: int
    extractor: dict[str, Any]
    fingerprint: str
    precision: str = "fp32"

    def describe(self) -> str:
        return (
            f"{self.channels} '{self.layer}' feature channels of {Path(self.weights).name} "
            f"(weights {self.fingerprint[:12]})"
        )


@dataclass(frozen=True)
class ModelSpec:
    """What a segmentation model was trained with; stored in its checkpoint as a plain dict.

    ``unet``: :class:`SegUNet` config; ``crop``: training crop ``(Z, Y, X)`` voxels (also the inference window);
    ``label_values``: file label value of each class (``[0]`` is background); ``class_names``: one per class;
    ``features``: the extractor, or ``None`` for the ERM baseline; ``mask_rate``: view-masking rate used in
    training; ``spacing``: median voxel size (mm, display order) of the training images;
    ``clip_percentiles``: intensity clip applied before min-max scaling, if any.
    """

    unet: dict[str, Any]
    crop: tuple[int, int, int]
    label_values: tuple[int, ...]
    class_names: tuple[str, ...]
    features: FeatureSpec | None
    mask_rate: float
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    clip_percentiles: tuple[float, float] | None = None

    @property
    def method(self) -> str:
        """``"MaskGen"`` (image + features) or ``"ERM"`` (image only)."""
        return "ERM" if self.features is None else "MaskGen"

    @property
    def num_classes(self) -> int:
        return len(self.label_values)

    def describe(self) -> str:
        """One line for people."""
        size = f"UNet base {self.unet['base']}, {self.unet['levels']} levels"
        classes = ", ".join(self.class_names[1:]) or "-"
        what = "image only" if self.features is None else f"image + {self.features.describe()}"
        return f"{self.method} ({what}); {size}; crop {'×'.join(map(str, self.crop))}; classes: {classes}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["crop"] = list(self.crop)
        out["label_values"] = list(self.label_values)
        out["class_names"] = list(self.class_names)
        out["spacing"] = list(self.spacing)
        out["clip_percentiles"] = list(self.clip_percentiles) if self.clip_percentiles else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        features = data.get("features")
        clip = data.get("clip_percentiles")
        return cls(
            unet=dict(data["unet"]),
            crop=tuple(int(c) for c in data["crop"]),  # type: ignore[arg-type]
            label_values=tuple(int(v) for v in data["label_values"]),
            class_names=tuple(str(n) for n in data["class_names"]),
            features=None if features is None else FeatureSpec(**features),
            mask_rate=float(data["mask_rate"]),
            spacing=tuple(float(s) for s in data.get("spacing", (1.0, 1.0, 1.0))),  # type: ignore[arg-type]
            clip_percentiles=tuple(float(c) for c in clip) if clip else None,  # type: ignore[arg-type]
        )


# ----------------------------------------------------------------------------------------------- input


def view_mask(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """View masking: ``F.dropout3d`` on ``(B, C, Z, Y, X)`` — whole channels zeroed with probability ``p``,
    survivors scaled by ``1/(1-p)``; the identity when not ``training`` or ``p == 0``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"the view-masking rate must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return F.dropout3d(x, p=p, training=True)


def ablate(x: torch.Tensor, mode: Ablation) -> torch.Tensor:
    """Zero the image channel (``"image"``) or the feature channels (``"features"``) of a MaskGen input."""
    if mode == "none":
        return x
    if x.shape[1] < 2:
        raise ModelCompatibilityError(
            "ablation needs a MaskGen model (image + features); this model sees the image only (ERM baseline)"
        )
    x = x.clone()
    if mode == "image":
        x[:, :1] = 0
    elif mode == "features":
        x[:, 1:] = 0
    else:
        raise ValueError(f"unknown ablation {mode!r}; use 'none', 'image' or 'features'")
    return x


def instance_normalise(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Affine-free InstanceNorm3d of ``(B, C, Z, Y, X)``: per sample and channel, zero mean and unit variance."""
    return F.instance_norm(features.float(), eps=eps)


_FINGERPRINTS: dict[int, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def extractor_fingerprint(model: AnatomixUNet) -> str:
    """SHA-256 hex digest of the extractor's state dict (key names, shapes and float32 values)."""
    with _FINGERPRINT_LOCK:
        if id(model) in _FINGERPRINTS:
            return _FINGERPRINTS[id(model)]
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(repr(tuple(value.shape)).encode())
        digest.update(
            value.detach()
            .to("cpu", torch.float32 if value.is_floating_point() else value.dtype)
            .contiguous()
            .numpy()
            .tobytes()
        )
    result = digest.hexdigest()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[id(model)] = result
    return result


class FeatureInput:
    """Image batch ``(B, 1, Z, Y, X)`` → MaskGen input ``(B, 1 + C, Z, Y, X)`` (or the image alone for ERM).

    Features are computed under ``torch.no_grad`` with the frozen extractor (eval mode) in ``precision``
    autocast, per crop/window, then instance-normalised per crop/window. ``extractor=None`` means ERM.
    """

    def __init__(self, extractor: AnatomixUNet | None, spec: FeatureSpec | None, device: torch.device) -> None:
        self.extractor = extractor
        self.spec = spec
        self.device = device

    @classmethod
    def load(cls, weights: str, layer: str, device: torch.device, precision: str = "auto") -> FeatureInput:
        """The (cached) frozen extractor ``weights`` (registry name or ``.pth`` path) on ``device``."""
        extractor = get_extractor(weights, device)
        precision = resolve_precision(precision, device, allow_bf16=model_family(extractor) == "anatomix")
        spec = FeatureSpec(
            weights=str(weights),
            layer=layer,
            channels=extractor.feature_channels(layer),  # type: ignore[arg-type]
            extractor=extractor.config,
            fingerprint=extractor_fingerprint(extractor),
            precision=precision,
        )
        return cls(extractor, spec, device)

    @classmethod
    def none(cls, device: torch.device) -> FeatureInput:
        """The ERM input: the image alone."""
        return cls(None, None, device)

    @property
    def channels(self) -> int:
        """Channels of the network input (1 + feature channels)."""
        return 1 + (self.spec.channels if self.spec is not None else 0)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Instance-normalised frozen features ``(B, C, Z, Y, X)`` float32 of an image batch."""
        assert self.extractor is not None and self.spec is not None
        with (
            torch.no_grad(),
            EXTRACTOR_LOCK,
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.spec.precision == "bf16"),
        ):
            image = image.to(self.device).contiguous(memory_format=memory_format(self.device))
            raw = self.extractor.features(image, layer=self.spec.layer)  # type: ignore[arg-type]
        return instance_normalise(raw)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = image.to(self.device, torch.float32)
        if self.extractor is None:
            return image
        return torch.cat([image, self.features(image)], dim=1)

    def check_matches(self, spec: ModelSpec) -> None:
        """:class:`ModelCompatibilityError` if a model trained per ``spec`` cannot use these inputs."""
        check_features(spec, self.spec)


def check_features(spec: ModelSpec, have: FeatureSpec | None) -> None:
    """:class:`ModelCompatibilityError` unless ``have`` is the extractor (and feature layer) ``spec`` was trained
    with."""
    want = spec.features
    if want is None and have is None:
        return
    if want is None:
        raise ModelCompatibilityError("this is an ERM model (trained on the image alone): it takes no features")
    if have is None:
        raise ModelCompatibilityError(f"this MaskGen model needs the {want.describe()}; no extractor was given")
    if have.channels != want.channels or have.layer != want.layer:
        raise ModelCompatibilityError(
            f"the model was trained on {want.channels} '{want.layer}' feature channels, but the extractor "
            f"{Path(have.weights).name} gives {have.channels} '{have.layer}' channels: the input channel counts "
            f"differ ({1 + want.channels} vs {1 + have.channels}); use the extractor and feature layer the model "
            "was trained with"
        )
    if have.fingerprint != want.fingerprint:
        raise ModelCompatibilityError(
            f"the model was trained with the features of another extractor: it expects {want.describe()}, "
            f"but {Path(have.weights).name} has other weights ({have.fingerprint[:12]}); use the same extractor "
            "file the model was trained with, or train a new model with this one"
        )


def extractor_location(spec: ModelSpec, override: str | None = None) -> str:
    """Where to load the extractor of a MaskGen model from: ``override`` if given, else what it was trained with.

    Raises :class:`ModelCompatibilityError` saying which file to provide when the recorded file is not here.
    """
    if spec.features is None:
        raise ModelCompatibilityError("an ERM model needs no extractor")
    if override:
        return str(override)
    recorded = spec.features.weights
    if recorded in REGISTRY or Path(recorded).is_file():
        return recorded
    raise ModelCompatibilityError(
        f"the model was trained with the extractor file {recorded}, which is not on this machine; choose that file "
        f"(weights {spec.features.fingerprint[:12]}…) as the extractor"
    )


# ----------------------------------------------------------------------------------------------- checkpoints


def model_payload(model: SegUNet, spec: ModelSpec) -> dict[str, Any]:
    """The content of a model file (without training state): ``{"format", "version", "spec", "state_dict"}``."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return tagged("maskgen", spec=spec.to_dict(), state_dict=state)


def save_model(
    path: str | os.PathLike[str], model: SegUNet, spec: ModelSpec, training: dict[str, Any] | None = None
) -> Path:
    """Write a model file atomically; ``training`` (see :mod:`napari_domaingen.core.training`) makes it
    resumable. Every value is a tensor, number, string, list or dict, so it loads with ``weights_only=True``."""
    payload = model_payload(model, spec)
    if training is not None:
        payload["training"] = training
    return atomic_save(payload, path)


def read_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict of a MaskGen/ERM model file, or :class:`CheckpointLoadError` saying what the file is."""
    return read_kind(path, "maskgen")


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> tuple[SegUNet, ModelSpec]:
    """The segmentation network of a checkpoint (eval mode, on ``device``) and its :class:`ModelSpec`."""
    obj = read_model_file(path)
    spec = ModelSpec.from_dict(obj["spec"])
    model = SegUNet(**spec.unet)
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointLoadError(f"{path}: the weights do not match the model it describes: {err}") from err
    return model.to(device).eval(), spec
