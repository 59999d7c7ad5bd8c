"""The swap dock's whole-slide part: swap a multiscale (slide) anatomy layer at full resolution, block by block.

Shown when the anatomy layer is multiscale. It takes the swap dock's model, rendering options and style rule
(*point* or *mean*; the style image is read at its largest level within 48 MiB of RGB), runs
:func:`~napari_domaingen.core.swap_job.swap_slide_job` (the job of ``domaingen swap … --out X.ome.zarr``) through
the dock's job runner (progress per block, the dock's Cancel button), writes a multiscale OME-Zarr (or a pyramidal
OME-TIFF for a name ending in ``.ome.tif``) and opens it as a multiscale layer with the anatomy layer's µm scale.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import Container, FileEdit, PushButton

from .._napari.layers import META_KEY
from ..core.swap_job import style_level, swap_slide_job
from ..core.swap_settings import DEFAULT_BLOCK, SwapSettings, SwapSettingsError
from ..core.swap_slide import SlideSwapResult
from ..io.slide import slide_levels_of
from ..io.slide_write import slide_output_kind
from ..progress import Progress
from ._choices import file_value
from ._jobs import set_status, show_problem

__all__ = ["SlidePanel", "SlideRequest", "default_slide_output"]


def default_slide_output(layer: Any) -> Path:
    """``<name>-swapped.ome.zarr`` beside the layer's source file, or in the current folder when it has none."""
    entry = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    source = entry.get("slide_path") or entry.get("histology_path")
    folder = Path(source).parent if source else Path.cwd()
    return folder / f"{layer.name}-swapped.ome.zarr"


@dataclass
class SlideRequest:
    """A whole-slide swap taken from the dock on the GUI thread: the settings, the anatomy's level 0 (lazy), the
    style level (lazy) and its downsample factor, the cached model (if any), the output and its µm per pixel."""

    settings: SwapSettings
    anatomy: Any
    style: Any
    style_factor: float
    style_name: str
    model: Any
    out: Path
    mpp: float | None

    def job(self, cancel: Callable[[], bool]) -> Generator[Progress, None, SlideSwapResult]:
        """The core job (:func:`~napari_domaingen.core.swap_job.swap_slide_job`) for this request."""
        return swap_slide_job(
            self.settings,
            self.anatomy,
            self.style,
            self.out,
            style_factor=self.style_factor,
            style_name=self.style_name,
            model=self.model,
            mpp=self.mpp,
            cancel=cancel,
        )


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
        levels = slide_levels_of(style.data)
        level, factor = style_level(levels)
        point = None
        if mode == "point":
            point = dock.style_point(style)
            if point is None:
                raise ValueError(f"place the style point on '{style.name}' first (or choose the mean style)")
            height, width = levels[0].shape[:2]  # a point just off the image: its nearest pixel
            point = (min(max(point[0], 0.0), height - 1.0), min(max(point[1], 0.0), width - 1.0))
        model_key, source, device = dock._model_key()
        entry = (anatomy.metadata or {}).get(META_KEY) or {}
        mpp = entry.get("mpp")
        if mpp is None and not np.allclose(anatomy.scale[-2:], 1.0):
            mpp = float(anatomy.scale[-1])
        options = dock.options
        seamless = bool(options.seamless.value)
        settings = SwapSettings(
            model=source,
            device=device,
            seamless=seamless,
            detail=bool(options.detail.value),
            tissue_only=bool(options.tissue.value),
            overlap=None if seamless else round(float(options.overlap.value), 4),
            style="point" if point is not None else "mean",
            point=point,
            block=self.block,
        )
        return SlideRequest(
            settings=settings,
            anatomy=slide_levels_of(anatomy.data)[0],
            style=level,
            style_factor=factor,
            style_name=style.name,
            model=dock._models.get(model_key),
            out=out,
            mpp=mpp,
        )

    def start(self, _value: Any = None) -> None:
        """Run the whole-slide swap in the dock's job runner (no-op while a job runs)."""
        dock = self.dock
        if dock.runner.is_running:
            return
        try:
            request = self._request()
        except (OSError, ValueError, SwapSettingsError) as err:
            show_problem(dock._status, str(err))
            return
        self._names = (dock._anatomy.value.name, dock._style.value.name)
        dock._progress.value = 0
        inputs = [dock._anatomy.value, dock._style.value]
        dock.runner.start(request.job, f"swapping the whole slide into {request.out.name}", self._done, inputs=inputs)

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
