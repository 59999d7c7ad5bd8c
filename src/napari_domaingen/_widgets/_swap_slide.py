"""The swap dock's whole-slide part: swap a multiscale (slide) anatomy layer at full resolution, block by block.

Shown when the anatomy layer is multiscale. It takes the swap dock's model, rendering options and style rule
(*point* or *mean*; the style image is read at its largest level within 48 MiB of RGB), runs
:func:`~napari_domaingen.core.swap_slide.swap_slide` through the dock's job runner (progress per block, the dock's
Cancel button), writes a multiscale OME-Zarr (or a pyramidal OME-TIFF for a name ending in ``.ome.tif``) and opens
it as a multiscale layer with the anatomy layer's µm scale.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import Container, FileEdit, PushButton

from .._napari.layers import META_KEY
from ..core.swap_slide import DEFAULT_BLOCK, SlideSwapResult, slide_style, swap_slide
from ..io.slide import slide_levels_of
from ..io.slide_write import slide_output_kind
from ..progress import Progress
from ._choices import file_value
from ._jobs import set_status, show_problem

__all__ = ["STYLE_MAX_BYTES", "SlidePanel", "SlideRequest", "default_slide_output", "slide_job"]

#: the style image is used at its largest level within this many bytes of 8-bit RGB
STYLE_MAX_BYTES = 48 * 2**20


def default_slide_output(layer: Any) -> Path:
    """``<name>-swapped.ome.zarr`` beside the layer's source file, or in the current folder when it has none."""
    entry = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    source = entry.get("slide_path") or entry.get("histology_path")
    folder = Path(source).parent if source else Path.cwd()
    return folder / f"{layer.name}-swapped.ome.zarr"


def _style_level(layer: Any) -> tuple[Any, float]:
    """The largest level of the style layer within :data:`STYLE_MAX_BYTES` (the smallest when none is), and its
    downsample factor relative to level 0."""
    levels = slide_levels_of(layer.data)
    for level in levels:
        if level.shape[0] * level.shape[1] * 3 <= STYLE_MAX_BYTES:
            break
    else:
        level = levels[-1]
    return level, float(np.mean([levels[0].shape[0] / level.shape[0], levels[0].shape[1] / level.shape[1]]))


@dataclass
class SlideRequest:
    """A whole-slide swap taken from the dock on the GUI thread: the anatomy's level 0 (lazy), the style level,
    the style point in that level's px (``None``: mean style), the model, the options and the output."""

    anatomy: Any
    style: Any
    point: tuple[float, float] | None
    model: Any
    model_path: str
    device: str
    out: Path
    mpp: float | None
    seamless: bool
    detail: bool
    tissue_only: bool
    overlap: float
    block: int = DEFAULT_BLOCK


def slide_job(request: SlideRequest, cancel: Callable[[], bool]) -> Generator[Progress, None, SlideSwapResult]:
    """Worker body: load the model (unless cached), the style vector, then the block-by-block swap."""
    from ..core.swap_model import load_swap_model

    model = request.model
    if model is None:
        yield {"stage": "load", "fraction": 0.0, "message": f"loading the model on {request.device}"}
        model = load_swap_model(request.model_path, request.device)
    yield {"stage": "style", "fraction": 0.0, "message": "reading the style image and its style"}
    style_image = np.asarray(request.style.compute() if hasattr(request.style, "compute") else request.style)
    style = slide_style(model, style_image, request.point, tissue_only=request.tissue_only)
    result = yield from swap_slide(
        model,
        request.anatomy,
        style,
        request.out,
        block=request.block,
        seamless=request.seamless,
        detail=request.detail,
        overlap=request.overlap,
        mpp=request.mpp,
        cancel=cancel,
    )
    return result


