"""The MaskGen segmentation 3D UNet, with its width and depth as parameters and named presets.

The network is the same UNet family as anatomix (:class:`~napari_domaingen.models.anatomix.AnatomixUNet`):
``levels`` encoder levels of (conv3³-BN-ReLU)×2 with 2× max pooling, a bottleneck, nearest 2× upsampling with
concatenated skips, (conv3³-BN-ReLU)×2 per decoder level and a final conv3³ to one logit per class. The paper's
network has base width 20 and 5 levels (20, 40, 80, 160, 320; bottleneck 640): 36.85M parameters.

Input ``(B, in_channels, Z, Y, X)``: ``1 + feature channels`` for MaskGen (image + frozen features), ``1`` for
the ERM baseline; every spatial size a multiple of ``2**levels`` and at least ``2**(levels + 1)``.
Output: ``(B, num_classes, Z, Y, X)`` logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .anatomix import AnatomixUNet

__all__ = ["PRESETS", "SegPreset", "SegUNet", "count_parameters"]


@dataclass(frozen=True)
class SegPreset:
    """A named UNet size: ``base`` width of the first level and number of pooling ``levels``."""

    base: int
    levels: int
    description: str


PRESETS: dict[str, SegPreset] = {
    "paper": SegPreset(
        base=20,
        levels=5,
        description="the MaskGen paper's UNet: base 20, 5 levels (20…320, bottleneck 640), 36.9M parameters; "
        "crops must be multiples of 32 (≥ 64). Meant for a GPU.",
    ),
    "cpu": SegPreset(
        base=8,
        levels=4,
        description="CPU-friendly: base 8, 4 levels (8…64, bottleneck 128), 1.5M parameters, about 7× less "
        "compute per voxel than 'paper'; crops must be multiples of 16 (≥ 32). For laptops and quick fine-tuning.",
    ),
}


class SegUNet(nn.Module):
    """MaskGen / ERM segmentation UNet (see the module docstring).

    Args:
        in_channels: 1 + number of feature channels (MaskGen) or 1 (ERM).
        num_classes: output classes including background.
        base: width of the first level; level k has ``base * 2**k`` channels, the bottleneck ``base * 2**levels``.
        levels: number of 2× poolings.
    """

    def __init__(self, in_channels: int, num_classes: int, base: int = 20, levels: int = 5) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background + one class), got {num_classes}")
        self.net = AnatomixUNet(
            in_channels=in_channels,
            out_channels=num_classes,
            ngf=base,
            num_downs=levels,
            norm="batch",
            pooling="max",
            upsample="nearest",
        )
        self._config = {
            "in_channels": int(in_channels),
            "num_classes": int(num_classes),
            "base": int(base),
            "levels": int(levels),
        }

    @classmethod
    def from_preset(cls, preset: str, in_channels: int, num_classes: int) -> SegUNet:
        """A network of the named :data:`PRESETS` size."""
        if preset not in PRESETS:
            raise ValueError(f"unknown UNet preset {preset!r}; known: {', '.join(PRESETS)}")
        size = PRESETS[preset]
        return cls(in_channels, num_classes, base=size.base, levels=size.levels)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor kwargs (a copy), stored in checkpoints."""
        return dict(self._config)

    @property
    def divisor(self) -> int:
        """Every spatial input size must be a multiple of this (``2**levels``)."""
        return self.net.divisor

    @property
    def min_size(self) -> int:
        """Smallest spatial input size (``2**(levels + 1)``)."""
        return self.net.min_size

    def check_crop(self, crop: int | tuple[int, ...]) -> None:
        """``ValueError`` naming the valid sizes if ``crop`` cannot be fed to this network."""
        sizes = (crop,) * 3 if isinstance(crop, int) else tuple(crop)
        bad = [s for s in sizes if s % self.divisor or s < self.min_size]
        if bad:
            raise ValueError(
                f"crop {sizes} does not fit a UNet with {self._config['levels']} levels: every size must be a "
                f"multiple of {self.divisor} and at least {self.min_size} (e.g. {self.min_size}, "
                f"{self.min_size + self.divisor}, {self.min_size + 2 * self.divisor})"
            )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, Z, Y, X)`` → ``(B, num_classes, Z, Y, X)`` logits."""
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
