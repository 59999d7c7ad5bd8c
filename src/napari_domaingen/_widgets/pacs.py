"""Dock widget: open studies from a DICOMweb server and send labels back as DICOM-SEG (*Plugins ▸ PACS*).

Thin by design: a search form (patient ID or name, study date, modality, accession number), a table of the
matching studies, a table of the chosen study's series, *Open* (the series into the cache, then read by the same
reader as a folder, into layers with their exact geometry) and *Send labels* (a Labels layer on a retrieved series
→ DICOM-SEG → stored in that series' study; the SEG's UIDs are shown). Every request runs in the job runner's
worker, never in the GUI thread; credentials come from the environment or the settings file
(:mod:`napari_domaingen.io.dicomweb_server`) and are never shown.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem, QWidget

from .._napari.label_layers import label_table_of
from .._napari.label_series import fitting_series
from .._napari.layers import volume_layer_data
from ..core.jobs.pacs import outbox, send_labels
from ..io.dicomweb import SeriesInfo, StudyInfo, find_series, find_studies, get_series, origin_of, server_from
from ..io.geometry import display_affine_from_layer
from ..progress import rescaled
from ._choices import follow_layer_list
from ._jobs import JobRunner, button_busy, label_status, set_status, show_problem
from ._layout import scroll_layout

if TYPE_CHECKING:
    import napari

#: the server shown at first: ``$DOMAINGEN_DICOMWEB_URL``, else Orthanc's default on this machine
ENV_URL = "DOMAINGEN_DICOMWEB_URL"
DEFAULT_URL = "http://127.0.0.1:8042/dicom-web"
TABLE_ROWS = 5  # rows each table shows before it scrolls (the dock must fit a 1080 px screen)


def _table(headers: list[str], multi: bool) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    mode = (
        QAbstractItemView.SelectionMode.ExtendedSelection if multi else QAbstractItemView.SelectionMode.SingleSelection
    )
    table.setSelectionMode(mode)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    row_height = table.verticalHeader().defaultSectionSize()
    table.setFixedHeight(table.horizontalHeader().sizeHint().height() + TABLE_ROWS * row_height + 4)
    table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.clearContents()
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            table.setItem(r, c, QTableWidgetItem(value))


class PacsWidget(QWidget):
    """Search a DICOMweb server, open series as layers, send labels back as DICOM-SEG."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.studies: list[StudyInfo] = []
        self.series: list[SeriesInfo] = []
        self.sent: Any = None  # the last SentLabels
        self._server = LineEdit(label="server", value=os.environ.get(ENV_URL, DEFAULT_URL))
        self._server.tooltip = (
            "DICOMweb root; credentials from DOMAINGEN_DICOMWEB_* or the settings file (docs/pacs.md)"
        )
        self._patient_id = LineEdit(label="patient ID", tooltip="* matches any characters")
        self._patient_name = LineEdit(label="patient name", tooltip="e.g. Doe^J*")
        self._date = LineEdit(label="study date", tooltip="20260101, 20260101-20261231 or 20260101-")
        self._modality = LineEdit(label="modality", tooltip="a modality in the study, e.g. MR")
        self._accession = LineEdit(label="accession", tooltip="accession number")
        self._search = PushButton(text="Search")
        self._open = PushButton(text="Open selected series", enabled=False)
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._labels = ComboBox(label="labels", choices=self._label_layers, nullable=True)
        self._send = PushButton(text="Send labels to PACS (DICOM-SEG)")
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        self._status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # the stored SEG's UIDs and the kept copy: read-only fields, so they can be selected and copied whole
        self._seg_series = LineEdit(label="SEG series", tooltip="SeriesInstanceUID of the stored segmentation")
        self._seg_instance = LineEdit(label="SEG instance", tooltip="SOPInstanceUID of the stored segmentation")
        self._kept = LineEdit(label="copy kept at", tooltip="the DICOM-SEG file, to send again: domaingen pacs send")
        for field in (self._seg_series, self._seg_instance, self._kept):
            field.native.setReadOnly(True)
        self.study_table = _table(["patient", "name", "date", "description", "series"], multi=False)
        self.series_table = _table(["description", "modality", "images", "date"], multi=True)
        form = Container(
            widgets=[self._server, self._patient_id, self._patient_name, self._date, self._modality, self._accession]
        )
        layout = scroll_layout(self)
        layout.addWidget(form.native)
        layout.addWidget(self._search.native)
        layout.addWidget(self.study_table)
        layout.addWidget(self.series_table)
        buttons = Container(widgets=[self._open, self._cancel_button], layout="horizontal", labels=False)
        send = Container(widgets=[self._labels, self._send, self._seg_series, self._seg_instance, self._kept])
        for widget in (buttons, send, self._status):
            layout.addWidget(widget.native)
        layout.addStretch(1)
        self.runner = JobRunner(label_status(self._status), self._busy)
        self.runner.bind(self, self.viewer)
        self._search.changed.connect(self.search)
        self._open.changed.connect(self.open_selected)
        self._cancel_button.changed.connect(self.runner.cancel)
        self._send.changed.connect(self.send)
        self.study_table.itemSelectionChanged.connect(self._on_study_chosen)
        self.series_table.itemSelectionChanged.connect(self._on_series_chosen)
        follow_layer_list(self.viewer, self._labels.reset_choices)

    def _busy(self, busy: bool) -> None:
        button_busy(self._search, self._cancel_button)(busy)
        self._open.enabled = not busy and bool(self.selected_series())
        self._send.enabled = not busy

    def _label_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Labels) and layer.ndim == 3]

    def _server_address(self) -> str:
        return self._server.value.strip()

    # ------------------------------------------------------------------------------------------- search

    def search(self, _value: Any = None) -> None:
        """Search studies with the form's criteria (in the worker)."""
        address = self._server_address()
        criteria = {
            "patient_id": self._patient_id.value.strip() or None,
            "patient_name": self._patient_name.value.strip() or None,
            "study_date": self._date.value.strip() or None,
            "modality": self._modality.value.strip() or None,
            "accession": self._accession.value.strip() or None,
        }

        def job(_cancel: Any):
            yield {"stage": "search", "fraction": 0.0, "message": f"searching {address}"}
            return find_studies(server_from(address), **criteria)

        self.runner.start(job, "search studies", on_result=self._show_studies)

    def _show_studies(self, studies: list[StudyInfo]) -> None:
        self.studies, self.series = studies, []
        _fill(self.series_table, [])
        _fill(
            self.study_table,
            [[s.patient_id, s.patient_name, s.date, s.description, str(s.n_series or "")] for s in studies],
        )
        set_status(self._status, f"{len(studies)} studies" if studies else "no study matches")

    def _on_study_chosen(self) -> None:
        rows = {index.row() for index in self.study_table.selectionModel().selectedRows()}
        if len(rows) == 1:
            self.list_series(rows.pop())

    def list_series(self, row: int) -> None:
        """List the series of the study in ``row`` (in the worker)."""
        if self.runner.is_running or not 0 <= row < len(self.studies):
            return
        address, study = self._server_address(), self.studies[row]

        def job(_cancel: Any):
            yield {"stage": "search", "fraction": 0.0, "message": f"listing the series of {study.patient_id}"}
            return find_series(server_from(address), study.uid)

        self.runner.start(job, "list series", on_result=self._show_series)

    def _show_series(self, series: list[SeriesInfo]) -> None:
        self.series = series
        rows = [[s.name, s.modality, "" if s.n_instances is None else str(s.n_instances), s.date] for s in series]
        _fill(self.series_table, rows)
        images = sum(s.is_image for s in series)
        set_status(self._status, f"{len(series)} series, {images} of them images" if series else "no series")

    def selected_series(self) -> list[SeriesInfo]:
        rows = sorted({index.row() for index in self.series_table.selectionModel().selectedRows()})
        return [self.series[r] for r in rows if r < len(self.series)]

    def _on_series_chosen(self) -> None:
        self._open.enabled = not self.runner.is_running and bool(self.selected_series())

    # ------------------------------------------------------------------------------------------- open

    def open_selected(self, _value: Any = None) -> None:
        """Fetch the selected series (progress per image, cancellable) and add them as layers."""
        chosen = self.selected_series()
        refused = [s.name for s in chosen if not s.is_image]
        if refused:
            names = ", ".join(refused)
            show_problem(self._status, f"not image series (SEG, SR …), nothing to open as an image: {names}")
            return
        if not chosen:
            show_problem(self._status, "select one or more series first")
            return
        address = self._server_address()

        def job(cancel: Any):
            from ..io.dicom import read_series

            server = server_from(address)
            layers = []
            for number, item in enumerate(chosen):
                fetch = get_series(server, item.study_uid, item.uid, item.n_instances, cancel)
                prefix = f"series {number + 1}/{len(chosen)}: "
                folder = yield from rescaled(fetch, number / len(chosen), 1 / len(chosen), prefix)
                layers.append(volume_layer_data(read_series(folder)))  # read and prepared off the GUI thread
            return layers

        self.runner.start(job, f"open {len(chosen)} series", on_result=self._add_layers)

    def _add_layers(self, layers: list[tuple[Any, dict[str, Any], str]]) -> None:
        added = []
        for data, attrs, kind in layers:
            added.append(getattr(self.viewer, f"add_{kind}")(data, **attrs))
        names = ", ".join(getattr(layer, "name", "?") for layer in added)
        set_status(self._status, f"opened {names}; draw or segment labels on it, then send them")

    # ------------------------------------------------------------------------------------------- send

    def _retrieved_series_of(self, labels: Any) -> tuple[str, Any] | None:
        """``(image layer name, its DICOM source)`` of a retrieved series the labels lie on, else ``None``."""
        found = fitting_series(labels.data.shape, display_affine_from_layer(labels), self.viewer.layers)
        retrieved = [(name, source) for name, source in found if origin_of(source.path) is not None]
        return retrieved[0] if retrieved else None

    def send(self, _value: Any = None) -> None:
        """Write the chosen labels as a DICOM-SEG of the retrieved series they lie on and store it (in the
        worker); refused for labels that are not on a retrieved series."""
        labels = self._labels.value
        if labels is None:
            show_problem(self._status, "add or choose a Labels layer first")
            return
        found = self._retrieved_series_of(labels)
        if found is None:
            show_problem(
                self._status,
                f"{labels.name} is not on a series opened from the PACS (same grid); open the series here first",
            )
            return
        image_name, source = found
        data, attributes, _ = labels.as_layer_data_tuple()
        affine = display_affine_from_layer(labels)
        reference = Path(source.path)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in labels.name)[:40] or "labels"
        out = outbox() / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}.dcm"

        self.sent = None  # the fields show only what this send stored
        self._seg_series.value = self._seg_instance.value = self._kept.value = ""

        def job(_cancel: Any):
            yield {"stage": "send", "fraction": 0.2, "message": f"writing and sending {labels.name}"}
            table = label_table_of(data, attributes)  # the label values: a pass over the volume, off the GUI thread
            return send_labels(data, reference, out, labels_affine=affine, table=table, description=labels.name)

        self.runner.start(job, f"send {labels.name} (on {image_name})", on_result=self._sent, inputs=[labels])

    def _sent(self, sent: Any) -> None:
        self.sent = sent
        self._seg_series.value, self._seg_instance.value, self._kept.value = (
            sent.series_uid,
            sent.sop_instance_uid,
            str(sent.path),
        )
        set_status(self._status, f"stored the segmentation in the study on {sent.server}")
