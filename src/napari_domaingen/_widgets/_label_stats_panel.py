"""A panel with per-class statistics of a Labels layer (voxels, mm³, and the mean/std of an image layer on the
same grid) in a table that saves as CSV; the MaskGen — segment dock fills it after each segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, Label, PushButton
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QAbstractItemView, QComboBox, QFileDialog, QTableWidget, QTableWidgetItem

from ..core.label_stats import ClassStats, label_statistics, write_stats_csv
from ..io.geometry import display_affine_from_layer
from ._choices import follow_layer_list, volume_layers
from ._jobs import set_status, show_problem
from .maskgen_pairs import labels_layers, layer_class_names

if TYPE_CHECKING:
    import napari

__all__ = ["LabelStatsPanel"]

HEADERS = ("value", "name", "voxels", "volume (mm³)", "mean", "std")
TABLE_HEIGHT = 170  # px: about six rows; the dock scrolls, and the whole dock must fit a 1080-px screen
REFRESH_MS = 400  # the table refreshes this long after the last paint stroke


def _affine(layer: Any):
    """(4, 4) display affine of a layer (its scale, translate and affine; ``ValueError`` for rotate/shear)."""
    return display_affine_from_layer(layer)


class LabelStatsPanel(Container):
    """Labels layer + optional image layer → a statistics table; ``rows`` holds the last computed
    :class:`ClassStats`; :meth:`save` writes them as CSV."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.rows: list[ClassStats] = []
        self._labels_layer = ComboBox(
            label="statistics of", choices=lambda _w=None: labels_layers(viewer), nullable=True
        )
        self._image_layer = ComboBox(
            label="intensities of",
            choices=lambda _w=None: volume_layers(viewer),
            nullable=True,
            tooltip="an image on the labels' grid: mean and std of its intensities per class (optional)",
        )
        self._compute = PushButton(text="Compute")
        self._save = PushButton(text="Save CSV…", enabled=False)
        self._status = Label(value="")
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMaximumHeight(TABLE_HEIGHT)
        super().__init__(
            widgets=[
                self._labels_layer,
                self._image_layer,
                Container(widgets=[self._compute, self._save], layout="horizontal", labels=False),
                self._status,
            ],
        )
        self.native.layout().addWidget(self.table)
        for combo in (self._labels_layer, self._image_layer):
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self._compute.changed.connect(self.compute)
        self._save.changed.connect(self._ask_and_save)
        follow_layer_list(viewer, self.reset_choices)
        self._watched: Any = None  # the Labels layer whose painting refreshes the table
        self._refresh = QTimer(self.native)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(REFRESH_MS)
        self._refresh.timeout.connect(self._recompute_in_background)
        self._worker: Any = None
        self._labels_layer.changed.connect(self._watch)

    def _watch(self, _value: Any = None) -> None:
        """Refresh the table after painting on the chosen Labels layer (a stroke, a fill, an erase, undo)."""
        layer = self._labels_layer.value
        if layer is self._watched:
            return
        for event in ("paint", "data"):
            if self._watched is not None:
                getattr(self._watched.events, event).disconnect(self._on_painted)
            if layer is not None:
                getattr(layer.events, event).connect(self._on_painted)
        self._watched = layer

    def _on_painted(self, _event: Any = None) -> None:
        if self.rows:  # a table is shown: keep it current, a moment after the last stroke
            self._refresh.start()

    def _recompute_in_background(self) -> None:
        """:meth:`compute`'s figures in a worker thread (0.4 s for a 7-million-voxel brain with intensities),
        shown if the same layers are still chosen."""
        from napari.qt.threading import create_worker

        labels, image = self._labels_layer.value, self._image_layer.value
        if labels is None or (image is not None and tuple(image.data.shape) != tuple(labels.data.shape)):
            return
        if self._worker is not None and self._worker.is_running:
            self._refresh.start()  # one computation at a time: try again after it
            return
        data, pixels, affine, names = (
            labels.data.copy(),
            None if image is None else image.data,
            _affine(labels),
            layer_class_names(labels),
        )
        worker = create_worker(label_statistics, data, affine, pixels, names, _start_thread=False)

        def show(rows: list[ClassStats]) -> None:
            if self._labels_layer.value is labels and self._image_layer.value is image:
                self._show(rows)

        worker.returned.connect(show)
        self._worker = worker
        worker.start()

    def show_for(self, labels: Any, image: Any | None, rows: list[ClassStats] | None = None) -> None:
        """Choose ``labels`` (and ``image``) and show their statistics: ``rows`` when a job computed them already,
        else computed here."""
        self.reset_choices()
        self._labels_layer.value = labels
        self._image_layer.value = image
        if rows is None:
            self.compute()
        else:
            self._show(rows)

    def compute(self, _value: Any = None) -> list[ClassStats]:
        """Statistics of the chosen layers into the table (a problem is shown, not raised)."""
        labels, image = self._labels_layer.value, self._image_layer.value
        if labels is None:
            show_problem(self._status, "choose a Labels layer")
            return []
        pixels = None
        if image is not None:
            if tuple(image.data.shape) != tuple(labels.data.shape):
                show_problem(self._status, f"{image.name} is not on the grid of {labels.name}: shapes differ")
                return []
            pixels = image.data
        return self._show(label_statistics(labels.data, _affine(labels), pixels, layer_class_names(labels)))

    def _show(self, rows: list[ClassStats]) -> list[ClassStats]:
        self.rows = rows
        self._fill()
        self._save.enabled = True
        total = sum(row.volume_mm3 for row in self.rows)
        set_status(self._status, f"{len(self.rows)} classes, {total / 1000:.1f} ml labelled")
        return self.rows

    def _fill(self) -> None:
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            cells = (
                str(row.value),
                row.name,
                str(row.voxels),
                f"{row.volume_mm3:.1f}",
                "" if row.mean is None else f"{row.mean:.4g}",
                "" if row.std is None else f"{row.std:.4g}",
            )
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def save(self, path: str | Path) -> Path:
        """Write the table as CSV (``value,name,voxels,volume_mm3,mean,std``), atomically."""
        written = write_stats_csv(path, self.rows)
        set_status(self._status, f"saved {written}")
        return written

    def _ask_and_save(self, _value: Any = None) -> None:
        labels = self._labels_layer.value
        default = f"{labels.name if labels is not None else 'labels'}-stats.csv"
        path, _ = QFileDialog.getSaveFileName(self.native, "Save statistics", default, "CSV (*.csv)")
        if path:
            try:
                self.save(path)
            except OSError as err:
                show_problem(self._status, f"{path}: {err.strerror or err}")
