"""Where the segmentation network runs (core.inference_window): the training crop, or the whole volume when it fits
the memory budget (else large windows); the estimate shown before a run."""

from __future__ import annotations

import pytest
import torch

from napari_domaingen.core.features import sliding_window_count
from napari_domaingen.core.inference_window import (
    LARGE_OVERLAP,
    WindowPlan,
    estimate_seconds,
    forward_bytes,
    plan_window,
)
from napari_domaingen.models.segunet import SegUNet

UNET = {"in_channels": 1, "num_classes": 3, "base": 8, "levels": 4}
CPU = torch.device("cpu")


def test_the_whole_volume_when_it_fits():
    """A 155 × 240 × 240 brain: one pass over the volume padded to a multiple of 2**levels = 16."""
    plan = plan_window((155, 240, 240), UNET, 1, 3, (64, 64, 64), 0.5, "whole", CPU, budget=10**12)
    assert plan == WindowPlan((160, 240, 240), 0.0, 1, True, forward_bytes(160 * 240 * 240, 8, 1, 3))
    assert plan.describe() == "whole volume"
    # (8·base + 2·C_in + 3·K) float32 values per voxel
    assert forward_bytes(1000, 8, 17, 3) == (64 + 34 + 9) * 1000 * 4


def test_large_windows_within_the_budget():
    """A budget of a quarter of the whole pass: cubic windows, multiples of 16, overlapping by 1/8, each within the
    budget, fewer than a tenth of the training crop's windows."""
    whole = forward_bytes(160 * 240 * 240, 8, 1, 3)
    plan = plan_window((155, 240, 240), UNET, 1, 3, (64, 64, 64), 0.5, "whole", CPU, budget=whole // 4)
    assert not plan.whole and plan.overlap == LARGE_OVERLAP
    assert len(set(plan.roi)) == 1 and plan.roi[0] % 16 == 0 and plan.roi[0] > 64
    assert plan.peak_bytes <= whole // 4
    assert plan.windows == sliding_window_count((155, 240, 240), plan.roi, LARGE_OVERLAP)
    crop = plan_window((155, 240, 240), UNET, 1, 3, (64, 64, 64), 0.5, "crop", CPU)
    assert plan.windows * 10 < crop.windows
    assert plan.describe() == f"{plan.windows} windows of {plan.roi[0]}×{plan.roi[0]}×{plan.roi[0]}"


def test_the_training_crop_on_request():
    plan = plan_window((155, 240, 240), UNET, 1, 3, (64, 64, 64), 0.5, "crop", CPU)
    assert plan.roi == (64, 64, 64) and plan.overlap == 0.5 and not plan.whole
    assert plan.windows == sliding_window_count((155, 240, 240), (64, 64, 64), 0.5) == 196
    with pytest.raises(ValueError, match="'crop' or 'whole'"):
        plan_window((8, 8, 8), UNET, 1, 3, (64, 64, 64), 0.5, "auto", CPU)  # type: ignore[arg-type]


def test_a_tiny_budget_still_gives_a_window():
    """Windows never shrink below two levels' worth (32 voxels here), whatever the budget."""
    plan = plan_window((155, 240, 240), UNET, 1, 3, (64, 64, 64), 0.5, "whole", CPU, budget=1)
    assert plan.roi == (32, 32, 32) and not plan.whole


def test_the_estimate_scales_a_measured_pass():
    """One measured pass of a 16³ window, scaled by the voxels of the plan: positive, and a plan with twice the
    windows is estimated about twice as long."""
    torch.manual_seed(0)
    model = SegUNet(in_channels=1, num_classes=3, base=4, levels=2).eval()
    one = WindowPlan((16, 16, 16), 0.0, 1, True, 0)
    many = WindowPlan((16, 16, 16), 0.5, 200, False, 0)
    seconds = estimate_seconds(model, one, 1, "fp32", side=16)
    assert 0.0 < seconds < 5.0
    assert estimate_seconds(model, many, 1, "fp32", side=16) > 50 * seconds
