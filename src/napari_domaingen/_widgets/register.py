"""Dock widget: register a moving image layer onto a fixed one (*Plugins ▸ Register*).

Thin by design: it collects the layers and options, runs :func:`~napari_domaingen.core.jobs.register.register_arrays`
through its job runner and shows what comes back on the fixed layer's grid: the moved image (a blend slider fades
it over the fixed one), the moved labels, a checkerboard of fixed and moved, and the displacement in mm. *Save
transform…* writes ``affine.mat`` (and ``warp.nii.gz``) with their inverses into a folder, off the GUI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label, PushButton
from qtpy.QtWidgets import QComboBox, QFileDialog, QSizePolicy, QWidget

from .._napari.layer_meta import read_meta, with_meta
from .._napari.layers import geometry_kwargs
from ..core.jobs.register import RegisterArrays, RegisteredArrays, register_arrays
from ..core.register import FEATURE_CHOICES, STAGES, RegisterSettings, robust_range
from ..io.geometry import display_affine_from_layer
from ._choices import default_other, follow_layer_list, same_layer, volume_layers
from ._jobs import JobRunner, button_busy, label_status, set_status, show_problem
from ._layout import scroll_layout
from ._outputs import OutputLayers

if TYPE_CHECKING:
    import napari

#: key in ``metadata["domaingen"]`` marking the layers this widget made (they are not offered as inputs)
OUTPUT_KEY = "register"
FEATURE_TEXT = {
    "auto": "auto (anatomix+MIND-SSC if weights, else MIND-SSC)",
    "anatomix+mindssc": "anatomix + MIND-SSC",
    "mindssc": "MIND-SSC (no weights)",
    "anatomix": "anatomix",
    "intensity": "intensity (same contrast)",
}


def _is_output(layer: Any) -> bool:
    return OUTPUT_KEY in read_meta(layer)


class RegisterWidget(QWidget):
    """Register a moving volume onto a fixed one; outputs on the fixed grid."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: RegisteredArrays | None = None
        self._started: tuple[Any, Any, Any] | None = None  # the layers of the run under way (fixed, moving, labels)
        self._outputs = OutputLayers(self.viewer)
        self._fixed = ComboBox(label="fixed", choices=self._images, nullable=False, tooltip="the grid results are on")
        self._moving = ComboBox(label="moving", choices=self._images, nullable=False, tooltip="the volume to move")
        self._labels = ComboBox(
            label="moving labels", choices=self._label_layers, nullable=True, tooltip="labels on the moving grid"
        )
        self._features = ComboBox(
            label="features",
            choices=[(FEATURE_TEXT[c], c) for c in FEATURE_CHOICES],
            value="auto",
            tooltip="features of the deformable stage; rigid and affine use the intensities' mutual information",
        )
        self._stages = {s: CheckBox(text=s, value=True) for s in STAGES}
        stage_row = Container(widgets=list(self._stages.values()), layout="horizontal", labels=False, label="stages")
        self._run = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._blend = FloatSlider(label="blend", value=0.5, min=0.0, max=1.0, tooltip="moved image opacity over fixed")
        self._save = PushButton(text="Save transform…", enabled=False)
        self._status, self._summary = Label(value=""), Label(value="")
        for label in (self._status, self._summary):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._container = Container(
            widgets=[
                self._fixed,
                self._moving,
                self._labels,
                self._features,
                stage_row,
                Container(widgets=[self._run, self._cancel_button], layout="horizontal", labels=False),
                self._status,
                self._summary,
                self._blend,
                self._save,
            ]
        )
        for combo in (self._fixed, self._moving, self._labels, self._features):
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.native.setMinimumContentsLength(12)
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addStretch(1)
        self.runner = JobRunner(label_status(self._status), button_busy(self._run, self._cancel_button), self._show)
        self.runner.bind(self, self.viewer)
        self._run.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self._blend.changed.connect(self._on_blend)
        self._save.changed.connect(self.save_transform)
        follow_layer_list(self.viewer, self._refresh)
        self._default_moving()

    # ------------------------------------------------------------------------------------------- parameters

    def _images(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer, keep=lambda layer: not _is_output(layer))

    def _label_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        layers = self.viewer.layers
        return [(lay.name, lay) for lay in layers if isinstance(lay, Labels) and lay.ndim == 3 and not _is_output(lay)]

    def _default_moving(self) -> None:
        default_other(self._moving, self._fixed.value, self._images())

    def _refresh(self) -> None:
        for combo in (self._fixed, self._moving, self._labels):
            combo.reset_choices()
        self._default_moving()

    def settings(self) -> RegisterSettings:
        """The options as typed settings (``ValueError`` when no stage is ticked)."""
        stages = tuple(s for s, box in self._stages.items() if box.value)
        return RegisterSettings(stages=stages, features=self._features.value)

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        return self.runner.worker

    def run(self, _value: Any = None) -> None:
        """Check the inputs, then start the registration (no-op while one runs)."""
        if self.runner.is_running:
            return
        fixed, moving, labels = self._fixed.value, self._moving.value, self._labels.value
        if fixed is None or moving is None:
            show_problem(self._status, "add two 3D image layers (fixed and moving) first")
            return
        if same_layer(fixed, moving):
            show_problem(self._status, f"fixed and moving are the same layer ({fixed.name}): pick two")
            return
        try:
            settings = self.settings()
            arrays = RegisterArrays(
                fixed.data,
                display_affine_from_layer(fixed),
                moving.data,
                display_affine_from_layer(moving),
                None if labels is None else labels.data,
                (fixed.name, moving.name),
            )
        except ValueError as exc:
            show_problem(self._status, str(exc))
            return
        self._started = (fixed, moving, labels)

        def job(cancel: Any) -> Any:
            result = yield from register_arrays(arrays, settings, cancel)
            limits = robust_range(result.moved, result.moved != 0, (1.0, 99.5))  # without the zero background
            return result, limits, result.registration.transform.folds()  # both off the GUI thread

        self.runner.start(
            job,
            f"register {moving.name} → {fixed.name}",
            inputs=[layer for layer in (fixed, moving, labels) if layer is not None],
        )

    def cancel(self, _value: Any = None) -> None:
        """Stop the registration at its next iteration."""
        self.runner.cancel()

    def _show(self, done: tuple[RegisteredArrays, tuple[float, float], int]) -> None:
        result, limits, folds = done
        assert self._started is not None  # the runner calls back only for a run started here
        fixed, moving, labels = self._started
        self.result = result
        geometry = geometry_kwargs(fixed)
        registration = result.registration

        def put(role: str, kind: str, data: np.ndarray, name: str, **style: Any) -> Any:
            meta = read_meta(geometry["metadata"])
            meta[OUTPUT_KEY] = {"role": role, "fixed": fixed.name, "moving": moving.name}
            kwargs = {**geometry, "metadata": with_meta(geometry["metadata"], meta)}
            return self._outputs.put(role, kind, data, name, **kwargs, **style)

        put("checkerboard", "image", result.checkerboard, f"checkerboard {fixed.name} | {moving.name}", visible=False)
        put("displacement", "image", result.displacement_mm, f"{moving.name} displacement (mm)",
            colormap="magma", visible=False)  # fmt: skip
        put("moved", "image", result.moved, f"{moving.name} on {fixed.name}", colormap="magenta",
            blending="additive", opacity=float(self._blend.value), contrast_limits=limits)  # fmt: skip
        if result.moved_labels is not None and labels is not None:
            put("labels", "labels", result.moved_labels, f"{labels.name} on {fixed.name}")
        fixed.colormap = "green"
        self._save.enabled = True
        set_status(
            self._summary,
            f"{' + '.join(registration.stages)} on {registration.features} features ({registration.features_reason});"
            f" {registration.seconds:.0f} s; {folds} folded voxels; largest displacement "
            f"{float(result.displacement_mm.max()):.1f} mm",
        )
        set_status(self._status, "done: fixed in green, moved in magenta (grey where they agree)")

    def _on_blend(self, value: float) -> None:
        layer = self._outputs.get("moved")
        if layer is not None:
            layer.opacity = float(value)

    # ------------------------------------------------------------------------------------------- saving

    def save_transform(self, _value: Any = None, folder: str | Path | None = None) -> None:
        """Write the last transform into ``folder`` (asked for when not given), in a worker."""
        if self.result is None or self.runner.is_running:
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the transform into a folder")
            if not folder:
                return
        transform = self.result.registration.transform

        def job(_cancel: Any):
            yield {"stage": "save", "fraction": 0.5, "message": f"writing the transform into {folder}"}
            return transform.write(folder)

        self.runner.start(job, "save transform", on_result=self._saved)

    def _saved(self, written: list[Path]) -> None:
        set_status(self._status, f"saved {', '.join(p.name for p in written)} in {written[0].parent}")
