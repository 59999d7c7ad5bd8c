"""The DGM-DR encoder (an MAE-style ViT) and its parameter-free patch-wise synthesizer.

Encoder: patch embedding (a ``patch_size``-stride convolution), a CLS token, a fixed 2D sin-cos position
embedding, ``depth`` pre-norm transformer blocks (multi-head attention with qkv bias, GELU MLP), a final
LayerNorm (eps 1e-6). Its state dict uses the timm/MAE key layout (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``), so an
encoder trained with the authors' code loads with :func:`load_encoder_state_dict`.

Tokens ``(B, 1 + P, E)`` float32; patch tokens in row-major order of the ``(H / p, W / p)`` patch grid. Each patch
token splits into an *anatomy* half (first ``E / 2`` values) and a *characteristics* (style) half (last ``E / 2``).
:func:`synthesize` turns any (anatomy, style) pair back into pixels.

The encoder runs on any image whose sides are multiples of ``patch_size``: the sin-cos embedding is computed for
the grid at hand (for the configured ``img_size`` it is the stored ``pos_embed``). A model is best used at the
size it was trained at (:mod:`napari_domaingen.core.swap` tiles larger images).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PRESETS",
    "DGMEncoder",
    "ViTConfig",
    "bf16_cpu_attention",
    "load_encoder_state_dict",
    "sincos_pos_embed",
    "split_tokens",
    "synthesize",
]


@dataclass(frozen=True)
class ViTConfig:
    """Encoder size. ``img_size`` (px, square) is the training tile; ``embed_dim / 2`` must be a multiple of
    ``in_channels * patch_size`` (the synthesizer's rank ``L = embed_dim / 2 / (in_channels * patch_size)``)."""

    img_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 16
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        if self.embed_dim % 2 or (self.embed_dim // 2) % (self.in_channels * self.patch_size):
            raise ValueError(
                f"embed_dim / 2 = {self.embed_dim / 2:g} must be a multiple of in_channels × patch_size = "
                f"{self.in_channels * self.patch_size} (the synthesizer splits each half into per-channel "
                "patch × rank factors)"
            )
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of 4 (2D sin-cos position embedding)")

    @property
    def rank(self) -> int:
        """``L``: the rank of each synthesized patch and colour channel."""
        return self.embed_dim // 2 // (self.in_channels * self.patch_size)

    @property
    def grid(self) -> int:
        """Patches per side of an ``img_size`` image."""
        return self.img_size // self.patch_size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, ViTConfig] = {
    # DGM-DR paper: ViT-B/16 at 224 px (L = 8).
    "paper": ViTConfig(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=16),
    # CPU-friendly: 64 px tiles, 8 px patches, 192-d tokens (L = 4), 6 blocks: 2.7M parameters.
    "small": ViTConfig(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3),
}


def sincos_pos_embed(embed_dim: int, grid_h: int, grid_w: int, cls_token: bool = True) -> Tensor:
    """The MAE fixed 2D sin-cos position embedding, ``(grid_h * grid_w [+ 1], embed_dim)`` float32.

    The first ``embed_dim / 2`` values encode the column (x) index, the last half the row (y) index; each half is
    ``[sin(pos * ω), cos(pos * ω)]`` with ``ω_k = 10000^(-k / (embed_dim / 4))``. A zero row is prepended for the
    CLS token when ``cls_token``.
    """
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    cols, rows = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    emb = np.concatenate([encode(cols), encode(rows)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, embed_dim)), emb], axis=0)
    return torch.from_numpy(emb.astype(np.float32))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, e = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, e // self.num_heads).permute(2, 0, 3, 1, 4)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and not torch.is_grad_enabled():
            x = bf16_cpu_attention(q, k, v)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, e))