class SlidePanel(Container):
    """Output path and button of the whole-slide swap; visible when the swap dock's anatomy layer is a slide."""

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self.output = FileEdit(
            label="slide output",
            mode="w",
            filter="*.ome.zarr *.zarr *.ome.tif *.ome.tiff",
            tooltip="where the swapped slide is written: a multiscale OME-Zarr (.ome.zarr) or a pyramidal OME-TIFF "
            "(.ome.tif)",
        )
        self.button = PushButton(
            text="Swap the whole slide at full resolution",
            tooltip="render the anatomy slide at full resolution with the chosen style (point or mean), block by "
            "block with bounded memory, write it to 'slide output' and open it",
        )
        super().__init__(widgets=[self.output, self.button], labels=True)
        self.last_result: SlideSwapResult | None = None
        self.block = DEFAULT_BLOCK  # px (tests use smaller blocks)
        self._for: Any = None
        self.button.changed.connect(self.start)
        dock._anatomy.changed.connect(self.update)
        self.update()

    def update(self, _value: Any = None) -> None:
        """Show the panel for a multiscale anatomy layer; default the output beside its source."""
        layer = self.dock._anatomy.value
        slide = layer is not None and bool(getattr(layer, "multiscale", False))
        self.visible = slide
        if slide and self._for is not layer:
            self._for = layer
            self.output.value = default_slide_output(layer)

    def _request(self) -> SlideRequest:
        """The request from the dock's controls; ``ValueError`` saying what is wrong."""
        dock = self.dock
        anatomy, style = dock._anatomy.value, dock._style.value
        if anatomy is None or not getattr(anatomy, "multiscale", False):
            raise ValueError("choose a multiscale (slide) anatomy image for a whole-slide swap")
        if style is None:
            raise ValueError("choose the style image")
        out = file_value(self.output.value)
        if out is None or slide_output_kind(out) is None:
            raise ValueError("the slide output must be a name ending in .ome.zarr or .ome.tif")
        mode = dock._mode.value
        if mode == "region":
            raise ValueError("a whole-slide swap takes the point or mean style; choose one of them")
        level, factor = _style_level(style)
        point = None
        if mode == "point":
            point = dock.style_point(style)
            if point is None:
                raise ValueError(f"place the style point on '{style.name}' first (or choose the mean style)")
            point = (point[0] / factor, point[1] / factor)
        model_key, source, device = dock._model_key()
        entry = (anatomy.metadata or {}).get(META_KEY) or {}
        mpp = entry.get("mpp")
        if mpp is None and not np.allclose(anatomy.scale[-2:], 1.0):
            mpp = float(anatomy.scale[-1])
        options = dock.options
        return SlideRequest(
            anatomy=slide_levels_of(anatomy.data)[0],
            style=level,
            point=point,
            model=dock._models.get(model_key),
            model_path=source,
            device=device,
            out=out,
            mpp=mpp,
            seamless=bool(options.seamless.value),
            detail=bool(options.detail.value),
            tissue_only=bool(options.tissue.value),
            overlap=round(float(options.overlap.value), 4),
            block=self.block,
        )

    def start(self, _value: Any = None) -> None:
        """Run the whole-slide swap in the dock's job runner (no-op while a job runs)."""
        dock = self.dock
        if dock.runner.is_running:
            return
        try:
            request = self._request()
        except (OSError, ValueError) as err:
            show_problem(dock._status, str(err))
            return
        self._names = (dock._anatomy.value.name, dock._style.value.name)
        dock._progress.value = 0
        dock.runner.start(
            lambda cancel: slide_job(request, cancel), f"swapping the whole slide into {request.out.name}", self._done
        )

    def _done(self, result: SlideSwapResult) -> None:
        """Open the written slide as a multiscale layer."""
        from .._napari.slide_reader import slide_layer_data
        from ..io.slide import open_slide

        self.last_result = result
        dock = self.dock
        dock._progress.value = dock._progress.max
        data, attrs, _ = slide_layer_data(open_slide(result.path))
        anatomy, style = self._names
        attrs["name"] = f"{anatomy} anatomy × {style} style (slide)"
        dock.viewer.add_image(data, **attrs)
        set_status(
            dock._status,
            f"wrote {result.path} ({result.shape[0]} × {result.shape[1]} px, {len(result.levels)} levels, "
            f"{result.blocks} blocks in {result.seconds:.0f} s) and opened it",
        )
