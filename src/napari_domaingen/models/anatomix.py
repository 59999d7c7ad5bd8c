"""The anatomix 3D UNet feature extractor (pure torch), loadable from the authors' checkpoints.

Layer layout (``self.model``, a flat :class:`torch.nn.Sequential`; ``n = num_downs``, ``c = ngf``) — the
indices are those of the original state dicts (``model.<index>.…``):

=====================  ==========================================================================
indices                modules
=====================  ==========================================================================
0, 1, 2                stem: conv3³ in→c, norm, ReLU
3 + 7k … 9 + 7k        encoder level k (k = 0…n-1), width c·2^k: (conv3³, norm, ReLU)×2, 2× pooling
7n + 3 … 7n + 8        bottleneck, width c·2^n: (conv3³, norm, ReLU)×2
7n + 9 + 7j …          decoder level j (j = 0…n-1), width w = c·2^(n-1-j): 2× upsampling, then
                       concat [skip, upsampled] (skip = output of the matching encoder level before
                       pooling), (conv3³, norm, ReLU)×2
14n + 8                last ReLU of the last decoder level: the "penultimate" features (c channels)
14n + 9                final conv3³ c→out, no activation: the "final" features
=====================  ==========================================================================

For the released ``anatomix`` (n = 4) the penultimate module is 64 and the final conv 65; for
``anatomix-dev`` (n = 5) they are 78 and 79. All convs use reflect padding; they carry a bias only with
instance norm (the batch-norm family, including its final conv, has no conv biases).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DomaingenError
from ..typing import FeatureLayer
from .checkpoints import CheckpointLoadError, UnsafeCheckpointError, read_checkpoint
from .weights import REGISTRY, resolve_weights

__all__ = [
    "AnatomixUNet",
    "CheckpointLoadError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "infer_config",
    "load_anatomix",
    "strip_prefixes",
]

_PREFIXES = ("_orig_mod.", "module.")
_MAX_LISTED = 5


class AnatomixUNet(nn.Module):
    """3D UNet of anatomix with the original state-dict key layout (``model.<index>.…``).

    Input (B, in_channels, Z, Y, X) float, intensities min-max scaled to [0, 1]; ``forward`` needs every
    spatial size divisible by ``2**num_downs`` (and ≥ ``2**(num_downs+1)`` so the reflect padding of the
    bottleneck convs is defined); :meth:`features` accepts any size.

    Args:
        in_channels: input channels (1 for anatomix).
        out_channels: channels of the final conv (16 anatomix, 32 anatomix-dev).
        ngf: width of the first level; level k has ``ngf * 2**k`` channels.
        num_downs: number of pooling steps (4 anatomix, 5 anatomix-dev).
        norm: ``"batch"`` (BatchNorm3d, affine, running stats) or ``"instance"`` (InstanceNorm3d without
            affine parameters or running stats).
        pooling: ``"max"`` or ``"avg"`` (2× in every axis; case-insensitive, ``"Avg"`` accepted).
        upsample: ``"nearest"`` or ``"trilinear"`` (2×, ``align_corners=False``).
        norm_eps: epsilon of the normalisation layers (1e-5 anatomix, 1e-2 anatomix-dev).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 16,
        ngf: int = 16,
        num_downs: int = 4,
        norm: Literal["batch", "instance"] = "batch",
        pooling: Literal["max", "avg"] = "max",
        upsample: Literal["nearest", "trilinear"] = "nearest",
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        norm_l = str(norm).lower()
        pooling_l = str(pooling).lower()
        upsample_l = str(upsample).lower()
        if norm_l not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
        if pooling_l not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if upsample_l not in ("nearest", "trilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'trilinear', got {upsample!r}")
        if min(in_channels, out_channels, ngf) < 1 or num_downs < 1:
            raise ValueError("in_channels, out_channels, ngf and num_downs must be positive")
        self._config: dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "ngf": int(ngf),
            "num_downs": int(num_downs),
            "norm": norm_l,
            "pooling": pooling_l,
            "upsample": upsample_l,
            "norm_eps": float(norm_eps),
        }
        use_bias = norm_l == "instance"

        def conv(cin: int, cout: int) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, 3, padding=1, padding_mode="reflect", bias=use_bias)

        def normalisation(ch: int) -> nn.Module:
            if norm_l == "batch":
                return nn.BatchNorm3d(ch, eps=norm_eps)
            return nn.InstanceNorm3d(ch, eps=norm_eps, affine=False, track_running_stats=False)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                conv(cin, cout),
                normalisation(cout),
                nn.ReLU(),
                conv(cout, cout),
                normalisation(cout),
                nn.ReLU(),
            ]

        layers: list[nn.Module] = [conv(in_channels, ngf), normalisation(ngf), nn.ReLU()]
        pool_idx: list[int] = []
        up_idx: list[int] = []
        widths = [ngf * 2**k for k in range(num_downs)]
        ch = ngf
        for width in widths:
            layers += block(ch, width)
            pool_idx.append(len(layers))
            layers.append(nn.MaxPool3d(2) if pooling_l == "max" else nn.AvgPool3d(2))
            ch = width
        layers += block(ch, ngf * 2**num_downs)
        ch = ngf * 2**num_downs
        for width in reversed(widths):
            up_idx.append(len(layers))
            if upsample_l == "nearest":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                layers.append(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False))
            layers += block(width + ch, width)  # input = concat [skip (width), upsampled (ch)]
            ch = width
        layers.append(conv(ch, out_channels))
        self.model = nn.Sequential(*layers)
        self._pool_indices = frozenset(pool_idx)
        self._up_indices = frozenset(up_idx)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> dict[str, Any]:
        """Constructor kwargs (a copy), e.g. for storing next to the state dict in a checkpoint."""
        return dict(self._config)

    @property
    def num_downs(self) -> int:
        return int(self._config["num_downs"])

    @property
    def divisor(self) -> int:
        """``2**num_downs``: every spatial size fed to :meth:`forward` must be a multiple of it."""
        return 2**self.num_downs

    @property
    def min_size(self) -> int:
        """Smallest spatial size :meth:`forward` accepts (bottleneck ≥ 2 voxels for reflect padding)."""
        return 2 * self.divisor

    @property
    def final_index(self) -> int:
        """Module index of the final conv (``14 * num_downs + 9``; 65 for anatomix)."""
        return len(self.model) - 1

    @property
    def penultimate_index(self) -> int:
        """Module index of the last decoder ReLU (``14 * num_downs + 8``; 64 for anatomix)."""
        return len(self.model) - 2

    def feature_channels(self, layer: FeatureLayer = "final") -> int:
        """Channels of :meth:`features` for ``layer`` (``out_channels`` or ``ngf``)."""
        return int(self._config["out_channels"] if layer == "final" else self._config["ngf"])

    # ------------------------------------------------------------------ forward
    def _layer_index(self, layer: FeatureLayer | int) -> int:
        if layer == "final":
            return self.final_index
        if layer == "penultimate":
            return self.penultimate_index
        if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(self.model):
            return layer
        raise ValueError(f"layer must be 'final', 'penultimate' or a module index 0…{self.final_index}, got {layer!r}")

    def forward_intermediates(self, x: Tensor, indices: Iterable[int]) -> dict[int, Tensor]:
        """Outputs of the modules ``indices`` for x (B, C, Z, Y, X), sizes divisible by :attr:`divisor`.

        Stops after the largest requested index. Intermediates of an upsampling index are the concatenated
        [skip, upsampled] tensor. Returns ``{index: tensor}``.
        """
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            return {}
        if wanted[0] < 0 or wanted[-1] >= len(self.model):
            raise ValueError(f"module indices must be in 0…{self.final_index}, got {wanted}")
        self._check_shape(x)
        last = wanted[-1]
        out: dict[int, Tensor] = {}
        skips: list[Tensor] = []
        for i, module in enumerate(self.model):
            if i in self._pool_indices:
                skips.append(x)
            x = module(x)
            if i in self._up_indices:
                x = torch.cat([skips.pop(), x], dim=1)
            if i in wanted:
                out[i] = x
            if i == last:
                break
        return out

    def forward(self, x: Tensor, layer: FeatureLayer | int = "final") -> Tensor:
        """Output of ``layer`` for x (B, in_channels, Z, Y, X) with sizes divisible by :attr:`divisor`.

        Returns (B, C, Z, Y, X); C = out_channels for ``"final"``, ngf for ``"penultimate"``.
        """
        idx = self._layer_index(layer)
        return self.forward_intermediates(x, [idx])[idx]

    def _check_shape(self, x: Tensor) -> None:
        if x.ndim != 5:
            raise ValueError(f"expected a 5D tensor (B, C, Z, Y, X), got shape {tuple(x.shape)}")
        if x.shape[1] != self._config["in_channels"]:
            raise ValueError(f"expected {self._config['in_channels']} input channel(s), got {x.shape[1]}")
        bad = [s for s in x.shape[2:] if s % self.divisor or s < self.min_size]
        if bad:
            raise ValueError(
                f"spatial sizes {tuple(x.shape[2:])} must be multiples of {self.divisor} and at least "
                f"{self.min_size}; use AnatomixUNet.features() for arbitrary sizes"
            )

    def padded_shape(self, spatial: Iterable[int]) -> tuple[int, ...]:
        """Per-axis size :meth:`features` pads to: next multiple of :attr:`divisor`, ≥ :attr:`min_size`."""
        d = self.divisor
        return tuple(max(-(-int(s) // d) * d, self.min_size) for s in spatial)

    def features(self, x: Tensor, layer: FeatureLayer = "final") -> Tensor:
        """Features of x (B, in_channels, Z, Y, X) of ANY spatial size -> (B, C, Z, Y, X), same Z, Y, X.

        Each axis is padded at its far end, by edge replication, to :meth:`padded_shape`, run through the
        network and cropped back. Far-end padding keeps the pooling grid anchored at voxel 0 (so a volume's
        features do not depend on how much is padded, away from the far border); replicate padding gave
        features closer to those of the un-cropped volume than reflect padding in our tests, and, unlike
        reflect, works for any size. Sizes already valid are not padded (identical to the original).
        ``x`` is moved to the model's device and dtype; gradients flow only if ``x`` requires them.
        ``layer``: ``"final"`` (final conv, ``out_channels``) or ``"penultimate"`` (ReLU before it, ``ngf``).
        """
        if x.ndim != 5:
            raise ValueError(f"expected a 5D tensor (B, C, Z, Y, X), got shape {tuple(x.shape)}")
        ref = next(self.parameters())
        x = x.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else torch.float32)
        spatial = tuple(int(s) for s in x.shape[2:])
        target = self.padded_shape(spatial)
        pad: list[int] = []
        for s, t in zip(reversed(spatial), reversed(target)):  # F.pad order: last axis first
            pad += [0, t - s]
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        y = self.forward(x, layer=layer)
        return y[:, :, : spatial[0], : spatial[1], : spatial[2]]


# ---------------------------------------------------------------------------- checkpoints


class CheckpointMismatchError(DomaingenError, ValueError):
    """State dict and model architecture disagree (missing/unexpected keys, shape mismatches)."""

    def __init__(
        self,
        source: str,
        config: Mapping[str, Any],
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.source = source
        self.config = dict(config)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched

        def listing(items: list[str]) -> str:
            more = f", … (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            return ", ".join(items[:_MAX_LISTED]) + more

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
        if mismatched:
            shapes = [f"{k} (checkpoint {list(a)} vs model {list(b)})" for k, a, b in mismatched]
            parts.append(f"{len(mismatched)} shape mismatch(es): {listing(shapes)}")
        super().__init__(
            f"{source}: the checkpoint does not match the anatomix UNet {self.config}: " + "; ".join(parts)
        )


def strip_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove wrapper prefixes ``_orig_mod.`` (torch.compile) and ``module.`` (DataParallel) from all keys."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        out[key] = value
    return out


def _conv_weights(state_dict: Mapping[str, Tensor]) -> list[tuple[int, Tensor]]:
    convs = []
    for key, value in state_dict.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "model" and parts[1].isdigit() and parts[2] == "weight":
            if isinstance(value, Tensor) and value.ndim == 5:
                convs.append((int(parts[1]), value))
    return sorted(convs, key=lambda item: item[0])


def infer_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """AnatomixUNet kwargs from a state dict's keys and shapes.

    ngf = stem conv out channels, in/out channels from the first/last conv, num_downs from the number of
    convs (4·num_downs + 4). ``running_mean`` keys → anatomix family (batch norm eps 1e-5, max pooling,
    nearest upsampling); no norm parameters → anatomix-dev family (instance norm eps 1e-2, average pooling,
    trilinear upsampling). Raises ``ValueError`` if the dict is no anatomix UNet.
    """
    sd = strip_prefixes(state_dict)
    convs = _conv_weights(sd)
    if len(convs) < 8 or (len(convs) - 4) % 4:
        raise ValueError(
            f"not an anatomix UNet state dict: found {len(convs)} 3D conv weights 'model.<i>.weight' "
            "(expected 4·num_downs + 4)"
        )
    num_downs = (len(convs) - 4) // 4
    first, last = convs[0][1], convs[-1][1]
    if any(key.endswith(".running_mean") for key in sd):
        family: dict[str, Any] = {"norm": "batch", "pooling": "max", "upsample": "nearest", "norm_eps": 1e-5}
    elif any(key.startswith("model.") and v.ndim == 1 and not key.endswith(".bias") for key, v in sd.items()):
        raise ValueError("not an anatomix UNet state dict: normalisation with affine parameters but no running stats")
    else:
        family = {"norm": "instance", "pooling": "avg", "upsample": "trilinear", "norm_eps": 1e-2}
    return {
        "in_channels": int(first.shape[1]),
        "out_channels": int(last.shape[0]),
        "ngf": int(first.shape[0]),
        "num_downs": num_downs,
        **family,
    }


def _extract_state_dict(obj: Any, source: str) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(state dict, stored config or None) from a loaded checkpoint object."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
            return dict(obj), None
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                config = obj.get("config")
                return dict(inner), dict(config) if isinstance(config, Mapping) else None
    raise CheckpointLoadError(
        f"{source}: does not contain a state dict (expected a dict of tensors, or a dict with a "
        f"'state_dict' entry); got {type(obj).__name__}"
    )


def _compare(model: nn.Module, sd: Mapping[str, Tensor], source: str) -> None:
    expected = model.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        (k, tuple(sd[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, getattr(model, "config", {}), missing, unexpected, mismatched)


def load_anatomix(
    weights: str | os.PathLike[str] | Mapping[str, Tensor],
    variant: str | None = None,
    device: str | torch.device | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
) -> AnatomixUNet:
    """A frozen AnatomixUNet (eval mode, ``requires_grad=False``, float32, on ``device``; default CPU).

    ``weights``: a local ``.pth`` path, a state dict, or a registry name (``"anatomix"``, ``"anatomix-dev"``)
    resolved by :func:`~napari_domaingen.models.weights.resolve_weights` (``cache_dir``/``allow_download``
    are passed on). Files are read with ``torch.load(..., weights_only=True)``; a checkpoint may be a bare
    state dict or ``{"state_dict": ..., "config": ...}``. ``_orig_mod.``/``module.`` key prefixes are
    stripped. Architecture: the registry config of ``variant`` (or of the registry name given as
    ``weights``), else a stored ``config``, else :func:`infer_config`. Loading is strict: any key/shape
    disagreement raises :class:`CheckpointMismatchError`; unreadable files raise
    :class:`CheckpointLoadError` (:class:`UnsafeCheckpointError` for pickles that would run code).
    """
    if variant is not None and variant not in REGISTRY:
        raise ValueError(f"unknown anatomix variant {variant!r}; known: {', '.join(REGISTRY)}")
    stored_config: dict[str, Any] | None = None
    if isinstance(weights, Mapping):
        source = "<state dict>"
        state_dict, stored_config = _extract_state_dict(weights, source)
    else:
        name = os.fspath(weights)
        if name in REGISTRY and not Path(name).is_file():
            variant = variant or name
        path = resolve_weights(weights, cache_dir=cache_dir, allow_download=allow_download)
        source = str(path)
        state_dict, stored_config = _extract_state_dict(read_checkpoint(path), source)
    state_dict = strip_prefixes(state_dict)

    if variant is not None:
        config = dict(REGISTRY[variant].config)
    elif stored_config is not None:
        config = stored_config
    else:
        try:
            config = infer_config(state_dict)
        except ValueError as err:
            raise CheckpointLoadError(f"{source}: {err}") from err

    try:
        with torch.device("meta"):
            model = AnatomixUNet(**config)
    except TypeError as err:
        raise CheckpointLoadError(f"{source}: invalid model config {config}: {err}") from err
    _compare(model, state_dict, source)
    model = model.to_empty(device=torch.device(device) if device is not None else torch.device("cpu"))
    model.load_state_dict(state_dict, strict=True)  # copies, casting float16/float64 values to float32
    model.eval()
    model.requires_grad_(False)
    return model
