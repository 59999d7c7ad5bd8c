"""Dock widget: train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model on (image, labels) pairs.

Thin by design: it collects layer / NIfTI pairs and
:class:`~napari_domaingen.core.maskgen_training.TrainSettings`, runs the core's
:func:`~napari_domaingen.core.segmentation_data.labelled_volume` checks and
:func:`~napari_domaingen.core.maskgen_training.train` in a ``thread_worker``, and turns the progress dicts into a
progress bar, a status line, a loss / validation-Dice plot and the path of the last checkpoint written.

Kept light on the GUI thread, which must stay responsive through hours of training (see
``benchmarks/bench_maskgen_gui.py``): voxel-wise checks run in the worker, the plot is blitted at most
:data:`REDRAW_INTERVAL_MS` apart, the status lines have room reserved so that new text does not re-layout the
window, the progress bar is the dock's own (not napari's animated activity indicator) and the training's heavy
imports are done in the background when the widget opens.

The segment widget finds "the model just trained" through :func:`latest_checkpoint` (napari creates dock widgets
independently, so there is no signal between them).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..core.device import available_devices, resolve_device
from ..core.maskgen import DEFAULT_MASK_RATE, MASK_RATE_HELP
from ..core.maskgen_training import TrainResult, TrainSettings, train
from ..core.progress import Progress
from ..core.segmentation_data import (
    LabelledVolume,
    LabelMap,
    augmentation_names,
    default_class_name,
    labelled_volume,
    labelled_volume_from_files,
)
from ..core.training import format_seconds
from ..io.errors import DomaingenIOError
from ..io.geometry import same_grid
from ..models.segunet import PRESETS
from ._choices import ExtractorChoice, file_value, follow_layer_list, layer_key, same_layer, volume_layers
from ._layout import scroll_layout
from ._jobs import JobRunner, cancelled_training_message, set_status, show_fraction, show_problem
from ._loss_plot import LossPlot
from .compare import layer_display_affine

if TYPE_CHECKING:
    import napari

__all__ = ["LAST_TRAINED", "MaskGenTrainWidget", "latest_checkpoint"]

#: Checkpoints written by training runs in this session, oldest first (the last one is "the model just trained").
LAST_TRAINED: list[Path] = []
DEFAULT_OUTPUT = Path.home() / "napari-domaingen" / "maskgen.pt"
PRESET_HELP = {
    "auto": "auto: the 'paper' UNet on a CUDA GPU, the 'cpu' UNet otherwise",
    **{name: f"{name}: {preset.description}" for name, preset in PRESETS.items()},
}
METHODS = [("MaskGen (image + features)", "maskgen"), ("ERM baseline (image only)", "erm")]
#: imported lazily by a training run (MONAI's losses/transforms/metrics, torch._dynamo and sympy): ~2800 modules
WARM_UP_MODULES = ("monai.losses", "monai.transforms", "monai.inferers", "monai.metrics", "torch._dynamo")
_warm_up: list[threading.Thread] = []


def warm_up_imports() -> threading.Thread:
    """Import :data:`WARM_UP_MODULES` in a background thread, once per session, and return that thread.

    A first import holds the GIL in stretches of 0.2–0.4 s (unmarshalling big modules, loading extension
    modules), which froze the GUI that long during the first training run's preparation; done when the widget
    opens instead, the run starts 3–4 s earlier and the hitches fall while the user is still choosing parameters.
    """
    if not _warm_up:

        def work() -> None:
            for name in WARM_UP_MODULES:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 - an optional speed-up: the run imports (and reports) it again
                    pass

        thread = threading.Thread(target=work, name="domaingen-warm-up")
        thread.start()
        _warm_up.append(thread)
    return _warm_up[0]


def latest_checkpoint() -> Path | None:
    """The checkpoint written last by a training run of this session (finished or cancelled), if it still exists."""
    for path in reversed(LAST_TRAINED):
        if path.is_file():
            return path
    return None


def _remember(path: Path) -> None:
    if path in LAST_TRAINED:
        LAST_TRAINED.remove(path)
    LAST_TRAINED.append(path)


def labels_layers(viewer: Any) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's 3D Labels layers."""
    from napari.layers import Labels

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Labels) and layer.ndim == 3]


