"""The swap widget's rendering options (docs/swap.md#rendering-options), a thin set of magicgui controls, and the
request the dock builds from its controls on the GUI thread (turned into
:class:`~napari_domaingen.core.swap_settings.SwapSettings` for the core job; the encodings it caches are keyed by
model, tiling and layer).

*seamless* (two shifted tilings blended so no patch grid shows; off: the paper's single tiling, whose *tile
overlap* then applies), *keep detail* (carry the anatomy image's fine detail over), *tissue style* (mean styles
over the style image's tissue, not its glass) *style's glass* (the anatomy's glass in the style image's glass
colour, only its tissue rendered) and *style's colours* (the rendered tissue's colours mapped onto the style image's
tissue colours). All five are on by default.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox

from ..core.swap import DEFAULT_OVERLAP, EncodedImage
from ..core.swap_job import SwapResult, swap_images
from ..core.swap_model import SwapModel
from ..core.swap_settings import SwapSettings
from ..progress import Progress

__all__ = [
    "CacheKey",
    "ImageInput",
    "ModelKey",
    "RenderOptions",
    "SwapOutcome",
    "SwapRequest",
    "swap_run",
    "tiling_key",
]

DEFAULT_VARIANTS = 8
ModelKey = tuple[str, int, int, str]  # (file, mtime_ns, size, device)
TilingKey = tuple[Any, ...]  # ("seamless",) or ("plain", overlap)
CacheKey = tuple[ModelKey, TilingKey, tuple[Any, ...]]  # (model, tiling, layer key)


def tiling_key(seamless: bool, overlap: float) -> TilingKey:
    """What an encoding depends on besides the model and the image: the tiling (the overlap only for plain)."""
    return ("seamless",) if seamless else ("plain", round(float(overlap), 4))


@dataclass
class ImageInput:
    """One input image, taken from its layer on the GUI thread (no copy), with its cached encoding if any."""

    role: str
    name: str
    data: Any
    key: CacheKey
    encoded: EncodedImage | None = None


@dataclass
class SwapRequest:
    """What the dock asks for: ``what`` is ``"all"`` (the swap, the reconstructions and the reverse swap),
    ``"cross"`` (only the swap: the style point / region changed) or ``"variants"``; ``mode``: the style rule;
    ``point`` (as placed; the job takes the nearest pixel of the style image) / ``mask``: filled by the style
    pickers; the rendering options by :meth:`RenderOptions.fill`."""

    what: str
    model_key: ModelKey
    model_path: str
    device: str
    model: SwapModel | None
    anatomy: ImageInput
    style: ImageInput
    mode: str
    overlap: float
    seamless: bool = True
    detail: bool = True
    tissue_only: bool = True
    glass: bool = True
    colours: bool = True
    point: tuple[float, float] | None = None
    mask: np.ndarray | None = None
    count: int = DEFAULT_VARIANTS
    seed: int = 0

    @property
    def same(self) -> bool:
        """Anatomy and style are one layer (encoded once)."""
        return self.style.key == self.anatomy.key

    def settings(self) -> SwapSettings:
        """The core job's settings; a point off the style image is moved to its nearest pixel."""
        point = None
        if self.mode == "point" and self.point is not None:
            height, width = np.shape(self.style.data)[:2]
            point = (min(max(self.point[0], 0.0), height - 1.0), min(max(self.point[1], 0.0), width - 1.0))
        mode = self.mode if self.what != "variants" else "mean"
        return SwapSettings(
            model=self.model_path,
            device=self.device,
            seamless=self.seamless,
            detail=self.detail,
            tissue_only=self.tissue_only,
            glass=self.glass,
            colours=self.colours,
            overlap=None if self.seamless else self.overlap,
            style=mode,  # type: ignore[arg-type]
            point=point if mode == "point" else None,
            mask=self.mask if mode == "region" else None,
            reconstructions=self.what == "all",
        )

    def style_rule(self) -> str:
        """The style used, in words (for the status line and the outputs' metadata)."""
        return self.settings().style_rule(self.style.name)

    def rendering(self) -> str:
        """The rendering options, in words."""
        return self.settings().rendering()


