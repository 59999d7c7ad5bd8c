"""Sub-widget of *MaskGen — train*: the training pairs (image and labels layers, or NIfTI file pairs, checked as
they are added) and the optional validation pair.

Pure collection of inputs: it checks what is added (same grid, labels present) and reports through the owner's
``show_problem`` / ``say`` callbacks; the owner builds the training job from :meth:`PairList.training_pairs` and
:meth:`PairList.validation_pair`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, PushButton
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.segmentation_data import labelled_volume_from_files
from ..errors import DomaingenError
from ._choices import file_value, follow_layer_list, layer_key, same_layer, volume_layers
from .maskgen_pairs import TrainingPair, labels_layers, layer_pair_volume

__all__ = ["PairList"]


class PairList(QWidget):
    """Image/labels choices, *Add pair* / *Remove selected*, the pair table, a NIfTI file pair and the validation
    pair. ``pairs``: the :class:`~.maskgen_pairs.TrainingPair` list shown in the table."""

    def __init__(self, viewer: Any, show_problem: Callable[[str], None], say: Callable[[str], None]) -> None:
        super().__init__()
        self.viewer, self._show_problem, self._say = viewer, show_problem, say
        self.pairs: list[TrainingPair] = []
        self._image = ComboBox(
            label="image", choices=self.image_layers, nullable=False, tooltip="a 3D image layer to learn from"
        )
        self._labels = ComboBox(
            label="labels",
            choices=self.labels_layers,
            nullable=False,
            tooltip="its 3D Labels layer (same grid); 0 = background, other values = classes",
        )
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
        self._val_image = ComboBox(
            label="validation image",
            choices=self.image_layers,
            nullable=True,
            tooltip="optional: an image held out from training, scored (Dice) during training; the best model is "
            "kept as MODEL.best.pt",
        )
        self._val_labels = ComboBox(label="validation labels", choices=self.labels_layers, nullable=True)
        buttons = Container(widgets=[self._add_pair, self._remove_pair], layout="horizontal", labels=False)
        layers = Container(widgets=[self._image, self._labels, buttons])
        files = Container(
            widgets=[self._image_file, self._labels_file, self._add_files, self._val_image, self._val_labels]
        )
        for combo in (self._image, self._labels, self._val_image, self._val_labels):  # let the dock be narrow
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (layers.native, self._table, files.native):
            layout.addWidget(widget)
        self._add_pair.changed.connect(self.add_pair)
        self._remove_pair.changed.connect(self.remove_selected)
        self._add_files.changed.connect(self.add_file_pair)
        follow_layer_list(self.viewer, self._on_layers_changed)

    def image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer)

    def labels_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return labels_layers(self.viewer)

    def _on_layers_changed(self) -> None:
        for combo in (self._image, self._labels, self._val_image, self._val_labels):
            combo.reset_choices()
        present = {layer_key(layer) for layer in self.viewer.layers}
        kept = [
            p for p in self.pairs if p.is_file or (layer_key(p.image) in present and layer_key(p.labels) in present)
        ]
        if len(kept) != len(self.pairs):
            self.pairs = kept
            self.refresh_table()

    def refresh_table(self) -> None:
        self._table.setRowCount(len(self.pairs))
        for row, pair in enumerate(self.pairs):
            for column, text in enumerate(pair.names):
                item = QTableWidgetItem(text)
                item.setToolTip(str(pair.image if column == 0 else pair.labels) if pair.is_file else text)
                self._table.setItem(row, column, item)

    def _added(self, pair: TrainingPair) -> None:
        self.pairs.append(pair)
        self.refresh_table()
        self._say(f"{len(self.pairs)} training pair(s)")

    def add_pair(self, _value: Any = None) -> None:
        """Add the (image, labels) layers selected above to the training pairs, after checking them."""
        image, labels = self._image.value, self._labels.value
        if image is None or labels is None:
            self._show_problem("choose a 3D image layer and its 3D labels layer first")
            return
        if any(not p.is_file and same_layer(p.image, image) and same_layer(p.labels, labels) for p in self.pairs):
            self._say(f"{image.name} + {labels.name} is already in the list")
            return
        try:
            layer_pair_volume(image, labels)
        except ValueError as err:
            self._show_problem(str(err))
            return
        self._added(TrainingPair(image, labels))

    def add_file_pair(self, _value: Any = None) -> None:
        """Read, check and add the NIfTI (image, labels) file pair chosen above."""
        paths = [file_value(self._image_file.value), file_value(self._labels_file.value)]
        if None in paths:
            self._show_problem("choose an image file and its labels file (NIfTI) first")
            return
        try:
            volume = labelled_volume_from_files(*paths)  # type: ignore[arg-type]
        except (OSError, ValueError, DomaingenError) as err:
            self._show_problem(str(err))
            return
        self._added(TrainingPair(paths[0], paths[1], volume))

    def remove_selected(self, _value: Any = None) -> None:
        """Remove the selected rows of the training table (the last row when none is selected)."""
        rows = sorted({index.row() for index in self._table.selectedIndexes()}) or [len(self.pairs) - 1]
        self.pairs = [pair for row, pair in enumerate(self.pairs) if row not in rows]
        self.refresh_table()

    def training_pairs(self) -> list[TrainingPair]:
        """The listed pairs, or the pair selected above when the list is empty."""
        if self.pairs:
            return list(self.pairs)
        if self._image.value is not None and self._labels.value is not None:
            return [TrainingPair(self._image.value, self._labels.value)]
        return []

    def validation_pair(self) -> TrainingPair | None:
        """The validation (image, labels) pair, ``None`` without one; ``ValueError`` when only one is chosen."""
        image, labels = self._val_image.value, self._val_labels.value
        if image is None and labels is None:
            return None
        if image is None or labels is None:
            raise ValueError("validation: choose both a validation image and its labels, or neither")
        return TrainingPair(image, labels)
