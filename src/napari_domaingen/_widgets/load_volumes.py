"""Dock widget: load several volumes of one subject (NIfTI files, DICOM series) and put them on one grid.

Thin by design: :mod:`napari_domaingen.io.volume_set` scans paths, recognises contrasts, loads, checks grids,
resamples and computes intensity presets; this widget lists the candidates in a table, runs loading and
resampling in ``thread_worker`` jobs (a napari progress bar, the UI stays responsive) and manages the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from .._napari.layer_meta import ResampledFrom, read_meta, with_meta
from .._napari.layers import volume_layer_data
from .._napari.view import CONVENTIONS, follow, set_view_convention, view_convention
from ..io.geometry import layer_geometry
from ..io.intensity_presets import DEFAULT_PRESET
from ..io.nifti import Volume
from ..io.volume_set import (
    CONTRASTS,
    PRESETS,
    Candidate,
    ResampledSource,
    contrast_limits_for,
    grid_report,
    iter_load_group,
    iter_resample_group,
    preset_problem,
    reference_index,
    scan,
)
from ._jobs import JobRunner
from ._layout import scroll_layout, show_all_lines, wrap_text

if TYPE_CHECKING:
    import napari

COLUMNS = ("load", "contrast", "file / series", "kind", "modality", "dims", "spacing (mm)", "orient.", "dtype", "range")
NO_CONTRAST = "—"
ISOTROPIC_MM = 1.0
WARNING_STYLE = "color: #ffb347; font-weight: bold;"
OK_STYLE = "color: #8fd18f;"
NIFTI_FILTER = "NIfTI or DICOM (*.nii *.nii.gz *.dcm *.zip);;All files (*)"


class LoadVolumesWidget(QWidget):
    """Load the contrasts of one subject (or DICOM series) as layers on one grid."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.candidates: list[Candidate] = []
        self.group: list[tuple[Any, Volume]] = []  # loaded layers with the volume each one shows
        self._loading: list[int] = []  # table rows of the running load

        self.add_files_button = QPushButton("Add files…")
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("a folder of NIfTI files, or of DICOM series (any depth), or a DICOM .zip")
        self.clear_button = QPushButton("Clear list")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(2, 190)
        self.table.setMinimumHeight(150)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keep the contrast suffix of long names
        self.table.horizontalHeader().setStretchLastSection(True)
        self.setMinimumWidth(520)
        self.isotropic = QCheckBox("isotropic")
        self.isotropic.setToolTip("resample each volume to isotropic voxels while loading (linear; labels nearest)")
        self.isotropic_mm = QDoubleSpinBox()
        self.isotropic_mm.setRange(0.1, 10.0)
        self.isotropic_mm.setSingleStep(0.25)
        self.isotropic_mm.setDecimals(2)
        self.isotropic_mm.setValue(ISOTROPIC_MM)
        self.isotropic_mm.setSuffix(" mm")
        self.isotropic_mm.setToolTip(
            "the voxel size to resample to, e.g. the spacing a segmentation model was trained on"
        )
        self.straight = QCheckBox("scanner axes")
        self.straight.setToolTip(
            "with isotropic: resample oblique volumes onto a grid along the scanner axes, so napari shows every plane "
            "straight (napari draws an oblique grid's slices without their tilt: the other planes look stepped)"
        )
        self.load_button = QPushButton("Load selected")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.grid_label = QLabel("")
        wrap_text(self.status, self.grid_label)
        self.resample_button = QPushButton("Resample onto …")
        self.resample_button.setVisible(False)
        self.preset = QComboBox()
        self.preset.addItems(PRESETS)
        self.preset.setCurrentText(DEFAULT_PRESET)
        self.preset.setToolTip("contrast limits of the selected image layers (else the loaded ones); data unchanged")
        self.apply_preset_button = QPushButton("Apply")
        self.view = QComboBox()
        self.view.addItems(list(CONVENTIONS))
        self.view.setCurrentText(view_convention())
        self.view.setToolTip(
            "how 2D slices of medical volumes are shown (saved for later sessions). radiological: anterior up, the "
            "patient's right on the screen's left; neurological: the patient's right on the right. World "
            "coordinates stay scanner millimetres (S, A, R) either way"
        )

        layout = scroll_layout(self, margins=4)
        row = QHBoxLayout()
        for button in (self.add_files_button, self.add_folder_button, self.clear_button):
            row.addWidget(button)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(self.isotropic)
        row.addWidget(self.isotropic_mm)
        row.addWidget(self.straight)
        row.addStretch(1)
        row.addWidget(self.load_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.grid_label)
        layout.addWidget(self.resample_button)
        row = QHBoxLayout()
        row.addWidget(QLabel("intensity"))
        row.addWidget(self.preset, 1)
        row.addWidget(self.apply_preset_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("view"))
        row.addWidget(self.view, 1)
        layout.addLayout(row)

        self.add_files_button.clicked.connect(self._choose_files)
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.clear_button.clicked.connect(self.clear)
        self.load_button.clicked.connect(self.load_selected)
        self.runner = JobRunner(self._set_status, self._set_busy)
        self.runner.bind(self, self.viewer)
        self.cancel_button.clicked.connect(self.cancel)
        self.resample_button.clicked.connect(self.resample_group)
        self.apply_preset_button.clicked.connect(lambda: self.apply_preset(self.preset.currentText()))
        self.preset.textActivated.connect(self.apply_preset)
        self.view.textActivated.connect(self.set_view)
        follow(self.viewer)

    # --------------------------------------------------------------------------------------------- candidates

    def _choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add volumes", "", NIFTI_FILTER)
        if paths:
            self.scan_in_background(paths)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of NIfTI files or DICOM series")
        if path:
            self.scan_in_background([path])

    def scan_in_background(self, paths: Sequence[str | Path]) -> None:
        """:meth:`add_paths` with the reading of headers (a DICOM folder: every file's) in the job runner."""
        if self.runner.is_running:
            return

        def job(_cancel: Any) -> Any:
            yield {"stage": "scan", "fraction": 0.0, "message": f"reading the headers of {len(paths)} path(s)"}
            errors: list[str] = []
            return scan(paths, errors=errors), errors

        self.runner.start(job, "reading headers", lambda found: self.add_paths(paths, scanned=found))

    def add_paths(
        self, paths: Sequence[str | Path], scanned: tuple[list[Candidate], list[str]] | None = None
    ) -> list[Candidate]:
        """Scan files/folders/zips (unless ``scanned`` holds the result already) and list what they hold (checked
        for loading); returns the new candidates."""
        if scanned is None:
            errors: list[str] = []
            found = scan(paths, errors=errors)
        else:
            found, errors = scanned
        known = {(str(c.path.resolve()), c.uid) for c in self.candidates}
        new = [c for c in found if (str(c.path.resolve()), c.uid) not in known]
        for candidate in new:
            self._add_row(candidate)
        self.candidates.extend(new)
        message = f"{len(new)} volume(s) found" if new else "nothing new found"
        if errors:
            message += "; " + "; ".join(errors)
        self._set_status(message)
        return new

    def clear(self) -> None:
        """Empty the candidate list and start a new case: loaded layers stay, but grid checks and resampling
        concern only the volumes loaded from now on (never another patient's grid)."""
        self.candidates.clear()
        self.table.setRowCount(0)
        self.group.clear()
        self.check_grid()
        self._set_status("")

    def _add_row(self, c: Candidate) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        check = QTableWidgetItem()
        check.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
        check.setCheckState(Qt.CheckState.Checked)
        self.table.setItem(row, 0, check)
        combo = QComboBox()
        combo.addItems([NO_CONTRAST, *CONTRASTS])
        combo.setCurrentText(c.contrast or NO_CONTRAST)
        combo.setToolTip("recognised from the name; change it if it is wrong (labels load as a Labels layer)")
        combo.currentTextChanged.connect(
            lambda text, c=c: setattr(c, "contrast", None if text == NO_CONTRAST else text)
        )
        self.table.setCellWidget(row, 1, combo)
        name = c.stem if c.kind == "dicom" else c.path.name
        low_high = "" if c.value_range is None else f"{_num(c.value_range[0])} … {_num(c.value_range[1])}"
        texts = [
            name,
            c.kind,
            c.modality,
            "×".join(str(d) for d in c.dims),
            "×".join(_num(s) for s in c.spacing),
            c.orientation,
            c.dtype,
            low_high,
        ]
        for column, text in enumerate(texts, start=2):
            item = QTableWidgetItem(text)
            item.setToolTip(c.source_text if column == 2 else text)
            self.table.setItem(row, column, item)

    def is_checked(self, row: int) -> bool:
        return self.table.item(row, 0).checkState() == Qt.CheckState.Checked

    def set_checked(self, row: int, checked: bool) -> None:
        self.table.item(row, 0).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def set_contrast(self, row: int, contrast: str | None) -> None:
        self.table.cellWidget(row, 1).setCurrentText(contrast or NO_CONTRAST)

    def checked_rows(self) -> list[int]:
        return [row for row in range(self.table.rowCount()) if self.is_checked(row)]

    # ---------------------------------------------------------------------------------------------- loading

    def load_selected(self) -> None:
        """Load the checked rows in a worker (no-op while a job runs)."""
        if self.runner.is_running:
            return
        rows = self.checked_rows()
        if not rows:
            self._set_status("check at least one volume to load")
            return
        self._loading = rows
        candidates = [self.candidates[r] for r in rows]
        isotropic = float(self.isotropic_mm.value()) if self.isotropic.isChecked() else None
        straight, preset = self.straight.isChecked(), self.preset.currentText()

        def job(cancel: Any) -> Any:
            volumes = yield from iter_load_group(candidates, isotropic, cancel, straight)
            return [(volume, _display_window(volume, preset)) for volume in volumes]  # not on the GUI thread

        self.runner.start(job, f"loading {len(rows)} volume(s)", self._on_loaded)

    def _on_loaded(self, loaded: list[tuple[Volume, tuple[Any, str | None]]]) -> None:
        from napari.utils.notifications import show_warning

        for row in self._loading:  # loaded: unchecked, so the next "Load selected" does not load them again
            self.set_checked(row, False)
        added, problems = [], []
        for volume, (limits, problem) in loaded:
            layer = self._add_layer(volume, limits)
            if problem is not None:
                problems.append(problem)
                show_warning(problem)
            if layer is not None:
                self.group.append((layer, volume))
                added.append(layer)
        self._set_status(
            f"loaded {len(added)} layer(s): {', '.join(layer.name for layer in added)}"
            + "".join(f". Note: {problem}" for problem in problems)
        )
        self.check_grid()

    def _add_layer(self, volume: Volume, limits: Any = None) -> Any:
        data, attrs, kind = volume_layer_data(volume, **({"contrast_limits": limits} if limits is not None else {}))
        source = volume.source
        if isinstance(source, ResampledSource):
            meta = read_meta(attrs["metadata"])
            meta["resampled_from"] = ResampledFrom(
                path=source.resampled_from, spacing=source.original_spacing, new_spacing=volume.spacing
            )
            attrs["metadata"] = with_meta(attrs["metadata"], meta)
        layers = getattr(self.viewer, f"add_{kind}")(data, **attrs)
        if isinstance(layers, list):  # a (C, Z, Y, X) volume: one layer per channel, not part of the grid group
            return None
        return layers

    # ------------------------------------------------------------------------------------------------ grids

    def _live_group(self) -> list[tuple[Any, Volume]]:
        self.group = [(layer, volume) for layer, volume in self.group if layer in self.viewer.layers]
        return self.group

    def check_grid(self) -> list[str]:
        """Check the loaded group for one grid; show the result and the resample button. Returns the report."""
        group = self._live_group()
        volumes = [v for _, v in group]
        if len(volumes) < 2:
            self.grid_label.setText("")
            self.resample_button.setVisible(False)
            return []
        report = grid_report(volumes)
        ref = volumes[reference_index(volumes)]
        if report:
            self.grid_label.setText("not on one grid: " + "; ".join(report))
            show_all_lines(self.grid_label)
            self.grid_label.setStyleSheet(WARNING_STYLE)
            self.resample_button.setText(f"Resample onto {ref.name}")
            self.resample_button.setVisible(True)
        else:
            shape = "×".join(str(s) for s in ref.spatial_shape)
            spacing = "×".join(_num(s) for s in ref.spacing)
            self.grid_label.setText(f"{len(volumes)} volumes on one grid ({shape} voxels of {spacing} mm)")
            show_all_lines(self.grid_label)
            self.grid_label.setStyleSheet(OK_STYLE)
            self.resample_button.setVisible(False)
        return report

    def resample_group(self) -> None:
        """Resample every loaded volume that is off the reference grid onto it (in a worker)."""
        if self.runner.is_running:
            return
        volumes = [v for _, v in self._live_group()]
        if len(volumes) < 2:
            return
        reference = reference_index(volumes)
        self.runner.start(
            lambda cancel: iter_resample_group(volumes, reference, cancel),
            f"resampling onto {volumes[reference].name}",
            self._on_resampled,
            inputs=[layer for layer, _ in self.group],
        )

    def _on_resampled(self, resampled: list[tuple[int, Volume]]) -> None:
        ref = self.group[reference_index([v for _, v in self.group])][1]
        for index, volume in resampled:
            layer, _ = self.group[index]
            geometry = layer_geometry(volume.display_affine)
            layer.data = volume.data
            layer.affine = geometry["affine"]
            layer.scale = geometry["scale"]
            layer.translate = geometry["translate"]
            meta = read_meta(layer)
            meta.update(nifti_source=volume.source, display_affine=volume.display_affine, resampled_onto=ref.name)
            layer.metadata = with_meta(layer.metadata, meta)
            if hasattr(layer, "contrast_limits") and not volume.is_label:
                self._apply(self.preset.currentText(), [layer])
            self.group[index] = (layer, volume)
        self._set_status(f"resampled {len(resampled)} layer(s) onto {ref.name}")
        self.check_grid()

    # ---------------------------------------------------------------------------------------------- presets

    def apply_preset(self, preset: str) -> list[Any]:
        """Set contrast limits of the selected image layers (else of the loaded image layers); returns them."""
        from napari.layers import Image

        selected = [layer for layer in self.viewer.layers.selection if isinstance(layer, Image) and not layer.rgb]
        targets = selected or [layer for layer, _ in self._live_group() if isinstance(layer, Image)]
        problems = self._apply(preset, targets)
        if targets:
            self._set_status(
                f"{preset}: {', '.join(layer.name for layer in targets)}"
                + "".join(f". Note: {problem}" for problem in problems)
            )
        return targets

    @staticmethod
    def _apply(preset: str, layers: Sequence[Any]) -> list[str]:
        """Set the preset's contrast limits on ``layers``; returns (and shows as warnings) where it does not fit."""
        from napari.utils.notifications import show_warning

        problems = []
        for layer in layers:
            (low, high), problem = _preset_window(np.asarray(layer.data), preset, layer.name)
            if problem is not None:
                problems.append(problem)
                show_warning(problem)
            range_low, range_high = layer.contrast_limits_range
            layer.contrast_limits_range = (min(low, range_low), max(high, range_high))
            layer.contrast_limits = (low, high)
        return problems

    def set_view(self, convention: str) -> None:
        """Show medical volumes radiologically or neurologically, in every viewer, now and in later sessions."""
        try:
            set_view_convention(convention)
        except (OSError, ValueError) as err:
            self._set_status(f"error: {err}")
            return
        self._set_status(
            f"{convention} view: "
            + (
                "anterior up, the patient's right on the screen's left"
                if convention == "radiological"
                else "anterior up, the patient's right on the screen's right"
            )
        )

    # ---------------------------------------------------------------------------------------------- workers

    @property
    def worker(self) -> Any:
        """The worker of the last job (for tests and scripts)."""
        return self.runner.worker

    def cancel(self) -> None:
        """Stop the running job between two volumes."""
        self.runner.cancel()

    def _set_busy(self, busy: bool) -> None:
        for button in (
            self.load_button,
            self.resample_button,
            self.add_files_button,
            self.add_folder_button,
            self.clear_button,
        ):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        show_all_lines(self.status)


def _display_window(volume: Volume, preset: str) -> tuple[tuple[float, float] | None, str | None]:
    """``(contrast limits, problem)`` of a loaded image volume for ``preset`` (``None`` limits: labels, channel
    stacks and constant volumes)."""
    if volume.is_label or volume.data.ndim != 3:
        return None, None
    (low, high), problem = _preset_window(volume.data, preset, volume.name)
    return ((low, high) if high > low else None), problem


def _preset_window(data: np.ndarray, preset: str, name: str) -> tuple[tuple[float, float], str | None]:
    """``((low, high), problem)``: the contrast limits of ``preset`` for ``data`` and where it does not fit."""
    return contrast_limits_for(data, preset), preset_problem(data, preset, name)


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
