"""The settings of one anatomy/style swap (DGM-DR), validated when built, and the names of its outputs.

:class:`SwapSettings` is what the ``swap`` command, the batch and the swap dock hand to the swap jobs
(:mod:`napari_domaingen.core.swap_job`): the model, the device, the encoder precision, the rendering options
(seamless tilings, detail carry-over, the plain tiling's overlap, the style's glass and tissue colours), the style
rule and, for a whole slide, the block size. A setting that cannot work fails here, at once, with a message naming
the ``swap`` option it comes from.

Style rules (one rule each, wherever the swap runs):

* ``"mean"`` — the mean style of the style image (over its tissue patches with ``tissue_only``), from its
  encoding with the swap's tilings (:func:`~napari_domaingen.core.swap.mean_style`);
* ``"point"`` — the style of the 8 px patch under ``point`` ``(y, x)`` (px of the style image's full resolution) in
  the image's grid of model tiles (:func:`~napari_domaingen.core.swap.point_style`; equal to
  :func:`~napari_domaingen.core.swap.style_at` on a seamless encoding);
* ``"region"`` — the mean style of the patches whose centre lies in ``mask`` ``(Y, X)`` bool (in-memory swaps).

With ``colours`` the rendered tissue's colours are mapped onto the style image's tissue colours
(:mod:`~napari_domaingen.core.colour_match`) measured where the rule takes its style: the whole image's tissue, the
:data:`~napari_domaingen.core.swap_job.POINT_WINDOW` px square around the point, the region.

Outputs (:data:`OUTPUT_ROLES`): ``"swap"`` (the anatomy image with the style), ``"recon_anatomy"`` and
``"recon_style"`` (each image from its own anatomy and style), ``"reverse"`` (the style image's anatomy with the
anatomy image's mean style). :func:`output_path` names their files beside ``OUT`` (``OUT_recon_anatomy.png``, …),
:func:`output_name` their layers (``<A> anatomy × <S> style``, …): one scheme for the command and the dock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DomaingenError
from ..typing import PathLike, Precision
from .swap_encoding import DEFAULT_OVERLAP

__all__ = [
    "DEFAULT_BLOCK",
    "MIN_BLOCK",
    "OUTPUT_ROLES",
    "STYLE_MAX_BYTES",
    "STYLE_MODES",
    "StyleMode",
    "SwapSettings",
    "SwapSettingsError",
    "output_name",
    "output_path",
]

#: the style image of a whole-slide swap is read at its largest level within this many bytes of 8-bit RGB
STYLE_MAX_BYTES = 48 * 2**20
#: whole-slide swap: block side, px (interior written per step; rounded up to a multiple of the model tile)
DEFAULT_BLOCK = 2048
#: the smallest block side accepted, px
MIN_BLOCK = 64
STYLE_MODES = ("mean", "point", "region")
StyleMode = Literal["mean", "point", "region"]
PRECISIONS = ("auto", "fp32", "bf16")
#: the outputs of an in-memory swap, in the order they are written
OUTPUT_ROLES = ("swap", "recon_anatomy", "recon_style", "reverse")


class SwapSettingsError(DomaingenError, ValueError):
    """A swap setting that cannot work (the message names the ``swap`` option)."""


@dataclass(frozen=True, eq=False)
class SwapSettings:
    """One swap's settings (module docstring). ``overlap``: the plain tiling's overlap in [0, 1), only without
    ``seamless`` (``None``: :data:`~napari_domaingen.core.swap_encoding.DEFAULT_OVERLAP`); ``block``: px, whole
    slides only; ``reconstructions``: also render the reconstructions and the reverse swap."""

    model: str = "default"
    device: str = "auto"
    precision: Precision = "auto"
    seamless: bool = True
    detail: bool = True
    tissue_only: bool = True
    glass: bool = True
    colours: bool = True
    overlap: float | None = None
    style: StyleMode = "mean"
    point: tuple[float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    block: int = DEFAULT_BLOCK
    reconstructions: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SwapSettingsError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.style not in STYLE_MODES:
            raise SwapSettingsError(f"the style rule must be one of {', '.join(STYLE_MODES)}, got {self.style!r}")
        if self.overlap is not None:
            if self.seamless:
                raise SwapSettingsError("--overlap sets the single tiling's overlap: add --no-seamless (or --plain)")
            if not (math.isfinite(self.overlap) and 0.0 <= self.overlap < 1.0):
                raise SwapSettingsError(f"--overlap must be in [0, 1), got {self.overlap:g}")
        if self.style == "point":
            if self.point is None or len(self.point) != 2 or not all(math.isfinite(float(v)) for v in self.point):
                raise SwapSettingsError(f"--style-point expects 'y,x' (a pixel of the style image), got {self.point}")
            object.__setattr__(self, "point", (float(self.point[0]), float(self.point[1])))
        elif self.point is not None:
            raise SwapSettingsError(f"a style point is given, but the style rule is {self.style!r}")
        if self.style == "region":
            if self.mask is None or np.ndim(self.mask) != 2:
                raise SwapSettingsError("the region style needs a 2D mask of the style image (Y, X)")
            object.__setattr__(self, "mask", np.asarray(self.mask, dtype=bool))
        elif self.mask is not None:
            raise SwapSettingsError(f"a region mask is given, but the style rule is {self.style!r}")
        if int(self.block) != self.block or self.block < MIN_BLOCK:
            raise SwapSettingsError(f"--block must be at least {MIN_BLOCK} px, got {self.block}")

    @property
    def tiling_overlap(self) -> float:
        """The plain tiling's overlap (unused by the seamless tilings)."""
        return DEFAULT_OVERLAP if self.overlap is None else float(self.overlap)

    def rendering(self) -> str:
        """The rendering options, in words (status lines, the outputs' metadata)."""
        tiling = "seamless tilings" if self.seamless else f"one tiling (overlap {self.tiling_overlap:g})"
        text = f"{tiling}, {'detail carried over' if self.detail else 'no detail carry-over'}"
        if not self.glass:
            text += ", the model's glass"
        return text + ("" if self.colours else ", the model's colours")

    def style_rule(self, style_name: str) -> str:
        """The style used, in words."""
        if self.style == "point":
            assert self.point is not None
            return f"style of the patch at (y {self.point[0]:.0f}, x {self.point[1]:.0f}) of '{style_name}'"
        if self.style == "region":
            assert self.mask is not None
            return f"mean style of '{style_name}' inside the painted region ({int(self.mask.sum())} px)"
        return f"mean style of '{style_name}' ({'tissue' if self.tissue_only else 'whole image'})"


def output_path(out: PathLike, role: str) -> Path:
    """The file of output ``role`` (:data:`OUTPUT_ROLES`) of a swap written to ``out``: ``out`` itself for
    ``"swap"``, else ``<stem>_<role><suffix>`` beside it."""
    out = Path(out)
    if role not in OUTPUT_ROLES:
        raise ValueError(f"unknown swap output {role!r}; one of {', '.join(OUTPUT_ROLES)}")
    if role == "swap":
        return out
    return out.with_name(f"{out.with_suffix('').name}_{role}{out.suffix}")


def output_name(role: str, anatomy: str, style: str) -> str:
    """The layer name of output ``role`` of a swap of the images named ``anatomy`` and ``style``."""
    names = {
        "swap": f"{anatomy} anatomy × {style} style",
        "recon_anatomy": f"{anatomy} reconstruction",
        "recon_style": f"{style} reconstruction",
        "reverse": f"{style} anatomy × {anatomy} style",
    }
    if role not in names:
        raise ValueError(f"unknown swap output {role!r}; one of {', '.join(OUTPUT_ROLES)}")
    return names[role]
