"""Where a segmentation network runs: sliding windows of the training crop, or the whole volume.

``window="crop"`` (default) slides the model's training crop with the user's overlap, blended with Gaussian
weights (MONAI): the MaskGen code's inference, and the only one that gives a MaskGen model its inputs as in
training — its feature channels are instance-normalised over each training crop, so over a whole volume they are
normalised differently and the labels change (Dice 0.53–0.74 per class against the crop's on real T1 volumes,
``benchmarks/bench_segment.py``); a whole-volume window is refused for models with features.
``window="whole"`` runs the network once over the whole volume (padded to a multiple of ``2**levels``) when the
estimated working memory fits the budget (half the free memory of the device), else over the largest cubic windows
that fit, overlapping by :data:`LARGE_OVERLAP`: 3–4 × faster for an ERM model, but the deep layers then see
more context than in training, and the labels differ from the crop's (Dice 0.86–0.98 per class on a 300-step
model), so it is an option, not the default.

The memory estimate of one forward pass over ``N`` voxels is ``(8·base + 2·C_in + 3·K) · N · 4`` bytes: the first
level's activations and skips (about ``6·base`` channels alive at once, plus the deeper levels' ``~1.3·base``), the
input and output channels and MONAI's padded copies, all counted in float32 (bf16 autocast keeps some float32
tensors). It was checked against the peak RSS of a 240 × 240 × 160 forward (:mod:`benchmarks.bench_segment`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..models.inference_form import inference_form
from .device import available_memory_bytes

__all__ = ["LARGE_OVERLAP", "Window", "WindowPlan", "estimate_seconds", "forward_bytes", "plan_window"]

Window = Literal["crop", "whole"]
#: overlap of the large windows used when the whole volume does not fit
LARGE_OVERLAP = 0.125


@dataclass(frozen=True)
class WindowPlan:
    """``roi``: the window ``(Z, Y, X)``; ``overlap``; ``windows``: how many; ``whole``: one pass over the whole
    volume; ``peak_bytes``: the estimated working memory of one window."""

    roi: tuple[int, int, int]
    overlap: float
    windows: int
    whole: bool
    peak_bytes: int

    def describe(self) -> str:
        if self.whole:
            return "whole volume"
        return f"{self.windows} windows of {'×'.join(map(str, self.roi))}"


def forward_bytes(voxels: int, base: int, in_channels: int, classes: int) -> int:
    """Estimated working memory (bytes) of one forward pass over ``voxels`` (module docstring)."""
    return int((8 * base + 2 * in_channels + 3 * classes) * voxels * 4)


def _padded(size: int, multiple: int) -> int:
    return max(2 * multiple, -(-size // multiple) * multiple)


def plan_window(
    shape: tuple[int, int, int],
    unet: dict,
    in_channels: int,
    classes: int,
    crop: tuple[int, int, int],
    overlap: float,
    window: Window,
    device: torch.device,
    budget: int | None = None,
) -> WindowPlan:
    """The window to segment a ``(Z, Y, X)`` volume with (module docstring); ``budget``: bytes (default: half the free
    memory of ``device``)."""
    from .features import sliding_window_count

    if window not in ("crop", "whole"):
        raise ValueError(f"window must be 'crop' or 'whole', got {window!r}")
    base, multiple = int(unet["base"]), 2 ** int(unet["levels"])
    if window == "crop":
        roi = tuple(int(c) for c in crop)
        voxels = int(np.prod(roi))
        count = sliding_window_count(shape, roi, overlap)
        return WindowPlan(roi, overlap, count, False, forward_bytes(voxels, base, in_channels, classes))  # type: ignore[arg-type]
    budget = available_memory_bytes(device) // 2 if budget is None else budget
    whole = tuple(_padded(s, multiple) for s in shape)
    peak = forward_bytes(int(np.prod(whole)), base, in_channels, classes)
    if peak <= budget:
        return WindowPlan(whole, 0.0, 1, True, peak)  # type: ignore[arg-type]
    per_voxel = forward_bytes(1, base, in_channels, classes)
    side = max(multiple * 2, int(math.floor((budget / per_voxel) ** (1 / 3) / multiple)) * multiple)
    roi = tuple(min(side, w) for w in whole)
    count = sliding_window_count(shape, roi, LARGE_OVERLAP)
    return WindowPlan(roi, LARGE_OVERLAP, count, False, forward_bytes(int(np.prod(roi)), base, in_channels, classes))  # type: ignore[arg-type]


@torch.no_grad()
def estimate_seconds(model: torch.nn.Module, plan: WindowPlan, channels: int, precision: str, side: int = 64) -> float:
    """Estimated seconds of the network over ``plan``: one measured forward pass of a ``side``³ window (at most the
    plan's window; after one warm-up pass) scaled by the voxels the plan computes (windows × window voxels)."""
    from .device import memory_format

    side = min(side, *plan.roi)
    device = next(model.parameters()).device
    layout = memory_format(device)
    x = torch.zeros(1, channels, side, side, side, device=device).contiguous(memory_format=layout)
    model = inference_form(model).to(memory_format=layout)
    seconds = 0.0
    for _ in range(2):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(x)
        seconds = time.perf_counter() - start
    return seconds * plan.windows * float(np.prod(plan.roi)) / side**3