def layer_class_names(layer: Any) -> dict[int, str]:
    """Label value → class name from a Labels layer's ``features`` table: its ``name`` column, with label values
    from its ``index`` column or, without one, row ``i`` ↔ value ``i``. Empty without a ``name`` column."""
    features = getattr(layer, "features", None)
    if features is None or "name" not in getattr(features, "columns", ()):
        return {}
    values = features["index"] if "index" in features.columns else range(len(features))
    return {int(value): str(name) for value, name in zip(values, features["name"])}


def class_names_for(values: Sequence[int], known: dict[int, str]) -> tuple[str, ...] | None:
    """Names of the label ``values`` (sorted, background first): ``known`` ones, the core's defaults for the rest;
    ``None`` (all defaults) when nothing is known."""
    if not known:
        return None
    return tuple(known.get(int(v), default_class_name(v)) for v in values)


@dataclass
class PairSnapshot:
    """What a training volume is made of, taken from an (Image, Labels) layer pair on the GUI thread (cheap: no
    copy, no pass over the voxels); :meth:`build` checks and prepares it, off the GUI thread for big volumes.

    ``spacing`` = the image layer's ``scale``; ``*_affine``: the layers' (4, 4) display affines.
    """

    image: Any
    labels: Any
    name: str
    spacing: tuple[float, ...]
    image_affine: np.ndarray
    labels_affine: np.ndarray

    @classmethod
    def of(cls, image: Any, labels: Any) -> PairSnapshot:
        name = f"{image.name} + {labels.name}"
        try:
            image_affine, labels_affine = layer_display_affine(image), layer_display_affine(labels)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        return cls(image.data, labels.data, name, tuple(float(s) for s in image.scale), image_affine, labels_affine)

    def build(self) -> LabelledVolume:
        """The checked training volume; ``ValueError`` saying what is wrong."""
        return labelled_volume(
            np.asarray(self.image), np.asarray(self.labels), name=self.name, spacing=self.spacing,
            image_affine=self.image_affine, labels_affine=self.labels_affine,
        )


def layer_pair_volume(image: Any, labels: Any) -> LabelledVolume:
    """A checked training volume from an (Image, Labels) layer pair; ``ValueError`` saying what is wrong."""
    return PairSnapshot.of(image, labels).build()


@dataclass
class TrainingPair:
    """One row of the training table: an (Image, Labels) layer pair, or a NIfTI pair checked when it was added."""

    image: Any
    labels: Any
    volume: LabelledVolume | None = None  # file pairs only: read and checked once

    @property
    def is_file(self) -> bool:
        return self.volume is not None

    @property
    def names(self) -> tuple[str, str]:
        if self.is_file:
            return Path(self.image).name, Path(self.labels).name
        return self.image.name, self.labels.name

    def snapshot(self) -> PairSnapshot | LabelledVolume:
        """The file pair's volume, or a snapshot of the layer pair to build in the worker."""
        return self.volume if self.volume is not None else PairSnapshot.of(self.image, self.labels)

    def build(self) -> LabelledVolume:
        return self.volume if self.volume is not None else layer_pair_volume(self.image, self.labels)

    def class_names(self) -> dict[int, str]:
        return {} if self.is_file else layer_class_names(self.labels)


def _train_job(
    pairs: Sequence[PairSnapshot | LabelledVolume],
    validation_pairs: Sequence[PairSnapshot | LabelledVolume],
    known_names: dict[int, str],
    out: Path,
    settings: TrainSettings,
    resume: Path | None,
    init: Path | None,
    cancel: Callable[[], bool],
) -> Generator[Progress, None, TrainResult]:
    """Worker body: check and prepare the pairs (a pass over every voxel: not on the GUI thread), name the classes
    found, then the core training job."""
    yield {"stage": "prepare", "fraction": 0.0, "message": "checking the training data"}
    volumes = [p if isinstance(p, LabelledVolume) else p.build() for p in pairs]
    validation = [p if isinstance(p, LabelledVolume) else p.build() for p in validation_pairs]
    names = class_names_for(LabelMap.from_volumes(volumes).values, known_names)
    job = train(volumes, out, replace(settings, class_names=names), validation=validation, resume=resume, init=init,
                cancel=cancel)
    return (yield from job)


