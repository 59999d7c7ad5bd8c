"""The inference form of the UNets: folded batch norms, slice-copy reflect padding, same outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_domaingen.models.anatomix import AnatomixUNet
from napari_domaingen.models.inference_form import ReflectConv3d, inference_form, reflect_pad
from napari_domaingen.models.segunet import SegUNet


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reflect_pad_is_aten_reflect_padding_bit_for_bit(width, layout, dtype):
    x = torch.randn(2, 5, 6, 7, 8).to(dtype).contiguous(memory_format=layout)
    padded = reflect_pad(x, width)
    assert torch.equal(padded, F.pad(x, (width,) * 6, mode="reflect"))
    assert padded.is_contiguous(memory_format=layout)


def _with_statistics(model: nn.Module) -> nn.Module:
    """``model`` with random batch-norm statistics and affine parameters (a trained network's are not 0 and 1)."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(module.num_features, generator=generator))
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator))
    return model.eval()


def test_segmentation_unet_keeps_its_outputs_without_batch_norms():
    net = _with_statistics(SegUNet(3, 4, base=4, levels=2))
    x = torch.rand(1, 3, 16, 24, 16)
    form = inference_form(net)
    with torch.no_grad():
        assert torch.allclose(form(x), net(x), atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in form.modules())
    assert any(isinstance(m, ReflectConv3d) for m in form.modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in net.modules())  # the original is untouched
    assert not any(p.requires_grad for p in form.parameters())


def test_feature_extractor_keeps_its_layers_and_intermediates():
    net = _with_statistics(AnatomixUNet(ngf=4, num_downs=2, out_channels=5))
    form = inference_form(net)
    assert len(form.model) == len(net.model)
    x = torch.rand(1, 1, 20, 17, 16)
    with torch.no_grad():
        for layer in ("final", "penultimate"):
            assert torch.allclose(form.features(x, layer=layer), net.features(x, layer=layer), atol=1e-5)


def test_instance_norm_networks_are_left_unfolded():
    net = AnatomixUNet(ngf=4, num_downs=2, norm="instance").eval()
    form = inference_form(net)
    x = torch.rand(1, 1, 16, 16, 16)
    assert any(isinstance(m, nn.InstanceNorm3d) for m in form.modules())
    with torch.no_grad():
        assert torch.allclose(form(x), net(x), atol=1e-5)


def test_the_form_is_made_once_per_model_state():
    net = _with_statistics(SegUNet(1, 2, base=4, levels=2))
    form = inference_form(net)
    assert inference_form(net) is form
    other = _with_statistics(SegUNet(1, 2, base=4, levels=2))
    with torch.no_grad():
        other.net.model[0].weight.mul_(2.0)
    net.load_state_dict(other.state_dict())  # new weights, in place
    renewed = inference_form(net)
    assert renewed is not form
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(renewed(x), other(x), atol=1e-5)
