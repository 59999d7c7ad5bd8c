"""Dock widget: segment a 3D image layer with a MaskGen / ERM checkpoint → a Labels layer on the image's grid.

Thin by design: it reads the chosen checkpoint's description, collects
:class:`~napari_domaingen.core.segment.SegmentSettings`, runs :func:`~napari_domaingen.core.segment.segment` in a
``thread_worker`` and adds what comes back: a Labels layer with the training label values and the class names in
its ``features`` table (napari's status bar shows the name under the cursor), and optionally a hidden
``(K, Z, Y, X)`` probability layer. Both carry the image layer's geometry. The labels' metadata record the model
and its SHA-256, which their NIfTI sidecars and DICOM Segmentations carry on. A table below gives each class's
voxels, volume (mm³) and image mean/std, and saves as CSV.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QSizePolicy, QWidget

from .._napari.layer_meta import MaskGenRecord, read_meta, with_meta
from .._napari.layers import geometry_kwargs, stack_geometry_kwargs
from .._napari.output_layers import probability_style
from ..core.device import available_devices
from ..core.label_stats import ClassStats
from ..core.maskgen import ModelCompatibilityError, ModelSpec, extractor_location, read_model_file
from ..core.segment import Segmentation, SegmentSettings, segment_with_statistics
from ..io.geometry import display_affine_from_layer
from ._choices import file_value, follow_layer_list, volume_layers
from ._jobs import JobRunner, button_busy, label_status, set_status, show_problem
from ._label_stats_panel import LabelStatsPanel
from ._layout import scroll_layout
from .maskgen_train import latest_models

if TYPE_CHECKING:
    import napari

__all__ = ["MaskGenSegmentWidget", "describe_model_file"]

FEATURE_MODES = {
    "auto": "auto: 'shared' when the whole-volume features fit in half of the free memory, else 'per-window'",
    "shared": "shared: the extractor runs once over the whole volume and every window takes its slice of those "
    "features (normalised per window); about 8× less extractor work at overlap 0.5",
    "per-window": "per-window: features of each window computed from that window alone, as in the MaskGen code's "
    "inference (slower; differs from 'shared' only near window borders)",
}
ABLATIONS = [("none", "none"), ("zero the image", "image"), ("zero the features", "features")]
ABLATION_HELP = (
    "input ablation at inference, the paper's Fig. 4 analysis: zero the image channel or the feature channels "
    "and see what the model still segments from the other view alone. View masking drops whole input channels "
    "in training, so a MaskGen model has learned to work from either view. MaskGen models only (an ERM model "
    "has no features)."
)


def describe_model_file(path: str | Path) -> tuple[ModelSpec, str]:
    """The spec of a model checkpoint and one line about it (method, network, classes, training progress, and
    where its extractor is missing); raises ``ValueError``/``OSError`` with a clear message for other files."""
    stored = read_model_file(path)
    spec = ModelSpec.from_dict(stored["spec"])
    text = spec.describe()
    training = stored.get("training")
    if isinstance(training, dict) and "step" in training:
        text += f"; trained {training['step']}/{training.get('steps', '?')} steps"
    if spec.features is not None:
        try:
            extractor_location(spec)
        except ModelCompatibilityError as err:
            text += f". Note: {err}"
    return spec, text


@dataclass(frozen=True)
class _SegmentRun:
    """A segmentation started from a layer: the image ``layer``, the ``model`` file and the ``settings``."""

    layer: Any
    model: Path
    settings: SegmentSettings


class MaskGenSegmentWidget(QWidget):
    """Segment a 3D image layer with a MaskGen or ERM model checkpoint."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_result: Segmentation | None = None
        self.model_spec: ModelSpec | None = None
        self._model_problem: str | None = "choose a model checkpoint (.pt) first"
        self._started: _SegmentRun | None = None

        defaults = SegmentSettings()
        self._image = ComboBox(label="image", choices=self._image_layers, nullable=False)
        self._model = FileEdit(
            label="model",
            mode="r",
            filter="*.pt *.pth",
            nullable=True,
            tooltip="a MaskGen / ERM checkpoint written by MaskGen — train (or `domaingen train`)",
        )
        self._use_last = PushButton(
            text="use the model just trained",
            tooltip="the checkpoint written last by MaskGen — train in this session (its last step)",
        )
        self._use_best = PushButton(
            text="its best model",
            tooltip="the best model (by validation Dice) of the run that wrote the model just "
            "trained: MODEL.best.pt, written when training had a validation pair",
        )
        self._weights_file = FileEdit(
            label="extractor file",
            mode="r",
            filter="*.pth *.pt",
            nullable=True,
            tooltip="optional: the anatomix weights the model was trained with, when the file it recorded is "
            "elsewhere on this machine (they must be the same weights; checked by fingerprint)",
        )
        self._window = ComboBox(
            label="window",
            choices=[("training crop", "crop"), ("whole volume (ERM)", "whole")],
            value=defaults.window,
            tooltip="training crop: slide the crop the model was trained on, as the MaskGen code does; whole volume: "
            "ERM models only, the network runs once over the whole volume (about 3–4× faster; labels differ somewhat "
            "from the crop's, and MaskGen models need the crop for their feature normalisation)",
        )
        self._overlap = FloatSpinBox(
            label="overlap",
            value=defaults.overlap,
            min=0.0,
            max=0.9,
            step=0.05,
            tooltip="with the training-crop window: fraction by which the windows overlap; 0.5 as in the MaskGen code",
        )
        self._feature_mode = ComboBox(
            label="features",
            choices=list(FEATURE_MODES),
            value=defaults.feature_mode,
            tooltip="\n".join(FEATURE_MODES.values()),
        )
        for index, text in enumerate(FEATURE_MODES.values()):
            self._feature_mode.native.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)
        self._ablation = ComboBox(label="ablation", choices=ABLATIONS, value=defaults.ablation, tooltip=ABLATION_HELP)
        self._probabilities = CheckBox(
            text="probabilities",
            value=defaults.probabilities,
            tooltip="also add the softmax probability of every class as a hidden (K, Z, Y, X) image layer",
        )
        self._device = ComboBox(label="device", choices=available_devices(), value=defaults.device)
        self._run = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._model_info = Label(value="")
        self._status = Label(value="")
        for label in (self._model_info, self._status):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self._container = Container(
            widgets=[
                self._image,
                self._model,
                Container(widgets=[self._use_last, self._use_best], layout="horizontal", labels=False),
                self._model_info,
                self._weights_file,
                self._window,
                self._overlap,
                self._feature_mode,
                self._ablation,
                self._probabilities,
                self._device,
                Container(widgets=[self._run, self._cancel_button], layout="horizontal", labels=False),
                self._status,
            ]
        )
        self.stats = LabelStatsPanel(napari_viewer)
        self._window.changed.connect(lambda value: setattr(self._overlap, "enabled", value == "crop"))
        self._overlap.enabled = self._window.value == "crop"
        for combo in (self._image, self._feature_mode, self._ablation):
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addWidget(self.stats.native)
        layout.addStretch(1)

        self.runner = JobRunner(
            label_status(self._status), button_busy(self._run, self._cancel_button), self._add_layers
        )
        self.runner.bind(self, self.viewer)
        self._model.changed.connect(self._on_model)
        self._use_last.changed.connect(lambda _value=None: self.use_last_trained("last"))
        self._use_best.changed.connect(lambda _value=None: self.use_last_trained("best"))
        self._run.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        follow_layer_list(self.viewer, self._image.reset_choices)

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer)

    # ------------------------------------------------------------------------------------------- model

    def _model_path(self) -> Path | None:
        return file_value(self._model.value)

    def _on_model(self, _value: Any = None) -> None:
        """Read the chosen checkpoint and describe it (or say why it is not a model)."""
        path = self._model_path()
        self.model_spec = None
        if path is None:
            self._model_problem = "choose a model checkpoint (.pt) first"
            set_status(self._model_info, "")
            return
        try:
            self.model_spec, text = describe_model_file(path)
        except (OSError, ValueError) as err:
            self._model_problem = str(err)
            set_status(self._model_info, "")
            show_problem(self._status, self._model_problem)
            return
        self._model_problem = None
        set_status(self._model_info, text)
        self._ablation.enabled = self.model_spec.features is not None
        if self.model_spec.features is None:
            self._ablation.value = "none"
        set_status(self._status, "")

    def use_last_trained(self, which: str = "last") -> None:
        """Choose the model trained last by MaskGen — train in this session: its ``"last"`` checkpoint or its
        ``"best"`` model by validation."""
        models = latest_models()
        path = models.get(which)
        if not models:
            show_problem(self._status, "no model has been trained in this session yet (MaskGen — train)")
            return
        if path is None:
            show_problem(
                self._status,
                f"the run that wrote {models['last'].name} wrote no best model: the best "
                "model (MODEL.best.pt) is kept when training has a validation pair",
            )
            return
        unchanged = self._model_path() == path
        self._model.value = path
        if unchanged:  # no change signal: describe the (possibly rewritten) file again
            self._on_model()

    def settings(self) -> SegmentSettings:
        """The settings the controls describe."""
        weights = file_value(self._weights_file.value)
        weights = None if weights is None else str(weights)
        return SegmentSettings(
            overlap=float(self._overlap.value),
            feature_mode=self._feature_mode.value,
            ablation=self._ablation.value,
            probabilities=bool(self._probabilities.value),
            device=self._device.value,
            weights=weights,
            window=self._window.value,
        )

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        """The worker of the last run (for tests and scripts)."""
        return self.runner.worker

    def run(self, _value: Any = None) -> None:
        """Segment the selected image with the chosen model (no-op while a run is under way)."""
        if self.runner.is_running:
            return
        layer = self._image.value
        if layer is None:
            show_problem(self._status, "add a 3D image layer first")
            return
        path = self._model_path()
        if self.model_spec is None or path is None:
            self._on_model()
            if self._model_problem is not None:
                show_problem(self._status, self._model_problem)
                return
        settings = self.settings()
        if settings.ablation != "none" and self.model_spec is not None and self.model_spec.features is None:
            show_problem(self._status, "ablation needs a MaskGen model (image + features); this is an ERM model")
            return
        self._started = _SegmentRun(layer, path, settings)  # type: ignore[arg-type]
        spacing = tuple(float(s) for s in layer.scale)
        affine = display_affine_from_layer(layer)
        self.runner.start(
            lambda cancel: segment_with_statistics(layer.data, path, settings, affine, spacing, cancel),  # type: ignore[arg-type]
            f"segmenting {layer.name} with {path.name}",  # type: ignore[union-attr]
            inputs=[layer],
        )

    def cancel(self, _value: Any = None) -> None:
        """Stop the segmentation at the next window; no layer is added."""
        self.runner.cancel()

    # ------------------------------------------------------------------------------------------- layers

    def _add_layers(self, done: tuple[Segmentation, list[ClassStats]]) -> None:
        from napari.utils.notifications import show_warning

        result, rows = done
        self.last_result = result
        run = self._started
        assert run is not None  # the runner calls back only for a run started here
        src, settings = run.layer, run.settings
        spec = result.spec
        suffix = {"none": "", "image": " (image zeroed)", "features": " (features zeroed)"}[settings.ablation]
        geometry = geometry_kwargs(src)
        meta = read_meta(geometry["metadata"])
        meta["maskgen"] = MaskGenRecord(
            source_layer=src.name,
            model=str(run.model),
            model_description=spec.describe(),
            settings=asdict(settings),
            device=result.device,
            feature_mode=result.feature_mode,
            seconds=result.seconds,
            label_values=list(spec.label_values),
            class_names=list(spec.class_names),
            **_algorithm_entry(result, run.model),
        )
        geometry["metadata"] = with_meta(geometry["metadata"], meta)
        features = {"index": list(spec.label_values), "name": list(spec.class_names)}
        labels = self.viewer.add_labels(
            result.labels, name=f"{src.name} {spec.method} labels{suffix}", features=features, **geometry
        )
        labels.events.paint.connect(lambda _event=None: _mark_edited(labels))
        if result.probabilities is not None:
            stack = stack_geometry_kwargs(src, leading_axes=1)
            stack["metadata"] = with_meta(stack["metadata"], meta)
            self.viewer.add_image(
                result.probabilities,
                name=f"{src.name} {spec.method} probabilities{suffix}",
                **probability_style(),
                **stack,
            )
        text = result.describe()
        for warning in result.warnings:
            show_warning(warning)
        if result.warnings:
            text += " — warning: " + " ".join(result.warnings)
        set_status(self._status, text)
        self.stats.show_for(labels, src, rows)


def _algorithm_entry(result: Segmentation, model: Path) -> MaskGenRecord:
    """``method`` and ``model_sha256`` of the model that made ``result`` (empty when the file is gone)."""
    try:
        algorithm = result.algorithm(model)
    except OSError:
        return MaskGenRecord()
    return MaskGenRecord(method=algorithm["name"], model_sha256=algorithm["version"])


def _mark_edited(labels: Any) -> None:
    """Labels a model made and a person then corrected are semi-automatic (DICOM-SEG's algorithm type)."""
    meta = read_meta(labels)
    made_by = meta.get("maskgen")
    if isinstance(made_by, dict) and not made_by.get("edited"):
        meta["maskgen"] = MaskGenRecord(**{**made_by, "edited": True})  # type: ignore[typeddict-item]
        labels.metadata = with_meta(labels.metadata, meta)
