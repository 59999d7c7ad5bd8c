"""Dock widget: frozen anatomix features of a 3D image layer → a (C, Z, Y, X) feature layer + an RGB preview.

Thin by design: it collects :class:`~napari_domaingen.core.features.FeatureSettings`, runs
:func:`~napari_domaingen.core.feature_preview.features_with_preview` through its job runner and turns its progress
dicts
into a napari progress bar, a status line and, at the end, two layers on the source layer's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtWidgets import QWidget

from .._napari.layer_meta import FeaturesRecord, read_meta, with_meta
from .._napari.layers import geometry_kwargs, stack_geometry_kwargs
from ..core.device import available_devices
from ..core.feature_preview import FeaturePreview, features_with_preview
from ..core.features import FeatureResult, FeatureSettings, settings_summary
from ..io.intensity import CT_WINDOWS
from ._choices import ExtractorChoice, follow_layer_list, layer_key, volume_layers
from ._jobs import JobRunner, button_busy, label_status, set_status
from ._layout import scroll_layout, wrap_text
from ._outputs import OutputLayers

if TYPE_CHECKING:
    import napari

NO_CT_WINDOW = "none"


@dataclass(frozen=True)
class _FeatureRun:
    """An extraction started from a layer: the ``layer``, the ``settings`` and the extractor's name."""

    layer: Any
    settings: FeatureSettings
    weights_name: str


class ExtractFeaturesWidget(QWidget):
    """Extract anatomix features of a 3D image layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_result: FeatureResult | None = None
        self._started: _FeatureRun | None = None
        self._outputs = OutputLayers(self.viewer)

        self._image = ComboBox(label="image", choices=self._image_layers, nullable=False)
        self._extractor = ExtractorChoice()
        self._weights, self._weights_file, self._layer = (
            self._extractor.weights,
            self._extractor.weights_file,
            self._extractor.layer,
        )
        self._normalisation = ComboBox(
            label="normalisation",
            choices=["auto", "instance", "unit", "none"],
            value="auto",
            tooltip="auto: instance (per-channel z-score) for anatomix, unit (voxel-wise L2) for anatomix-dev",
        )
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._precision = ComboBox(
            label="precision",
            choices=["auto", "fp32", "bf16"],
            value="auto",
            tooltip="auto: bf16 for anatomix where the device has fast bf16, fp32 otherwise and for anatomix-dev",
        )
        self._strategy = ComboBox(
            label="strategy",
            choices=["auto", "whole", "sliding"],
            value="auto",
            tooltip="auto: the whole volume in one pass when it fits in memory, else a sliding window",
        )
        self._roi = SpinBox(label="ROI", value=128, min=16, max=1024, step=16, tooltip="sliding-window size (voxels)")
        self._overlap = FloatSpinBox(label="overlap", value=0.25, min=0.0, max=0.9, step=0.05)
        self._ct_window = ComboBox(
            label="CT window",
            choices=[NO_CT_WINDOW, *CT_WINDOWS],
            value=NO_CT_WINDOW,
            tooltip="for CT: clip to this Hounsfield window before min-max scaling; none for MRI",
        )
        self._dtype = ComboBox(label="output dtype", choices=["float32", "float16"], value="float32")
        self._run = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        wrap_text(self._status.native)

        self._container = Container(
            widgets=[
                self._image,
                self._weights,
                self._weights_file,
                self._layer,
                self._normalisation,
                self._device,
                self._precision,
                self._strategy,
                self._roi,
                self._overlap,
                self._ct_window,
                self._dtype,
                Container(widgets=[self._run, self._cancel_button], layout="horizontal", labels=False),
                self._status,
            ]
        )
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addStretch(1)

        self.runner = JobRunner(
            label_status(self._status), button_busy(self._run, self._cancel_button), self._add_layers
        )
        self.runner.bind(self, self.viewer)
        self._cancel_button.changed.connect(self.cancel)
        self._run.changed.connect(self.run)
        self._strategy.changed.connect(self._on_strategy)
        self._on_strategy(self._strategy.value)
        follow_layer_list(self.viewer, self._image.reset_choices)

    # ------------------------------------------------------------------------------------------- parameters

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer)

    def _on_strategy(self, value: str) -> None:
        self._roi.enabled = self._overlap.enabled = value != "whole"

    def settings(self) -> FeatureSettings:
        """The settings the controls describe."""
        weights, _ = self._extractor.choice()
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

    @property
    def worker(self) -> Any:
        """The worker of the last run (for tests and scripts)."""
        return self.runner.worker

    def run(self, _value: Any = None) -> None:
        """Start the extraction for the selected layer (no-op while a run is under way)."""
        if self.runner.is_running:
            return
        layer = self._image.value
        if layer is None:
            set_status(self._status, "add a 3D image layer first")
            return
        settings = self.settings()
        _, weights_name = self._extractor.choice()
        self._started = _FeatureRun(layer, settings, weights_name)
        self.runner.start(
            lambda cancel: features_with_preview(layer.data, settings, cancel),
            f"features of {layer.name} ({weights_name})",
            inputs=[layer],
        )

    def cancel(self, _value: Any = None) -> None:
        """Ask the running extraction to stop (it stops at the next network module or window)."""
        self.runner.cancel()

    # ------------------------------------------------------------------------------------------- layers

    def _add_layers(self, preview: FeaturePreview) -> None:
        run = self._started
        assert run is not None  # the runner calls back only for a run started here
        result, rgb = preview.result, preview.rgb
        self.last_result = result
        src, settings, weights_name = run.layer, run.settings, run.weights_name
        stack = stack_geometry_kwargs(src, leading_axes=1)
        meta = read_meta(stack["metadata"])
        meta["features"] = FeaturesRecord(
            source_layer=src.name,
            weights_name=weights_name,
            settings=settings_summary(settings),
            device=result.device,
            precision=result.precision,
            strategy=result.strategy,
            normalisation=result.normalisation,
            seconds=result.seconds,
            cached=result.cached,
        )
        stack["metadata"] = with_meta(stack["metadata"], meta)
        name = f"{src.name} features ({weights_name}, {settings.layer})"
        # one feature stack (and one RGB preview) per source layer and extractor: a re-run replaces them
        role = (layer_key(src), weights_name, settings.layer)
        features = self._outputs.get(("features", *role))
        visible = features.visible if features is not None else False
        self._outputs.put(("features", *role), "image", result.features, name, visible=visible, **stack)
        self._outputs.put(("rgb", *role), "image", rgb, f"{name} RGB", rgb=True, **geometry_kwargs(src))
        set_status(self._status, f"{result.features.shape[0]} feature channels: {result.describe()}")
