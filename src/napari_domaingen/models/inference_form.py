"""The inference form of a trained UNet: the same function in fewer, faster passes.

:func:`inference_form` returns a frozen copy of an :class:`~napari_domaingen.models.anatomix.AnatomixUNet` (or a
:class:`~napari_domaingen.models.segunet.SegUNet`, which wraps one) in which

* every batch norm is folded into the convolution before it (PyTorch's ``fuse_conv_bn_eval``: eval-mode batch norm
  is a per-channel affine map, so ``bn(conv(x)) = conv'(x)`` with rescaled weights and a bias);
* every reflect-padded convolution pads by slice copies (:func:`reflect_pad`) instead of ATen's
  ``reflection_pad3d``, whose channels-last kernel is 3–7 × slower on CPU (same values, bit for bit);
* ReLUs work in place.

Module indices are unchanged (a folded batch norm becomes ``nn.Identity``), so
:meth:`~napari_domaingen.models.anatomix.AnatomixUNet.forward_intermediates` and layer names still apply. Outputs
equal the original's up to float rounding (max |Δ| about 1e-5 in fp32). Together about 12 % faster per 64³ window
in bf16 on CPU (``benchmarks/bench_segment.py``). Only for inference: the copy has no batch-norm statistics to train.
Segmentation uses it; the frozen feature extractor does not (in bf16 its rounding moved a MaskGen model's labels
by Dice 0.03, docs/benchmarks.md).

Example:
    >>> import torch
    >>> from napari_domaingen.models.segunet import SegUNet
    >>> net = SegUNet(1, 3, base=4, levels=2).eval()
    >>> x = torch.rand(1, 1, 16, 16, 16)
    >>> fast = inference_form(net)
    >>> bool(torch.allclose(fast(x), net(x), atol=1e-5))
    True
"""

from __future__ import annotations

import copy
import threading
import weakref

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["ReflectConv3d", "inference_form", "reflect_pad"]


def reflect_pad(x: Tensor, width: int = 1) -> Tensor:
    """``F.pad(x, (width,) * 6, mode="reflect")`` of ``(B, C, Z, Y, X)`` by slice copies into a buffer of ``x``'s
    memory layout (each axis needs more than ``width`` voxels)."""
    w = width
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d)
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    b, c, z, y, xx = x.shape
    out = torch.empty((b, c, z + 2 * w, y + 2 * w, xx + 2 * w), dtype=x.dtype, device=x.device, memory_format=layout)
    out[:, :, w:-w, w:-w, w:-w] = x
    for axis in (2, 3, 4):
        for i in range(w):
            # voxel w - 1 - i mirrors voxel w + 1 + i; the far side likewise, about the last voxel of x
            out.select(axis, w - 1 - i).copy_(out.select(axis, w + 1 + i))
            out.select(axis, out.shape[axis] - w + i).copy_(out.select(axis, out.shape[axis] - w - 2 - i))
    return out


class ReflectConv3d(nn.Module):
    """A ``Conv3d`` with reflect padding (``padding_mode="reflect"``) that pads by :func:`reflect_pad`."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        pads = set(conv.padding) if isinstance(conv.padding, tuple) else {conv.padding}
        if conv.padding_mode != "reflect" or len(pads) != 1 or not isinstance(next(iter(pads)), int):
            raise ValueError(f"expected a reflect-padded Conv3d with one integer padding, got {conv}")
        self.width = int(next(iter(pads)))
        self.conv = nn.Conv3d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups,
            bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        self.conv.load_state_dict(conv.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(reflect_pad(x, self.width) if self.width else x)


def _fold(sequence: nn.Sequential) -> None:
    """Fold the batch norms of ``sequence`` into their convolutions, in place (see the module docstring)."""
    modules = list(sequence)
    for i, module in enumerate(modules):
        if isinstance(module, nn.ReLU):
            module.inplace = True
        if not isinstance(module, nn.Conv3d):
            continue
        following = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(following, nn.BatchNorm3d) and following.track_running_stats:
            module = fuse_conv_bn_eval(module, following)
            sequence[i + 1] = nn.Identity()
        sequence[i] = ReflectConv3d(module) if module.padding_mode == "reflect" else module


def _state(model: nn.Module) -> tuple:
    """What a copy of ``model`` depends on: where its tensors are and how often they were written."""
    return tuple((t.data_ptr(), t._version, t.dtype, str(t.device)) for t in [*model.parameters(), *model.buffers()])


_FORMS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def inference_form(model: nn.Module) -> nn.Module:
    """The inference form of ``model`` (module docstring), in eval mode; made once per model and state (a model
    whose weights change gets a new one). The original is left as it is."""
    state = _state(model)
    with _LOCK:
        known = _FORMS.get(model)
        if known is not None and known[0] == state:
            return known[1]
    form = copy.deepcopy(model).eval()
    for sequence in [m for m in form.modules() if isinstance(m, nn.Sequential)]:
        _fold(sequence)
    for parameter in form.parameters():
        parameter.requires_grad_(False)
    with _LOCK:
        _FORMS[model] = (state, form)
    return form
