"""A DGM-DR swap model: the ViT encoder, its input normalisation, and the model file.

Model file (``torch.save`` dict, loads with ``weights_only=True``)::

    {"format": "napari-domaingen/dgm", "version": 1, "config": ViTConfig fields, "mean": [3], "std": [3],
     "state_dict": encoder weights (timm/MAE key layout), "card": {free-form facts: data, steps, losses},
     "training": {step, steps, settings, optimizer, scheduler, history} (checkpoints of unfinished runs)}

A bare encoder state dict (e.g. trained with the authors' code) loads too, with the Camelyon17 normalisation.

The shipped default (``"default"``) is ``weights/dgm-small-histology.pt`` inside the package: the ``small``
preset trained by us on images generated from scikit-image's IHC image (see docs/models/dgm-small-histology.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..models.checkpoints import KINDS, CheckpointLoadError, atomic_save, read_kind, tagged
from ..models.dgm import DGMEncoder, ViTConfig, config_from_state_dict, load_encoder_state_dict

__all__ = [
    "CAMELYON_MEAN",
    "CAMELYON_STD",
    "DEFAULT_MODEL",
    "MODEL_FORMAT",
    "swap_payload",
    "SwapModel",
    "default_model_path",
    "load_swap_model",
    "read_swap_file",
    "save_swap_model",
]

MODEL_FORMAT = KINDS["swap"][0]
#: Per-channel RGB mean and std (images in [0, 1]) of Camelyon17, the DGM-DR paper's normalisation.
CAMELYON_MEAN = (0.7441, 0.5895, 0.7214)
CAMELYON_STD = (0.1301, 0.1489, 0.1107)
DEFAULT_MODEL = "default"
_DEFAULT_FILE = "dgm-small-histology.pt"


def default_model_path() -> Path:
    """The shipped model file inside the installed package."""
    return Path(str(resources.files("napari_domaingen") / "weights" / _DEFAULT_FILE))


@dataclass
class SwapModel:
    """An encoder in eval mode on ``device`` with the normalisation it was trained with.

    ``name``: file name (for messages); ``card``: facts stored with the model (training data, steps, metrics).
    """

    encoder: DGMEncoder
    mean: tuple[float, float, float] = CAMELYON_MEAN
    std: tuple[float, float, float] = CAMELYON_STD
    name: str = "model"
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> ViTConfig:
        return self.encoder.config

    @property
    def device(self) -> torch.device:
        return self.encoder.cls_token.device

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] → the encoder's input scale."""
        mean = torch.tensor(self.mean, device=rgb.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=rgb.device).view(1, -1, 1, 1)
        return (rgb - mean) / std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`normalise`, clipped to [0, 1]."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0.0, 1.0)

    def describe(self) -> str:
        c = self.config
        return (
            f"{self.name}: ViT {c.img_size} px tiles, patch {c.patch_size}, {c.embed_dim}-d tokens, "
            f"depth {c.depth}, rank {c.rank}"
        )


def swap_payload(
    encoder: DGMEncoder,
    mean: tuple[float, ...] = CAMELYON_MEAN,
    std: tuple[float, ...] = CAMELYON_STD,
    card: dict[str, Any] | None = None,
    half: bool = False,
) -> dict[str, Any]:
    """The content of a model file (without training state): ``{"format", "version", "config", "mean", "std",
    "state_dict", "card"}``. ``half``: weights as float16 (the shipped file; loads as float32)."""
    state = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in encoder.state_dict().items()
    }
    return tagged(
        "swap", config=encoder.config.as_dict(), mean=list(mean), std=list(std), state_dict=state, card=dict(card or {})
    )


def save_swap_model(
    path: str | os.PathLike[str],
    encoder: DGMEncoder,
    mean: tuple[float, ...] = CAMELYON_MEAN,
    std: tuple[float, ...] = CAMELYON_STD,
    card: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a model file atomically (see :func:`swap_payload`); ``training`` makes it resumable."""
    payload = swap_payload(encoder, mean, std, card, half)
    if training is not None:
        payload["training"] = training
    return atomic_save(payload, path)


def read_swap_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model file's dict, in the :data:`MODEL_FORMAT` layout (bare encoder state dicts are wrapped).

    Raises :class:`~napari_domaingen.models.checkpoints.CheckpointLoadError` for files that are neither.
    """
    stored = read_kind(path, "swap")
    if stored.get("format") == MODEL_FORMAT:
        return stored
    state = stored.get("model", stored.get("state_dict", stored))  # a bare encoder state dict
    config = config_from_state_dict(state)
    return tagged(
        "swap",
        config=config.as_dict(),
        mean=list(CAMELYON_MEAN),
        std=list(CAMELYON_STD),
        state_dict=state,
        card={"source": "bare encoder state dict"},
    )


def load_swap_model(
    path: str | os.PathLike[str] | None = DEFAULT_MODEL,
    device: torch.device | str = "cpu",
    expect: ViTConfig | None = None,
) -> SwapModel:
    """A :class:`SwapModel` from a model file (``"default"``/``None``: the shipped one) in eval mode.

    ``expect``: refuse a file whose encoder config differs (e.g. resuming a run with another model).
    Raises ``FileNotFoundError`` / :class:`~napari_domaingen.models.checkpoints.CheckpointLoadError` / ``ValueError``
    with the file's name.
    """
    if path is None or str(path) == DEFAULT_MODEL:
        path = default_model_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"the shipped anatomy/style model is missing from the installation ({path}); reinstall "
                "napari-domaingen or pass a model file"
            )
    stored = read_swap_file(path)
    try:
        config = ViTConfig(**stored["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointLoadError(f"{path}: unusable encoder configuration {stored.get('config')}: {err}") from err
    if expect is not None and config != expect:
        raise ValueError(f"{Path(path).name}: the model's encoder ({config}) differs from the expected ({expect})")
    encoder = DGMEncoder(config)
    try:
        load_encoder_state_dict(
            encoder, {k: v.float() if v.is_floating_point() else v for k, v in stored["state_dict"].items()}
        )
    except ValueError as err:
        raise CheckpointLoadError(f"{path}: {err}") from err
    encoder = encoder.to(device).eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return SwapModel(
        encoder=encoder,
        mean=tuple(stored["mean"]),
        std=tuple(stored["std"]),  # type: ignore[arg-type]
        name=Path(path).name,
        card=dict(stored.get("card", {})),
    )
