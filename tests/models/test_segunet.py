"""The MaskGen segmentation UNet: the paper's size, presets, crop checks."""

import pytest
import torch

from napari_domaingen.models.segunet import PRESETS, SegUNet, count_parameters


def test_paper_preset_has_the_papers_size():
    # 5 levels of base 20 (20…320, bottleneck 640): ~36.9M parameters for 17 input channels
    model = SegUNet.from_preset("paper", in_channels=17, num_classes=3)
    assert model.config == {"in_channels": 17, "num_classes": 3, "base": 20, "levels": 5}
    assert count_parameters(model) == pytest.approx(36.9e6, rel=0.005)
    assert model.divisor == 32 and model.min_size == 64
    widths = [m.out_channels for m in model.net.model if isinstance(m, torch.nn.Conv3d)]
    assert max(widths) == 640 and widths[0] == 20


def test_erm_and_maskgen_differ_only_in_the_first_conv():
    erm = SegUNet.from_preset("paper", 1, 3)
    maskgen = SegUNet.from_preset("paper", 17, 3)
    assert count_parameters(maskgen) - count_parameters(erm) == 16 * 20 * 27


def test_cpu_preset_forward_shapes_and_is_smaller():
    model = SegUNet.from_preset("cpu", in_channels=17, num_classes=4).eval()
    assert count_parameters(model) < count_parameters(SegUNet.from_preset("paper", 17, 4)) / 20
    with torch.no_grad():
        out = model(torch.rand(1, 17, 32, 48, 64))
    assert out.shape == (1, 4, 32, 48, 64)
    assert "CPU" in PRESETS["cpu"].description


def test_crop_checks_name_valid_sizes():
    model = SegUNet(1, 2, base=4, levels=2)
    model.check_crop(32)
    with pytest.raises(ValueError, match="multiple of 4 and at least 8"):
        model.check_crop((30, 32, 32))
    with pytest.raises(ValueError, match="unknown UNet preset"):
        SegUNet.from_preset("huge", 1, 2)
    with pytest.raises(ValueError, match="at least 2"):
        SegUNet(1, 1)
