"""Dock widget: a feature stack ``(C, Z, Y, X)`` → one live RGB layer (PCA or three chosen channels).

Thin by design: every parameter change restarts a short timer (150 ms); when it fires the projection
(:func:`~napari_domaingen.core.rgb.render_rgb`) is fitted and applied by the job runner, off the GUI thread (a PCA of
a 16×155×240×240 stack takes seconds), and the result replaces the data of the same output layer.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from .._napari.layer_meta import FeatureRgbRecord, FeaturesRecord, read_meta, with_meta
from .._napari.layers import spatial_geometry_kwargs
from ..core.foreground import foreground_mask
from ..core.rgb import render_rgb
from ..progress import Progress
from ._choices import follow_layer_list, layer_key, volume_layers
from ._jobs import JobRunner, set_status
from ._layout import scroll_layout, wrap_text

if TYPE_CHECKING:
    import napari

DEBOUNCE_MS = 150
NO_MASK = "none (colour every voxel)"
OUTPUT_KEY = "feature_rgb"


def features_entry(layer: Any) -> FeaturesRecord | None:
    """The ``features`` record of a feature-stack layer (written by *Extract features*), or None."""
    entry = read_meta(layer).get("features")
    return entry if isinstance(entry, dict) else None


def _render_job(
    features: Any, image: Any, mode: str, channels: tuple[int, int, int], mask: Any
) -> Generator[Progress, None, tuple[np.ndarray, float, bool, Any]]:
    """Job: ``(rgb, seconds, masked, mask)``. ``mask``: the image's foreground when already found (else it is found
    here and handed back, to be reused by the next render)."""
    start = time.perf_counter()
    yield {"stage": "colour", "fraction": 0.0, "message": "colouring …"}
    if mask is None and image is not None:
        mask = foreground_mask(np.asarray(image))
    rgb, masked = render_rgb(np.asarray(features), mode=mode, channels=channels, mask=mask)
    return rgb, time.perf_counter() - start, masked, mask


class FeatureRGBWidget(QWidget):
    """Show a feature stack as an RGB volume: its top-3 principal components or three chosen channels."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.output: Any = None  # the RGB layer of the current feature layer
        self._outputs: dict[Any, tuple[Any, Any]] = {}  # layer_key(features layer) → (features layer, RGB layer)
        self._dirty = False
        self._mask: tuple[Any, np.ndarray] | None = None  # (source layer, data, shape) → its foreground

        self._features = ComboBox(
            label="features",
            choices=self._feature_layers,
            nullable=False,
            tooltip="a (C, Z, Y, X) feature stack made by 'Extract features'",
        )
        self._source = ComboBox(
            label="mask from",
            choices=self._source_layers,
            nullable=True,
            tooltip="the image the features came from: its foreground (the tissue, found from the background level at "
            "the volume's border; NaN voxels excluded) is where the colours are fitted, and the background is shown "
            "black",
        )
        self._source.null_string = NO_MASK  # the empty choice, first in the list
        self._source.reset_choices()
        self._mode = ComboBox(
            label="colours",
            choices=[("PCA (top 3 components)", "pca"), ("three channels", "channels")],
            value="pca",
        )
        self._channels = [
            SpinBox(value=i, min=0, max=15, tooltip=f"feature channel shown as {c}")
            for i, c in enumerate(("red", "green", "blue"))
        ]
        self._channel_row = Container(widgets=self._channels, layout="horizontal", labels=False, label="R, G, B")
        self._status = Label(value="")
        wrap_text(self._status.native)
        container = Container(widgets=[self._features, self._source, self._mode, self._channel_row, self._status])
        layout = scroll_layout(self)
        layout.addWidget(container.native)
        layout.addStretch(1)

        self.runner = JobRunner(self._set_status, lambda _busy: None, activity=False)
        self.runner.bind(self, self.viewer)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.render)

        self._features.changed.connect(self._on_features)
        self._source.changed.connect(self.schedule)
        self._mode.changed.connect(self._on_mode)
        for box in self._channels:
            box.changed.connect(self.schedule)
        follow_layer_list(self.viewer, self._refresh_layers)
        self._on_mode(self._mode.value)
        self._on_features(self._features.value)

    # ------------------------------------------------------------------------------------------- parameters

    def _feature_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 4 and not layer.rgb and features_entry(layer) is not None
        ]

    def _source_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer)

    def _refresh_layers(self) -> None:
        self._features.reset_choices()
        self._source.reset_choices()

    def _on_features(self, layer: Any) -> None:
        """A new feature layer: channel ranges from its size, the mask from its recorded source layer."""
        if layer is not None:
            top = int(layer.data.shape[0]) - 1
            for box in self._channels:
                box.max = top
                box.value = min(box.value, top)
            source_name = (features_entry(layer) or {}).get("source_layer")
            spatial = tuple(layer.data.shape[1:])
            match = next(
                (
                    other
                    for name, other in self._source_layers()
                    if other is not None and name == source_name and tuple(other.data.shape) == spatial
                ),
                None,
            )
            self._source.value = match
        self.schedule()

    def _on_mode(self, value: str) -> None:
        self._channel_row.enabled = value == "channels"
        self.schedule()

    def channels(self) -> tuple[int, int, int]:
        return tuple(int(box.value) for box in self._channels)  # type: ignore[return-value]

    def output_name(self, layer: Any) -> str:
        if self._mode.value == "pca":
            return f"{layer.name} RGB (pca)"
        return f"{layer.name} RGB (channels {', '.join(str(c) for c in self.channels())})"

    # ------------------------------------------------------------------------------------------- rendering

    def schedule(self, _value: Any = None) -> None:
        """(Re)start the debounce timer: many quick changes → one render."""
        self._timer.start()

    @property
    def worker(self) -> Any:
        """The worker of the last render (for tests and scripts)."""
        return self.runner.worker

    def render(self) -> None:
        """Fit and apply the projection in a worker; while one runs, remember to render again afterwards."""
        layer = self._features.value
        if layer is None:
            self._set_status("no feature stack: run 'Extract features' first")
            return
        if self.runner.is_running:
            self._dirty = True
            return
        self._dirty = False
        source = self._source.value
        if source is not None and tuple(source.data.shape) != tuple(layer.data.shape[1:]):
            self._set_status(
                f"{source.name} {tuple(source.data.shape)} is not on the features' grid "
                f"{tuple(layer.data.shape[1:])}: no mask used"
            )
            source = None
        mode, channels = self._mode.value, self.channels()
        mask_key = None if source is None else (layer_key(source), id(source.data), tuple(source.data.shape))
        mask = self._mask[1] if self._mask is not None and self._mask[0] == mask_key else None
        job = {"layer": layer, "mode": mode, "channels": channels, "name": self.output_name(layer), "mask": mask_key}
        image = None if source is None else source.data
        self.runner.start(
            lambda _cancel: _render_job(layer.data, image, mode, channels, mask),
            "colouring",
            lambda result: self._on_rendered(job, result),
            inputs=[layer] if source is None else [layer, source],
        )

    def _on_rendered(self, job: dict[str, Any], result: Any) -> None:
        if self._dirty:  # parameters changed meanwhile: this result is already stale
            QTimer.singleShot(0, self.render)
            return
        rgb, seconds, masked, mask = result
        if job["mask"] is not None:
            self._mask = (job["mask"], mask)  # the foreground of this source, for the next render
        self._put_output(job, rgb)
        how = "PCA, top 3 components" if job["mode"] == "pca" else f"channels {list(job['channels'])} as R, G, B"
        where = "fitted on the foreground" if masked else "fitted on every voxel"
        self._set_status(f"{how}, {where} ({seconds:.2f} s)")

    def _put_output(self, job: dict[str, Any], rgb: np.ndarray) -> None:
        layer = job["layer"]
        geometry = spatial_geometry_kwargs(layer)
        meta = read_meta(geometry["metadata"])
        meta[OUTPUT_KEY] = FeatureRgbRecord(features_layer=layer.name, mode=job["mode"], channels=list(job["channels"]))
        geometry["metadata"] = with_meta(geometry["metadata"], meta)
        known = self._outputs.get(layer_key(layer))
        output = known[1] if known is not None else None
        if output is not None and output in self.viewer.layers:
            output.data = rgb
            output.name = job["name"]
            output.scale, output.translate, output.affine = geometry["scale"], geometry["translate"], geometry["affine"]
            output.metadata = geometry["metadata"]
        else:
            output = self.viewer.add_image(rgb, name=job["name"], rgb=True, **geometry)
            self._outputs[layer_key(layer)] = (layer, output)
        self.output = output

    def _set_status(self, text: str) -> None:
        set_status(self._status, text)