class MaskGenTrainWidget(QWidget):
    """Train a MaskGen (image + frozen anatomix features, view masking) or ERM segmentation model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_result: TrainResult | None = None
        self.last_checkpoint: Path | None = None
        self.pairs: list[TrainingPair] = []
        self._run_info: dict[str, Any] = {}

        # ---- data
        self._image = ComboBox(label="image", choices=self._image_layers, nullable=False,
                               tooltip="a 3D image layer to learn from")
        self._labels = ComboBox(label="labels", choices=self._labels_layers, nullable=False,
                                tooltip="its 3D Labels layer (same grid); 0 = background, other values = classes")
        self._add_pair = PushButton(text="Add pair")
        self._remove_pair = PushButton(text="Remove selected")
        self._table = QTableWidget(0, 2)
        self._table.setHorizontalHeaderLabels(["image", "labels"])
        self._table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self._table.verticalHeader().setVisible(False)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setMaximumHeight(110)
        self._table.setToolTip("training pairs; with an empty list, Start trains on the pair selected above")
        self._image_file = FileEdit(label="image file", mode="r", filter="*.nii *.nii.gz", nullable=True)
        self._labels_file = FileEdit(label="labels file", mode="r", filter="*.nii *.nii.gz", nullable=True)
        self._add_files = PushButton(text="Add file pair")
        self._val_image = ComboBox(label="validation image", choices=self._image_layers, nullable=True,
                                   tooltip="optional: an image held out from training, scored (Dice) during training")
        self._val_labels = ComboBox(label="validation labels", choices=self._labels_layers, nullable=True)

        # ---- method and model
        self._method = ComboBox(label="method", choices=METHODS, value="maskgen",
                                tooltip="MaskGen: image + frozen anatomix features with view masking; "
                                        "ERM: the same UNet on the image alone (the paper's baseline)")
        self._extractor = ExtractorChoice()
        self._weights, self._weights_file, self._layer = (
            self._extractor.weights, self._extractor.weights_file, self._extractor.layer
        )
        self._mask_rate = FloatSpinBox(label="view masking p", value=DEFAULT_MASK_RATE, min=0.0, max=0.95, step=0.05,
                                       tooltip=MASK_RATE_HELP)
        self._preset = ComboBox(label="UNet preset", choices=list(PRESET_HELP), value="auto",
                                tooltip="\n".join(PRESET_HELP.values()))
        for index, text in enumerate(PRESET_HELP.values()):
            self._preset.native.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)
        self._base = SpinBox(label="UNet width (0: preset)", value=0, min=0, max=64,
                             tooltip="channels of the first level; 0 = the preset's (paper 20, cpu 8)")
        self._levels = SpinBox(label="UNet levels (0: preset)", value=0, min=0, max=6,
                               tooltip="number of 2× poolings; 0 = the preset's (paper 5, cpu 4)")
        defaults = TrainSettings()
        self._crop = SpinBox(label="crop", value=defaults.crop, min=16, max=256, step=16,
                             tooltip="training crop edge in voxels, also the inference window (paper: 128 at 1 mm); "
                                     "a multiple of 32 (≥ 64) for 'paper', of 16 (≥ 32) for 'cpu'")
        self._steps = SpinBox(label="steps", value=defaults.steps, min=1, max=1_000_000,
                              tooltip="optimiser steps; the learning rate follows a cosine to 0 over them")
        self._lr = FloatSpinBox(label="learning rate", value=defaults.lr, min=1e-5, max=0.1, step=1e-5,
                                tooltip="AdamW learning rate (paper 2e-4; weight decay 1e-5)")
        self._batch = SpinBox(label="batch size", value=defaults.batch_size, min=1, max=64,
                              tooltip="crops per step (paper 4; 2 fits most laptops)")
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._augment = CheckBox(text="augment", value=defaults.augment,
                                 tooltip="the MaskGen augmentations, each with p = 0.33: "
                                         + "; ".join(augmentation_names(True)))
        self._flips = CheckBox(text="flips / 90° rotations", value=defaults.flips,
                               tooltip="turn off for left/right-sensitive anatomy")
        self._checkpoint_every = SpinBox(label="checkpoint every", value=defaults.checkpoint_every, min=0, max=100_000,
                                         tooltip="steps between checkpoints (0: only at the end)")
        self._validate_every = SpinBox(label="validate every", value=defaults.validate_every, min=0, max=100_000,
                                       tooltip="steps between validation Dice scores (0: only at the end)")
        self._output = FileEdit(label="save model to", mode="w", filter="*.pt", value=DEFAULT_OUTPUT,
                                tooltip="the checkpoint written during and at the end of training (atomically)")
        self._init = FileEdit(label="start from", mode="r", filter="*.pt *.pth", nullable=True,
                              tooltip="optional: fine-tune this model (its network, classes and extractor) on the "
                                      "data above with the settings here")
        self._resume = CheckBox(text="resume the run saved in 'save model to'",
                                tooltip="continue an interrupted run exactly (its settings, optimiser and schedule); "
                                        "the data must be the same classes")

        # ---- running and feedback
        self._start = PushButton(text="Start")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(value=0, min=0, max=1000)
        self._status = Label(value="")
        self._checkpoint_line = Label(value="")
        self._cost = Label(value="")
        for label, lines in ((self._status, 3), (self._checkpoint_line, 3), (self._cost, 3)):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            # room for a few lines from the start: texts changing every step do not re-layout the window
            label.native.setMinimumHeight(lines * label.native.fontMetrics().lineSpacing())
        self.plot = LossPlot()

        self._container = Container(
            widgets=[
                self._image, self._labels,
                Container(widgets=[self._add_pair, self._remove_pair], layout="horizontal", labels=False),
            ]
        )
        self._files = Container(widgets=[self._image_file, self._labels_file, self._add_files])
        self._parameters = Container(
            widgets=[
                self._val_image, self._val_labels, self._method, self._weights, self._weights_file, self._layer,
                self._mask_rate, self._preset, self._base, self._levels, self._crop, self._steps, self._lr,
                self._batch, self._device,
                Container(widgets=[self._augment, self._flips], layout="horizontal", labels=False),
                self._checkpoint_every, self._validate_every, self._output, self._init, self._resume,
                Container(widgets=[self._start, self._cancel_button], layout="horizontal", labels=False),
                self._progress, self._status, self._checkpoint_line, self._cost,
            ]
        )
        for combo in (self._image, self._labels, self._val_image, self._val_labels, self._method, self._weights,
                      self._layer):  # let the dock be narrow
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addWidget(self._table)
        layout.addWidget(self._files.native)
        layout.addWidget(self._parameters.native)
        layout.addWidget(self.plot)
        layout.addStretch(1)

        # the progress bar is the dock's own: napari's activity indicator would repaint the window ~33×/s for hours
        self.runner = JobRunner(self._show_status, self._set_busy, self._on_result, on_yield=self._on_progress,
                                activity=False)
        self._add_pair.changed.connect(self.add_pair)
        self._remove_pair.changed.connect(self.remove_selected)
        self._add_files.changed.connect(self.add_file_pair)
        self._start.changed.connect(self.start)
        self._cancel_button.changed.connect(self.cancel)
        self._method.changed.connect(self._update_enabled)
        self._resume.changed.connect(self._update_enabled)
        for widget in (self._preset, self._device):
            widget.changed.connect(self._update_cost)
        self._steps.changed.connect(lambda steps: self.plot.prepare(int(steps)))
        self.plot.prepare(int(self._steps.value))
        self._update_enabled()
        self._update_cost()
        follow_layer_list(self.viewer, self._on_layers_changed)
        warm_up_imports()

    # ------------------------------------------------------------------------------------------- data

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer)

    def _labels_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return labels_layers(self.viewer)

    def _on_layers_changed(self) -> None:
        for combo in (self._image, self._labels, self._val_image, self._val_labels):
            combo.reset_choices()
        present = {layer_key(layer) for layer in self.viewer.layers}
        kept = [p for p in self.pairs
                if p.is_file or (layer_key(p.image) in present and layer_key(p.labels) in present)]
        if len(kept) != len(self.pairs):
            self.pairs = kept
            self._refresh_table()

    def _refresh_table(self) -> None:
        self._table.setRowCount(len(self.pairs))
        for row, pair in enumerate(self.pairs):
            for column, text in enumerate(pair.names):
                item = QTableWidgetItem(text)
                item.setToolTip(str(pair.image if column == 0 else pair.labels) if pair.is_file else text)
                self._table.setItem(row, column, item)

    def add_pair(self, _value: Any = None) -> None:
        """Add the (image, labels) layers selected above to the training pairs, after checking them."""
        image, labels = self._image.value, self._labels.value
        if image is None or labels is None:
            self._show_problem("choose a 3D image layer and its 3D labels layer first")
            return
        if any(not p.is_file and same_layer(p.image, image) and same_layer(p.labels, labels) for p in self.pairs):
            set_status(self._status, f"{image.name} + {labels.name} is already in the list")
            return
        try:
            layer_pair_volume(image, labels)
        except ValueError as err:
            self._show_problem(str(err))
            return
        self.pairs.append(TrainingPair(image, labels))
        self._refresh_table()
        set_status(self._status, f"{len(self.pairs)} training pair(s)")

    def add_file_pair(self, _value: Any = None) -> None:
        """Read, check and add the NIfTI (image, labels) file pair chosen above."""
        paths = [file_value(self._image_file.value), file_value(self._labels_file.value)]
        if None in paths:
            self._show_problem("choose an image file and its labels file (NIfTI) first")
            return
        try:
            volume = labelled_volume_from_files(*paths)  # type: ignore[arg-type]
        except (OSError, ValueError, DomaingenIOError) as err:
            self._show_problem(str(err))
            return
        self.pairs.append(TrainingPair(paths[0], paths[1], volume))
        self._refresh_table()
        set_status(self._status, f"{len(self.pairs)} training pair(s)")

    def remove_selected(self, _value: Any = None) -> None:
        """Remove the selected rows of the training table (the last row when none is selected)."""
        rows = sorted({index.row() for index in self._table.selectedIndexes()}) or [len(self.pairs) - 1]
        self.pairs = [pair for row, pair in enumerate(self.pairs) if row not in rows]
        self._refresh_table()

    def _training_pairs(self) -> list[TrainingPair]:
        if self.pairs:
            return list(self.pairs)
        if self._image.value is not None and self._labels.value is not None:
            return [TrainingPair(self._image.value, self._labels.value)]
        return []

    def _validation_pair(self) -> TrainingPair | None:
        image, labels = self._val_image.value, self._val_labels.value
        if image is None and labels is None:
            return None
        if image is None or labels is None:
            raise ValueError("validation: choose both a validation image and its labels, or neither")
        return TrainingPair(image, labels)

    # ------------------------------------------------------------------------------------------- parameters

    def _update_enabled(self, _value: Any = None) -> None:
        maskgen = self._method.value == "maskgen"
        for widget in (self._weights, self._weights_file, self._layer, self._mask_rate):
            widget.enabled = maskgen
        self._init.enabled = not self._resume.value

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
            steps = int(self._run_info.get("steps", self._steps.value))
            parts.append(f"on the CPU one step takes {seconds_per_step:.1f} s (batch {self._run_info.get('batch')}, "
                         f"crop {self._run_info.get('crop')}³): {steps} steps ≈ "
                         f"{format_seconds(seconds_per_step * steps)}")
        if self._preset.value == "paper":
            parts.append("the 'paper' UNet (36.9M parameters) is meant for a GPU: choose the 'cpu' preset "
                         "(≈7× less compute per voxel) on this machine")
        set_status(self._cost, "; ".join(parts))

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        """The worker of the last run (for tests and scripts)."""
        return self.runner.worker

    def _show_problem(self, message: str) -> None:
        show_problem(self._status, message)

    def start(self, _value: Any = None) -> None:
        """Check the data and start training (no-op while a run is under way); problems go to the status line."""
        if self.runner.is_running:
            return
        pairs = self._training_pairs()
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
        try:  # cheap checks here; the voxel-wise ones (empty labels, values, NaN) run first in the worker
            snapshots = [pair.snapshot() for pair in pairs]
            validation_pair = self._validation_pair()
            validation = [validation_pair.snapshot()] if validation_pair is not None else []
            for snapshot in [*snapshots, *validation]:
                if isinstance(snapshot, PairSnapshot) and not same_grid(
                    np.shape(snapshot.image), snapshot.image_affine, np.shape(snapshot.labels),
                    snapshot.labels_affine, atol=1e-3,
                ):
                    snapshot.build()  # raises the core's message about the grids
            known: dict[int, str] = {}
            for pair in pairs:
                known.update(pair.class_names())
            settings = self.settings()
            settings.check()
        except ValueError as err:
            self._show_problem(str(err))
            return
        self._run_info = {"out": out, "kept_step": None, "step": 0, "steps": settings.steps,
                          "batch": settings.batch_size, "crop": settings.crop}
        self.plot.prepare(settings.steps)
        self._progress.value = 0
        set_status(self._checkpoint_line, "")
        self._update_cost()
        what = "resuming" if resume else "fine-tuning" if init else "training"
        method = "MaskGen" if settings.use_features else "ERM"
        self.runner.start(
            lambda cancel: _train_job(snapshots, validation, known, out, settings, resume, init, cancel),
            f"{what} {method} on {len(snapshots)} volume(s)",
        )

    def _set_busy(self, busy: bool) -> None:
        self._start.enabled = not busy
        self._cancel_button.enabled = busy

    def cancel(self, _value: Any = None) -> None:
        """Stop training between steps; the last checkpoint written stays intact."""
        self.runner.cancel()

    def _show_status(self, text: str) -> None:
        if text == "cancelled":
            info = self._run_info
            text = cancelled_training_message(info.get("step", 0), info.get("steps"), info.get("kept_step"),
                                              info.get("out"), "tick 'resume' to continue it")
        set_status(self._status, text)

    def _on_progress(self, update: Progress) -> None:
        """A progress dict of the running job → plot, checkpoint line, CPU cost line."""
        show_fraction(self._progress, update)
        if (update.get("history") or {}).get("loss"):  # a resumed run: its losses so far
            self.plot.reset(update["history"], int(update.get("steps", 1)))
        elif update.get("stage") == "train" and int(update.get("steps", 0)) not in (0, self.plot.total_steps):
            self.plot.prepare(int(update["steps"]))  # resumed with the checkpoint's own number of steps
        if "spec" in update:
            set_status(self._checkpoint_line, f"model: {update['spec']}")
        if "steps" in update:
            self._run_info["steps"] = int(update["steps"])
        if update.get("stage") in ("train", "validate") and "loss" in update:
            self._run_info["step"] = int(update["step"])
            self.plot.add_loss(int(update["step"]), float(update["loss"]))
        if update.get("stage") == "validate" and "val_dice" in update:
            self.plot.add_dice(int(update["step"]), float(update["val_dice"]))
        if "checkpoint" in update:
            path = Path(update["checkpoint"])
            self.last_checkpoint = path
            self._run_info["kept_step"] = int(update.get("checkpoint_step", update.get("step", 0)))
            _remember(path)
            text = f"checkpoint of step {self._run_info['kept_step']}/{update.get('steps')}: {path}"
            set_status(self._checkpoint_line, text)
        if "seconds_per_step" in update:
            self._update_cost(seconds_per_step=float(update["seconds_per_step"]))

    def _on_result(self, result: TrainResult) -> None:
        self.last_result = result
        self.last_checkpoint = Path(result.checkpoint)
        _remember(self.last_checkpoint)
        self.plot.redraw()
        set_status(
            self._status,
            f"done: {result.steps_done} steps in {format_seconds(result.seconds)}, final loss "
            f"{result.final_loss:.4f}; model saved to {result.checkpoint} (use it in MaskGen — segment)",
        )