@dataclass
class SwapOutcome:
    """A swap run's request and the core job's result, with the encodings keyed for the dock's cache."""

    request: SwapRequest
    result: SwapResult
    encodings: dict[CacheKey, EncodedImage] = field(default_factory=dict)

    @property
    def model(self) -> SwapModel:
        return self.result.model

    @property
    def encoded_now(self) -> int:
        return self.result.encoded_now

    @property
    def seconds(self) -> float:
        return self.result.seconds


class RenderOptions:
    """``row``: the three check boxes side by side; ``overlap``: the plain tiling's overlap (enabled without
    *seamless*)."""

    def __init__(self) -> None:
        self.overlap = FloatSpinBox(
            label="tile overlap",
            value=DEFAULT_OVERLAP,
            min=0.0,
            max=0.75,
            step=0.05,
            enabled=False,
            tooltip="without 'seamless': fraction by which the model's tiles overlap (blended with a Gaussian "
            "window, no tile seams; the 8 px patch grid stays); more overlap: slower encoding",
        )
        self.seamless = CheckBox(
            text="seamless",
            value=True,
            tooltip="blend two tilings whose patch grids are shifted by half a patch, so no patch grid or tile "
            "border shows (about 2 encodings per pixel); off: the DGM-DR paper's single tiling",
        )
        self.detail = CheckBox(
            text="keep detail",
            value=True,
            tooltip="carry over the fine detail of the anatomy image that the model cannot represent (the "
            "difference between the image and its own reconstruction, in grey optical density, so the old "
            "stain's colour does not come back); off: the model's own render",
        )
        self.tissue = CheckBox(
            text="tissue style",
            value=True,
            tooltip="mean styles over the tissue patches of the image, not the glass around it (mean mode and "
            "the reverse swap); off: over every patch",
        )
        self.glass = CheckBox(
            text="style's glass",
            value=True,
            tooltip="draw the anatomy image's glass (background) in the style image's glass colour, and render only "
            "its tissue with the style; off: the model's render of the glass",
        )
        self.colours = CheckBox(
            text="style's colours",
            value=True,
            tooltip="map the rendered tissue's colours onto the style image's tissue colours (CIELAB means, "
            "covariance and chroma quantiles; around the point in point mode, inside the region in region mode); "
            "off: the model's colours",
        )
        rows = [[self.seamless, self.detail, self.tissue], [self.glass, self.colours]]  # two rows: a narrow dock
        self.row = Container(
            widgets=[Container(widgets=row, layout="horizontal", labels=False) for row in rows], labels=False
        )
        self.seamless.changed.connect(self._on_seamless)

    def _on_seamless(self, seamless: bool) -> None:
        self.overlap.enabled = not seamless

    def tiling(self) -> TilingKey:
        """What the encodings depend on (see :func:`tiling_key`)."""
        return tiling_key(bool(self.seamless.value), float(self.overlap.value))

    def fill(self, request: Any) -> None:
        """Put the options into a :class:`SwapRequest`."""
        request.overlap = round(float(self.overlap.value), 4)
        request.seamless = bool(self.seamless.value)
        request.detail = bool(self.detail.value)
        request.tissue_only = bool(self.tissue.value)
        request.glass = bool(self.glass.value)
        request.colours = bool(self.colours.value)


def swap_run(request: SwapRequest, cancel: Callable[[], bool]) -> Generator[Progress, None, SwapOutcome]:
    """Worker body: the core swap job with the dock's cached model and encodings; the encodings it made are handed
    back under the dock's cache keys."""
    variants = request.count if request.what == "variants" else 0
    result = yield from swap_images(
        request.settings(),
        request.anatomy.data,
        request.style.data,
        names=(request.anatomy.name, request.style.name),
        model=request.model,
        encoded=(request.anatomy.encoded, request.style.encoded),
        same=request.same,
        variants=variants,
        seed=request.seed,
        cancel=cancel,
    )
    encodings = {request.anatomy.key: result.encoded["anatomy"]}
    if "style" in result.encoded:
        encodings[request.style.key] = result.encoded["style"]
    return SwapOutcome(request, result, encodings)
