"""Dock widget: frozen anatomix features of a 3D image layer → a (C, Z, Y, X) feature layer + an RGB preview.

Thin by design: it collects :class:`~napari_domaingen.core.features.FeatureSettings`, runs
:func:`~napari_domaingen.core.features.extract_features` in a ``thread_worker`` and turns its progress dicts
into a napari progress bar, a status line and, at the end, two layers on the source layer's grid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..core.device import available_devices
from ..core.features import (
    CT_WINDOWS,
    LAYER_DESCRIPTIONS,
    FeatureResult,
    FeatureSettings,
    extract_features,
    settings_summary,
)
from ..core.progress import Cancelled, Progress
from ..core.rgb import pca_rgb
from ..models.weights import available_weights
from .._napari.layers import META_KEY, geometry_kwargs, stack_geometry_kwargs

if TYPE_CHECKING:
    import napari

NO_CT_WINDOW = "none"
_EXTRACTION_SHARE = 95  # progress-bar percent for the features; the RGB preview takes the rest


@dataclass
class _Outcome:
    """What the worker hands back: a result and its RGB preview, or why there is none."""

    result: FeatureResult | None = None
    rgb: np.ndarray | None = None
    error: Exception | None = None
    cancelled: bool = False


def _feature_job(
    data: Any, settings: FeatureSettings, cancel: Callable[[], bool]
) -> Generator[Progress, None, _Outcome]:
    """Worker body: the core generator, then the RGB preview (both off the GUI thread).

    Errors are returned, not raised: a worker whose generator raises a ``RuntimeError`` (e.g.
    ``WeightsUnavailableError``) would otherwise end without emitting ``errored`` or ``finished``.
    """
    try:
        image = np.asarray(data)
        result = yield from extract_features(image, settings, cancel=cancel)
        if cancel():
            raise Cancelled("feature extraction cancelled")
        yield {"stage": "preview", "fraction": 1.0, "message": "colour preview (PCA → RGB)"}
        rgb = pca_rgb(result.features, image)
    except Cancelled:
        return _Outcome(cancelled=True)
    except Exception as exc:  # shown to the user by the widget
        return _Outcome(error=exc)
    return _Outcome(result=result, rgb=rgb)


class ExtractFeaturesWidget(QWidget):
    """Extract anatomix features of a 3D image layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.last_result: FeatureResult | None = None
        self._cancel = threading.Event()
        self._pbar: Any = None
        self._job: dict[str, Any] = {}
        self._job_gen: Generator[Progress, None, _Outcome] | None = None

        self._image = ComboBox(label="image", choices=self._image_layers, nullable=False)
        self._weights = ComboBox(label="model", choices=available_weights(), value="anatomix")
        self._weights_file = FileEdit(
            label="file…", mode="r", filter="*.pth *.pt", nullable=True,
            tooltip="a local anatomix checkpoint (.pth); when a file is given it is used instead of the model above",
        )
        self._layer = ComboBox(
            label="features", choices=[(text, key) for key, text in LAYER_DESCRIPTIONS.items()], value="final"
        )
        self._normalisation = ComboBox(
            label="normalisation", choices=["auto", "instance", "unit", "none"], value="auto",
            tooltip="auto: instance (per-channel z-score) for anatomix, unit (voxel-wise L2) for anatomix-dev",
        )
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._precision = ComboBox(
            label="precision", choices=["auto", "fp32", "bf16"], value="auto",
            tooltip="auto: bf16 for anatomix where the device has fast bf16, fp32 otherwise and for anatomix-dev",
        )
        self._strategy = ComboBox(
            label="strategy", choices=["auto", "whole", "sliding"], value="auto",
            tooltip="auto: the whole volume in one pass when it fits in memory, else a sliding window",
        )
        self._roi = SpinBox(label="ROI", value=128, min=16, max=1024, step=16, tooltip="sliding-window size (voxels)")
        self._overlap = FloatSpinBox(label="overlap", value=0.25, min=0.0, max=0.9, step=0.05)
        self._ct_window = ComboBox(
            label="CT window", choices=[NO_CT_WINDOW, *CT_WINDOWS], value=NO_CT_WINDOW,
            tooltip="for CT: clip to this Hounsfield window before min-max scaling; none for MRI",
        )
        self._dtype = ComboBox(label="output dtype", choices=["float32", "float16"], value="float32")
        self._run = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._status.native.setWordWrap(True)

        self._container = Container(
            widgets=[
                self._image, self._weights, self._weights_file, self._layer, self._normalisation, self._device,
                self._precision, self._strategy, self._roi, self._overlap, self._ct_window, self._dtype,
                Container(widgets=[self._run, self._cancel_button], layout="horizontal", labels=False),
                self._status,
            ]
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._container.native)
        layout.addStretch(1)

        self._run.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self._strategy.changed.connect(self._on_strategy)
        self._on_strategy(self._strategy.value)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)

    # ------------------------------------------------------------------------------------------- parameters

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb and not layer.multiscale
        ]

    def _refresh_layers(self, _event: Any = None) -> None:
        try:
            self._image.reset_choices()
        except RuntimeError:  # the Qt side is gone (widget closed); stop listening
            for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
                event.disconnect(self._refresh_layers)

    def _on_strategy(self, value: str) -> None:
        self._roi.enabled = self._overlap.enabled = value != "whole"

    def _weights_choice(self) -> tuple[str, str]:
        """(what to load, short name for layer titles): a chosen file wins over the registry name."""
        path = self._weights_file.value
        if path is not None and str(path).strip() not in ("", "."):
            return str(path), Path(path).stem
        return str(self._weights.value), str(self._weights.value)

    def settings(self) -> FeatureSettings:
        """The settings the controls describe."""
        weights, _ = self._weights_choice()
        ct_window = None if self._ct_window.value == NO_CT_WINDOW else str(self._ct_window.value)
        return FeatureSettings(
            weights=weights,
            layer=self._layer.value,
            normalisation=self._normalisation.value,
            ct_window=ct_window,
            device=self._device.value,
            precision=self._precision.value,
            strategy=self._strategy.value,
            roi=int(self._roi.value),
            overlap=float(self._overlap.value),
            output_dtype=self._dtype.value,
        )

    # ------------------------------------------------------------------------------------------- running

    def run(self, _value: Any = None) -> None:
        """Start the extraction for the selected layer (no-op while a run is under way)."""
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        if self.worker is not None and self.worker.is_running:
            return
        layer = self._image.value
        if layer is None:
            self._set_status("add a 3D image layer first")
            return
        settings = self.settings()
        _, weights_name = self._weights_choice()
        self._cancel.clear()
        self._job = {"layer": layer, "settings": settings, "weights_name": weights_name, "outcome": None}
        self._pbar = progress(total=100, desc=f"features of {layer.name}")
        self._run.enabled = False
        self._cancel_button.enabled = True
        self._set_status(f"starting ({weights_name}) …")

        cancel_flag = self._cancel
        self._job_gen = job = _feature_job(layer.data, settings, lambda: cancel_flag.is_set())

        def drive() -> Generator[Progress, None, _Outcome]:
            return (yield from job)

        worker = thread_worker(
            drive,
            connect={
                "yielded": self._on_yielded,
                "returned": self._on_returned,
                "errored": self._on_errored,
                "aborted": self._on_aborted,
                "finished": self._on_finished,
            },
            start_thread=False,
        )()
        self.worker = worker
        worker.start()

    def cancel(self, _value: Any = None) -> None:
        """Ask the running extraction to stop (it stops at the next network module or window)."""
        self._cancel.set()
        if self.worker is not None:
            self.worker.quit()
        self._cancel_button.enabled = False
        self._set_status("cancelling …")

    def _on_yielded(self, update: Progress) -> None:
        stage = update.get("stage")
        fraction = float(update.get("fraction", 0.0))
        percent = _EXTRACTION_SHARE if stage == "preview" else round(_EXTRACTION_SHARE * fraction)
        message = str(update.get("message", ""))
        if self._pbar is not None:
            if percent > self._pbar.n:
                self._pbar.update(percent - self._pbar.n)
            self._pbar.set_description(message)
        if not self._cancel.is_set():
            self._set_status(message)

    def _on_returned(self, outcome: _Outcome) -> None:
        self._job["outcome"] = outcome
        if outcome.cancelled:
            self._set_status("cancelled")
        elif outcome.error is not None:
            self._fail(outcome.error)
        else:
            self._add_layers(outcome.result, outcome.rgb)

    def _on_errored(self, exc: Exception) -> None:  # only for failures outside the job's own error handling
        self._job["outcome"] = _Outcome(error=exc)
        self._fail(exc)

    def _on_aborted(self) -> None:
        # worker.quit() (our Cancel button or napari's activity dock) leaves the job suspended at a yield: stop
        # its inference and close it off the GUI thread, so its thread pool shuts down now, not at garbage collection
        self._cancel.set()
        job, self._job_gen = self._job_gen, None
        if job is not None:
            threading.Thread(target=job.close, name="domaingen-features-close", daemon=True).start()
        self._job["outcome"] = _Outcome(cancelled=True)
        self._set_status("cancelled")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._job_gen = None
        self._run.enabled = True
        self._cancel_button.enabled = False
        if self._job.get("outcome") is None:  # cancelled before anything came back
            self._set_status("cancelled" if self._cancel.is_set() else "stopped")

    def _fail(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        message = str(exc) or type(exc).__name__
        self._set_status(f"error: {message}")
        show_error(message)

    def _set_status(self, text: str) -> None:
        self._status.value = text
        self._status.tooltip = text

    # ------------------------------------------------------------------------------------------- layers

    def _add_layers(self, result: FeatureResult, rgb: np.ndarray) -> None:
        self.last_result = result
        src = self._job["layer"]
        settings: FeatureSettings = self._job["settings"]
        stack = stack_geometry_kwargs(src, leading_axes=1)
        entry = dict(stack["metadata"].get(META_KEY, {}))
        entry["features"] = {
            "source_layer": src.name,
            "weights_name": self._job["weights_name"],
            "settings": settings_summary(settings),
            "device": result.device,
            "precision": result.precision,
            "strategy": result.strategy,
            "normalisation": result.normalisation,
            "seconds": result.seconds,
            "cached": result.cached,
        }
        stack["metadata"] = {**stack["metadata"], META_KEY: entry}
        name = f"{src.name} features ({self._job['weights_name']}, {settings.layer})"
        self.viewer.add_image(result.features, name=name, visible=False, **stack)
        self.viewer.add_image(rgb, name=f"{src.name} features RGB", rgb=True, **geometry_kwargs(src))
        how = "from the cache" if result.cached else (
            f"in {result.seconds:.1f} s ({result.strategy}, {result.precision}, {result.device})")
        self._set_status(
            f"{result.features.shape[0]} feature channels, normalisation {result.normalisation}, {how}"
        )
