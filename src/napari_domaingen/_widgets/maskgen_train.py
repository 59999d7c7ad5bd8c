"""Dock widget: train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model on (image, labels) pairs.

Thin by design: it collects layer / NIfTI pairs (:mod:`.maskgen_pairs`) and
:class:`~napari_domaingen.core.maskgen_training.TrainSettings`; the shared :class:`~._training_panel.TrainingPanel`
runs :func:`~napari_domaingen.core.maskgen_training.train` in a ``thread_worker`` and turns the progress dicts into a
progress bar, a status line, a loss / validation-Dice plot (reset from the stored history on resume) and the paths
of the last checkpoint and of the best model (``MODEL.best.pt``, with a validation pair).

Kept light on the GUI thread, which must stay responsive through hours of training (see
``benchmarks/bench_maskgen_gui.py``): voxel-wise checks run in the worker, the plot is blitted at most
:data:`~._loss_plot.REDRAW_INTERVAL_MS` apart, the status lines have room reserved so that new text does not
re-layout the window, the progress bar is the dock's own (not napari's animated activity indicator) and the
training's heavy imports are done in the background when the widget opens.

The segment widget finds "the model just trained" (its last checkpoint and its best model) through
:func:`latest_models` (napari creates dock widgets independently, so there is no signal between them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QWidget

from ..core.device import available_devices, resolve_device
from ..core.maskgen import DEFAULT_MASK_RATE, MASK_RATE_HELP
from ..core.maskgen_pairs_job import PairTraining, train_pairs
from ..core.maskgen_training import TrainResult, TrainSettings
from ..core.segmentation_data import augmentation_names
from ..core.training import format_seconds
from ..errors import DomaingenError
from ..models.checkpoints import read_checkpoint
from ..models.segunet import PRESETS
from ..progress import Progress
from ._choices import ExtractorChoice, file_value
from ._jobs import set_status
from ._layout import scroll_layout
from ._pair_list import PairList
from ._training_panel import TrainingPanel
from .maskgen_pairs import (  # noqa: F401 - re-exported: the widget's helpers lived here
    WARM_UP_MODULES,
    PairSnapshot,
    TrainingPair,
    class_names_for,
    labels_layers,
    layer_class_names,
    layer_pair_volume,
    snapshot_pairs,
    warm_up_imports,
)

if TYPE_CHECKING:
    import napari

__all__ = ["LAST_TRAINED", "MaskGenTrainWidget", "latest_checkpoint", "latest_models"]

#: (checkpoint, best model or None) written by training runs in this session, oldest first (the last one is "the
#: model just trained")
LAST_TRAINED: list[tuple[Path, Path | None]] = []
DEFAULT_OUTPUT = Path.home() / "napari-domaingen" / "maskgen.pt"
PRESET_HELP = {
    "auto": "auto: the 'paper' UNet on a CUDA GPU, the 'cpu' UNet otherwise",
    **{name: f"{name}: {preset.description}" for name, preset in PRESETS.items()},
}
METHODS = [("MaskGen (image + features)", "maskgen"), ("ERM baseline (image only)", "erm")]
PATIENCE_HELP = (
    "validations without improvement before stopping (0 = off); the best model so far is kept as MODEL.best.pt"
)


def latest_models() -> dict[str, Path]:
    """The model trained last in this session (finished or cancelled) whose checkpoint still exists:
    ``{"last": checkpoint}`` and ``"best"``: its best model by validation, when the run wrote one. Empty if none."""
    for path, best in reversed(LAST_TRAINED):
        if path.is_file():
            return {"last": path, **({"best": best} if best is not None and best.is_file() else {})}
    return {}


def latest_checkpoint() -> Path | None:
    """The checkpoint written last by a training run of this session (finished or cancelled), if it still exists."""
    return latest_models().get("last")


def _remember(path: Path, best: Path | None = None) -> None:
    LAST_TRAINED[:] = [entry for entry in LAST_TRAINED if entry[0] != path]
    LAST_TRAINED.append((path, best))


class MaskGenTrainWidget(QWidget):
    """Train a MaskGen (image + frozen anatomix features, view masking) or ERM segmentation model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer

        # ---- data: the pair list (layers or NIfTI files) and the validation pair
        self.data = PairList(self.viewer, lambda message: self._show_problem(message), lambda text: self._say(text))
        for name in (
            "_image",
            "_labels",
            "_add_pair",
            "_remove_pair",
            "_table",
            "_image_file",
            "_labels_file",
            "_add_files",
            "_val_image",
            "_val_labels",
        ):
            setattr(self, name, getattr(self.data, name))
        self.add_pair, self.add_file_pair, self.remove_selected = (
            self.data.add_pair,
            self.data.add_file_pair,
            self.data.remove_selected,
        )

        # ---- method and model
        self._method = ComboBox(
            label="method",
            choices=METHODS,
            value="maskgen",
            tooltip="MaskGen: image + frozen anatomix features with view masking; "
            "ERM: the same UNet on the image alone (the paper's baseline)",
        )
        self._extractor = ExtractorChoice()
        self._weights, self._weights_file, self._layer = (
            self._extractor.weights,
            self._extractor.weights_file,
            self._extractor.layer,
        )
        self._mask_rate = FloatSpinBox(
            label="view masking p", value=DEFAULT_MASK_RATE, min=0.0, max=0.95, step=0.05, tooltip=MASK_RATE_HELP
        )
        self._preset = ComboBox(
            label="UNet preset", choices=list(PRESET_HELP), value="auto", tooltip="\n".join(PRESET_HELP.values())
        )
        for index, text in enumerate(PRESET_HELP.values()):
            self._preset.native.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)
        self._base = SpinBox(
            label="UNet width (0: preset)",
            value=0,
            min=0,
            max=64,
            tooltip="channels of the first level; 0 = the preset's (paper 20, cpu 8)",
        )
        self._levels = SpinBox(
            label="UNet levels (0: preset)",
            value=0,
            min=0,
            max=6,
            tooltip="number of 2× poolings; 0 = the preset's (paper 5, cpu 4)",
        )
        defaults = TrainSettings()
        self._crop = SpinBox(
            label="crop",
            value=defaults.crop,
            min=16,
            max=256,
            step=16,
            tooltip="training crop edge in voxels, also the inference window (paper: 128 at 1 mm); "
            "a multiple of 32 (≥ 64) for 'paper', of 16 (≥ 32) for 'cpu'",
        )
        self._steps = SpinBox(
            label="steps",
            value=defaults.steps,
            min=1,
            max=1_000_000,
            tooltip="optimiser steps; the learning rate follows a cosine to 0 over them",
        )
        self._lr = FloatSpinBox(
            label="learning rate",
            value=defaults.lr,
            min=1e-5,
            max=0.1,
            step=1e-5,
            tooltip="AdamW learning rate (paper 2e-4; weight decay 1e-5)",
        )
        self._batch = SpinBox(
            label="batch size",
            value=defaults.batch_size,
            min=1,
            max=64,
            tooltip="crops per step (paper 4; 2 fits most laptops)",
        )
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._augment = CheckBox(
            text="augment",
            value=defaults.augment,
            tooltip="the MaskGen augmentations, each with p = 0.33: " + "; ".join(augmentation_names(True)),
        )
        self._flips = CheckBox(
            text="flips / 90° rotations", value=defaults.flips, tooltip="turn off for left/right-sensitive anatomy"
        )
        self._checkpoint_every = SpinBox(
            label="checkpoint every",
            value=defaults.checkpoint_every,
            min=0,
            max=100_000,
            tooltip="steps between checkpoints (0: only at the end)",
        )
        self._validate_every = SpinBox(
            label="validate every",
            value=defaults.validate_every,
            min=0,
            max=100_000,
            tooltip="steps between validation Dice scores (0: only at the end)",
        )
        self._patience = SpinBox(label="patience", value=defaults.patience, min=0, max=10_000, tooltip=PATIENCE_HELP)
        self._output = FileEdit(
            label="save model to",
            mode="w",
            filter="*.pt",
            value=DEFAULT_OUTPUT,
            tooltip="the checkpoint written during and at the end of training (atomically)",
        )
        self._init = FileEdit(
            label="start from",
            mode="r",
            filter="*.pt *.pth",
            nullable=True,
            tooltip="optional: fine-tune this model (its network, classes and extractor) on the "
            "data above with the settings here",
        )
        self._resume = CheckBox(
            text="resume the run saved in 'save model to'",
            tooltip="continue the run exactly (its settings, optimiser and schedule) to its own step count, shown "
            "in 'steps' when ticked; a larger 'steps' trains it further. The data must be the same classes",
        )

        # ---- running and feedback: the panel shared with the swap widget's fine-tuning
        self._cost = Label(value="")
        self.training = TrainingPanel(
            self.start,
            "tick 'resume' to continue it",
            on_progress=self._on_progress_extra,
            on_saved=_remember,
            on_result=lambda _result: " (use it in MaskGen — segment)",
            lines=(self._cost,),
        )
        self.runner, self.plot, self._on_progress = self.training.runner, self.training.plot, self.training.on_progress
        self.runner.bind(self, self.viewer)  # closing the dock stops the run (its last checkpoint is kept)
        self._start, self._cancel_button = self.training.start_button, self.training.cancel_button
        self._progress, self._status = self.training.progress, self.training.status
        self._checkpoint_line = self.training.checkpoint_line
        self._cost_info: dict[str, Any] = {}

        self._parameters = Container(
            widgets=[
                self._method,
                self._weights,
                self._weights_file,
                self._layer,
                self._mask_rate,
                self._preset,
                self._base,
                self._levels,
                self._crop,
                self._steps,
                self._lr,
                self._batch,
                self._device,
                Container(widgets=[self._augment, self._flips], layout="horizontal", labels=False),
                self._checkpoint_every,
                self._validate_every,
                self._patience,
                self._output,
                self._init,
                self._resume,
            ]
        )
        for combo in (self._method, self._weights, self._layer):  # let the dock be narrow
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        layout = scroll_layout(self)
        layout.addWidget(self.data)
        layout.addWidget(self._parameters.native)
        layout.addWidget(self.training)
        layout.addStretch(1)

        self._method.changed.connect(self._update_enabled)
        self._resume.changed.connect(self._on_resume)
        for widget in (self._preset, self._device):
            widget.changed.connect(self._update_cost)
        self.training.follow_steps(self._steps)
        self._update_enabled()
        self._update_cost()
        warm_up_imports()

    @property
    def pairs(self) -> list[TrainingPair]:
        """The training pairs listed (layers or files)."""
        return self.data.pairs

    @pairs.setter
    def pairs(self, pairs: list[TrainingPair]) -> None:
        self.data.pairs = list(pairs)
        self.data.refresh_table()

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return self.data.image_layers()

    def _say(self, text: str) -> None:
        set_status(self._status, text)

    # ------------------------------------------------------------------------------------------- parameters

    def _update_enabled(self, _value: Any = None) -> None:
        maskgen = self._method.value == "maskgen"
        for widget in (self._weights, self._weights_file, self._layer, self._mask_rate):
            widget.enabled = maskgen
        self._init.enabled = not self._resume.value

    def _on_resume(self, _value: Any = None) -> None:
        """Ticking 'resume' shows the stored run's step count in 'steps' (the count it continues to)."""
        self._update_enabled()
        out = file_value(self._output.value)
        if not self._resume.value or out is None or not out.is_file():
            return
        try:
            state = read_checkpoint(out).get("training", {})
            self._steps.value = int(state["steps"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # not a resumable model: Start says why

    def settings(self, class_names: tuple[str, ...] | None = None) -> TrainSettings:
        """The settings the controls describe."""
        weights, _ = self._extractor.choice()
        maskgen = self._method.value == "maskgen"
        return TrainSettings(
            use_features=maskgen,
            weights=weights,
            layer=self._layer.value,
            mask_rate=float(self._mask_rate.value) if maskgen else 0.0,
            preset=self._preset.value,
            base=int(self._base.value) or None,
            levels=int(self._levels.value) or None,
            crop=int(self._crop.value),
            steps=int(self._steps.value),
            batch_size=int(self._batch.value),
            lr=float(self._lr.value),
            augment=bool(self._augment.value),
            flips=bool(self._flips.value),
            device=self._device.value,
            checkpoint_every=int(self._checkpoint_every.value),
            validate_every=int(self._validate_every.value),
            patience=int(self._patience.value),
            class_names=class_names,
        )

    def _on_cpu(self) -> bool:
        try:
            return resolve_device(self._device.value).type == "cpu"
        except ValueError:
            return False

    def _update_cost(self, _value: Any = None, seconds_per_step: float | None = None) -> None:
        """The CPU advice line: what a step costs here, and the 'cpu' preset when 'paper' is chosen."""
        if not self._on_cpu():
            set_status(self._cost, "")
            return
        parts = []
        if seconds_per_step is not None:
            info = self._cost_info
            steps = int(self.training.info.get("steps", self._steps.value))
            parts.append(
                f"on the CPU one step takes {seconds_per_step:.1f} s (batch {info.get('batch')}, "
                f"crop {info.get('crop')}³): {steps} steps ≈ "
                f"{format_seconds(seconds_per_step * steps)}"
            )
        if self._preset.value == "paper":
            parts.append(
                "the 'paper' UNet (36.9M parameters) is meant for a GPU: choose the 'cpu' preset "
                "(≈7× less compute per voxel) on this machine"
            )
        set_status(self._cost, "; ".join(parts))

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        """The worker of the last run (for tests and scripts)."""
        return self.training.worker

    @property
    def last_result(self) -> TrainResult | None:
        """The result of the last run that finished (``checkpoint`` ``None``: it had nothing to do)."""
        return self.training.result  # type: ignore[return-value]

    @property
    def last_checkpoint(self) -> Path | None:
        """The checkpoint written last by this widget (also by a cancelled run)."""
        return self.training.last_checkpoint

    def _show_problem(self, message: str) -> None:
        self.training.show_problem(message)

    def start(self, _value: Any = None) -> None:
        """Check the data and start training (no-op while a run is under way); problems go to the status line."""
        if self.training.is_running:
            return
        pairs = self.data.training_pairs()
        if not pairs:
            self._show_problem("add an (image, labels) pair: a 3D image layer and its 3D labels layer")
            return
        out = file_value(self._output.value)
        if out is None:
            self._show_problem("choose where to save the model ('save model to')")
            return
        resume = out if self._resume.value else None
        if resume is not None and not resume.is_file():
            self._show_problem(f"nothing to resume: {resume} does not exist")
            return
        init = None if resume is not None else file_value(self._init.value)
        if init is not None and not init.is_file():
            self._show_problem(f"the model to start from does not exist: {init}")
            return
        try:  # cheap checks here; the voxel-wise ones run first in the worker
            snapshots, validation, known = snapshot_pairs(pairs, self.data.validation_pair())
            settings = self.settings()
            settings.check()
        except (ValueError, DomaingenError) as err:
            self._show_problem(str(err))
            return
        self._cost_info = {"batch": settings.batch_size, "crop": settings.crop}
        what = "resuming" if resume else "fine-tuning" if init else "training"
        method = "MaskGen" if settings.use_features else "ERM"
        run = PairTraining(snapshots, out, settings, validation, known, resume=resume, init=init)
        self.training.run(
            lambda cancel: train_pairs(run, cancel),
            f"{what} {method} on {len(snapshots)} volume(s)",
            out,
            settings.steps,
        )
        self._update_cost()

    def cancel(self, _value: Any = None) -> None:
        """Stop training between steps; the last checkpoint written stays intact."""
        self.training.cancel()

    def _on_progress_extra(self, update: Progress) -> None:
        """The CPU cost line follows the measured seconds per step."""
        if "seconds_per_step" in update:
            self._update_cost(seconds_per_step=float(update["seconds_per_step"]))
