"""The swap widget's fine-tune panel: fine-tune the current DGM-DR model on the two images.

Its own parameters (steps, learning rate, batch size, where to save) behind a toggle; the run itself — Start /
Cancel, progress, status, checkpoint line and loss plot — is the :class:`~._training_panel.TrainingPanel` shared
with *MaskGen — train*. The owner says what to train on (:data:`InputsFn`) and what to do with the new model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, FileEdit, FloatSpinBox, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QToolButton, QVBoxLayout, QWidget

from ..core.device import resolve_device
from ..core.swap_model import DEFAULT_MODEL
from ..core.swap_training import SwapTrainResult, SwapTrainSettings, fine_tune_job
from ._choices import file_value
from ._training_panel import TrainingPanel

__all__ = ["DEFAULT_FINETUNE_OUTPUT", "FinetunePanel"]

DEFAULT_FINETUNE_OUTPUT = Path.home() / ".cache" / "napari-domaingen" / "swap-finetuned.pt"
FINETUNE_LR = 1e-4  # a tenth of the from-scratch rate: adapt the shipped model without forgetting it
FINETUNE_STEPS = 200
FINETUNE_BATCH = 8
#: () → (the image layers to train on, the model to start from, the device); ``ValueError`` saying what is wrong
InputsFn = Callable[[], tuple[list[Any], str, str]]


class FinetunePanel(QWidget):
    """A toggle opening the fine-tuning parameters and the shared training panel. ``inputs()``: what to train
    on; ``on_trained(result) -> str``: use the new model (returns a note for the status line)."""

    def __init__(self, inputs: InputsFn, on_trained: Callable[[SwapTrainResult], str]) -> None:
        super().__init__()
        self._inputs = inputs
        self.steps = SpinBox(
            label="steps",
            value=FINETUNE_STEPS,
            min=1,
            max=1_000_000,
            tooltip="optimiser steps (cosine learning-rate schedule after 20 warm-up steps)",
        )
        self.lr = FloatSpinBox(
            label="learning rate",
            value=FINETUNE_LR,
            min=1e-6,
            max=1e-2,
            step=1e-5,
            tooltip="AdamW learning rate; 1e-4 for fine-tuning (training from scratch uses 1e-3)",
        )
        self.batch = SpinBox(
            label="batch size",
            value=FINETUNE_BATCH,
            min=1,
            max=64,
            tooltip="random 64 px crops per step (flips and 90° rotations)",
        )
        self.output = FileEdit(
            label="save model to",
            mode="w",
            filter="*.pt",
            value=DEFAULT_FINETUNE_OUTPUT,
            tooltip="the fine-tuned model (written atomically every 50 steps and at the end)",
        )
        self.training = TrainingPanel(
            self.start,
            "choose it as 'model file' to use it",
            start_text="Start fine-tuning",
            loss_label="loss (sum of 3 MSE)",
            score_label="validation PSNR (dB)",
            score_range=None,
            loss_top=None,
            on_result=on_trained,
        )
        self.training.follow_steps(self.steps)
        self.contents = QWidget()
        inner = QVBoxLayout(self.contents)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(Container(widgets=[self.steps, self.lr, self.batch, self.output]).native)
        inner.addWidget(self.training)
        self.contents.setVisible(False)
        self.toggle = QToolButton()
        self.toggle.setText("Fine-tune the model on these two images")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self.set_open)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.contents)

    def set_open(self, visible: bool = True) -> None:
        """Open (or close) the panel."""
        if self.toggle.isChecked() != bool(visible):
            self.toggle.setChecked(bool(visible))  # calls back here
            return
        self.contents.setVisible(bool(visible))
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if visible else Qt.ArrowType.RightArrow)

    def settings(self, device: str = "auto") -> SwapTrainSettings:
        """The fine-tuning settings the controls describe."""
        return SwapTrainSettings(
            steps=int(self.steps.value), batch_size=int(self.batch.value), lr=float(self.lr.value), device=device
        )

    def start(self, _value: Any = None) -> None:
        """Fine-tune the current model on the images (no-op while a run is under way)."""
        if self.training.is_running:
            return
        try:
            layers, init, device = self._inputs()
            settings = self.settings(device)
            settings.check()
            resolve_device(settings.device)
        except ValueError as err:
            self.training.show_problem(str(err))
            return
        out = file_value(self.output.value)
        if out is None:
            self.training.show_problem("choose where to save the fine-tuned model ('save model to')")
            return
        images = [(layer.name, layer.data) for layer in layers]
        start_from = "the shipped model" if init == DEFAULT_MODEL else Path(init).name
        self.training.run(
            lambda cancel: fine_tune_job(images, out, settings, init, cancel),
            f"fine-tuning {start_from} on {' and '.join(repr(layer.name) for layer in layers)}",
            out,
            settings.steps,
        )