def bf16_cpu_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention of bf16 ``(B, H, N, D)`` queries, keys and values, the softmax in float32: what
    ``scaled_dot_product_attention`` computes, for inference on a CPU, where its bf16 kernel is slow for the short
    sequences of small tiles (65 tokens of 64 values). The ``small`` encoder: 0.80 → 0.67 ms per 64 px tile; its
    tokens differ from fp32 by the same max (0.020) and mean (0.0027) |Δ| as with the bf16 kernel (the bf16 linear
    layers dominate), and from the bf16 kernel's by at most 0.008."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return torch.matmul(scores.float().softmax(-1).to(v.dtype), v)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DGMEncoder(nn.Module):
    """The DGM-DR ViT encoder: ``(B, C, H, W)`` normalised images → tokens ``(B, 1 + P, E)`` (CLS first)."""

    def __init__(self, config: ViTConfig = PRESETS["paper"]) -> None:
        super().__init__()
        self.config = config
        e = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_channels, e)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(sincos_pos_embed(e, config.grid, config.grid)[None], requires_grad=False)
        self.blocks = nn.ModuleList(Block(e, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(e, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: xavier-uniform linears and patch projection, N(0, 0.02) CLS token."""
        nn.init.xavier_uniform_(self.patch_embed.proj.weight.view(self.config.embed_dim, -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """``(1, 1 + grid_h * grid_w, E)``: the stored ``pos_embed`` for the configured grid, else computed."""
        if grid_h == grid_w == self.config.grid:
            return self.pos_embed
        return sincos_pos_embed(self.config.embed_dim, grid_h, grid_w)[None].to(self.pos_embed)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.config.patch_size
        if c != self.config.in_channels:
            raise ValueError(f"the encoder takes {self.config.in_channels}-channel images, got {c} channels")
        if h % p or w % p:
            raise ValueError(f"image sides must be multiples of the patch size {p}, got {h} × {w}")
        pos = self.position_embedding(h // p, w // p)
        x = self.patch_embed(x) + pos[:, 1:]
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def split_tokens(tokens: Tensor, has_cls_token: bool = True) -> tuple[Tensor, Tensor]:
    """``(B, [1 +] P, E)`` tokens → anatomy ``(B, P, E/2)`` and style ``(B, P, E/2)`` halves (CLS dropped)."""
    if has_cls_token:
        tokens = tokens[:, 1:]
    half = tokens.shape[-1] // 2
    return tokens[..., :half], tokens[..., half:]


def synthesize(
    anatomy: Tensor,
    style: Tensor,
    in_channels: int,
    patch_size: int,
    grid: tuple[int, int] | None = None,
) -> Tensor:
    """Pixels ``(B, C, gh * p, gw * p)`` from anatomy and style halves ``(B, P, E/2)`` (or style ``(B, 1, E/2)``,
    broadcast to every patch).

    Per patch and colour channel ``k``: ``A_k = anatomy.reshape(C, p, L)[k]``, ``S_k = style.reshape(C, L, p)[k]``,
    block ``k = A_k @ S_k`` (``p × p``). The patch's ``C · p · p`` values (channel-major) are then read as a
    ``(p, p, C)`` patch, and patches are tiled row-major over the ``grid`` (default: square) — the original's
    layout. ``L = E / 2 / (C · p)``.
    """
    b, n, half = anatomy.shape
    if style.shape[-1] != half or style.shape[0] != b or style.shape[1] not in (1, n):
        raise ValueError(f"style {tuple(style.shape)} does not fit anatomy {tuple(anatomy.shape)}")
    if half % (in_channels * patch_size):
        raise ValueError(
            f"token half {half} is not a multiple of in_channels × patch_size = {in_channels * patch_size}"
        )
    rank = half // (in_channels * patch_size)
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patches do not form a square grid; pass grid=(rows, cols)")
        grid = (side, side)
    gh, gw = grid
    if gh * gw != n:
        raise ValueError(f"grid {gh} × {gw} does not hold {n} patches")
    a = anatomy.reshape(b, n, in_channels, patch_size, rank)
    s = style.reshape(b, style.shape[1], in_channels, rank, patch_size)
    blocks = torch.matmul(a, s)  # (B, P, C, p, p)
    patches = blocks.reshape(b, gh, gw, patch_size, patch_size, in_channels)
    return torch.einsum("nhwpqc->nchpwq", patches).reshape(b, in_channels, gh * patch_size, gw * patch_size)


# ---- loading encoders trained elsewhere (MAE / timm / the DGM-DR code)

_IGNORED_PREFIXES = ("decoder", "mask_token", "head", "fc_norm")
_PREFIXES_TO_STRIP = ("module.", "encoder.", "model.", "backbone.")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES_TO_STRIP:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def config_from_state_dict(
    state: dict[str, Tensor], num_heads: int | None = None, mlp_ratio: float | None = None
) -> ViTConfig:
    """The :class:`ViTConfig` a timm/MAE encoder state dict was built with (heads: ``E / 64`` unless given)."""
    state = {_strip(k): v for k, v in state.items()}
    if "patch_embed.proj.weight" not in state:
        raise ValueError("not a ViT encoder state dict: no 'patch_embed.proj.weight'")
    e, c, p, _ = state["patch_embed.proj.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    n = state["pos_embed"].shape[1] - 1 if "pos_embed" in state else 196
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    return ViTConfig(
        img_size=math.isqrt(n) * p,
        patch_size=p,
        in_channels=c,
        embed_dim=e,
        depth=depth,
        num_heads=num_heads or max(1, e // 64),
        mlp_ratio=mlp_ratio or hidden / e,
    )


def load_encoder_state_dict(model: DGMEncoder, state: dict[str, Tensor]) -> list[str]:
    """Load a timm/MAE/DGM-DR encoder state dict into ``model``; returns the ignored keys.

    ``module.``/``encoder.``/``model.`` prefixes are stripped; MAE decoder keys, ``mask_token`` and classifier
    heads are ignored; ``pos_embed`` is fixed (sin-cos) and regenerated when its grid differs. Raises
    ``ValueError`` naming missing keys or mismatched shapes.
    """
    own = model.state_dict()
    cleaned: dict[str, Tensor] = {}
    ignored: list[str] = []
    for key, value in state.items():
        name = _strip(key)
        if name.startswith(_IGNORED_PREFIXES) or name not in own:
            ignored.append(key)
            continue
        if name == "pos_embed" and value.shape != own[name].shape:
            ignored.append(key)
            continue
        if value.shape != own[name].shape:
            raise ValueError(
                f"encoder weights do not fit this model: {key} has shape {tuple(value.shape)}, "
                f"the model's {name} is {tuple(own[name].shape)} (another ViT size?)"
            )
        cleaned[name] = value
    missing = sorted(set(own) - set(cleaned) - {"pos_embed"})
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ValueError(f"encoder weights lack {len(missing)} keys of the model: {shown}")
    cleaned.setdefault("pos_embed", own["pos_embed"])
    model.load_state_dict(cleaned)
    return ignored
