"""Dock widget: run features, segment or compare over a cohort in the background, one table row per case.

Thin by design: it collects a :class:`~napari_domaingen.core.batch_jobs.BatchJob` with the job's typed settings
(those of the single-case jobs, :mod:`napari_domaingen.core.jobs`) and
:class:`~napari_domaingen.core.batch.BatchSettings` (the parameters of ``domaingen batch``), runs
:func:`~napari_domaingen.core.batch.run_batch` through the one job runner (in-process, a local Dask cluster, or a
cluster by address), and fills the table from its updates. Double-clicking a finished case opens its outputs as
layers with their geometry (the NIfTI files in ``DIR/<case>/``, through this plugin's reader). A DICOMweb query
may stand for the cohort (each study a case, read in the background first), and a segment batch on it may send
each case's labels back to the server as DICOM-SEG (``domaingen batch segment … --send``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem, QWidget

from ..core.batch import BatchSettings, run_batch
from ..core.batch_jobs import JOBS, job_named
from ..core.features import FeatureSettings
from ..core.jobs import CompareSettings, SegmentOptions
from ..core.register import RegisterSettings
from ..errors import DomaingenError
from ..io.cohort import read_cohort
from ..progress import Progress
from ._choices import file_value
from ._jobs import JobRunner, button_busy, label_status, set_status, show_problem
from ._layout import scroll_layout

if TYPE_CHECKING:
    import napari

__all__ = ["BatchWidget", "case_outputs"]

CONTRAST_CHOICES = ["T1", "T1c", "T2", "FLAIR"]
HEADERS = ("case", "status", "seconds", "figures / error")
TABLE_HEIGHT = 220


def case_outputs(case_dir: Path) -> list[Path]:
    """The NIfTI outputs of a finished case, labels last (so they draw on top)."""
    files = sorted(case_dir.glob("*.nii.gz"))
    return sorted(files, key=lambda p: p.name.startswith("labels"))


def _figures_text(row: dict[str, Any]) -> str:
    skip = {"case", "status", "error", "seconds", "worker", "features"}
    parts = []
    for key, value in row.items():
        if key in skip or value in ("", None):
            continue
        parts.append(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)


class BatchWidget(QWidget):
    """Choose a cohort, a job and its parameters; Run fills the table case by case; Cancel stops the batch."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.rows: dict[str, dict[str, Any]] = {}
        self._cohort = FileEdit(label="cohort", mode="d", tooltip="a folder with one sub-folder per case")
        self._manifest = CheckBox(
            label="",
            text="the cohort is a CSV manifest",
            tooltip="a .csv manifest (case, contrast columns), not a folder",
        )
        self._query = LineEdit(
            label="or PACS query",
            value="",
            tooltip="instead of a folder: a DICOMweb query, e.g. dicomweb+http://host:8042/dicom-web?ModalitiesInStudy=MR",
        )
        self._job = ComboBox(label="job", choices=list(JOBS), value="compare")
        self._a = ComboBox(label="A (reference)", choices=CONTRAST_CHOICES, value="T1")
        self._b = ComboBox(label="B", choices=CONTRAST_CHOICES, value="FLAIR")
        self._contrast = ComboBox(label="contrast", choices=CONTRAST_CHOICES, value="T1")
        self._weights = LineEdit(label="extractor", value="anatomix", tooltip="registry name or a .pth file")
        self._model = FileEdit(label="model", mode="r", filter="*.pt", nullable=True, tooltip="segment: a model .pt")
        self._out = FileEdit(label="output folder", mode="d", tooltip="DIR/<case>/ and DIR/results.csv")
        self._workers = SpinBox(label="workers", value=1, min=1, max=256, tooltip="1: in this process")
        self._scheduler = LineEdit(label="scheduler", value="", tooltip="optional: tcp://host:port of a Dask cluster")
        self._force = CheckBox(text="redo completed cases", value=False)
        self._send = CheckBox(text="send labels back to the PACS (DICOM-SEG)", value=False)
        self._run = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        self._status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        self.table.setMaximumHeight(TABLE_HEIGHT)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)  # the whole text is the cell's tooltip
        header = self.table.horizontalHeader()
        for column in range(len(HEADERS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(HEADERS) - 1, QHeaderView.ResizeMode.Stretch)  # in view, never off-screen
        self._container = Container(
            widgets=[
                self._cohort,
                self._manifest,
                self._query,
                self._job,
                self._a,
                self._b,
                self._contrast,
                self._weights,
                self._model,
                self._out,
                self._workers,
                self._scheduler,
                self._force,
                self._send,
                Container(widgets=[self._run, self._cancel_button], layout="horizontal", labels=False),
                self._status,
            ]
        )
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addWidget(self.table)
        layout.addStretch(1)
        self.runner = JobRunner(label_status(self._status), self._set_busy, self._done, self._on_update)
        self.runner.bind(self, self.viewer)
        self._job.changed.connect(self._show_job_options)
        self._manifest.changed.connect(lambda value: setattr(self._cohort, "mode", "r" if value else "d"))
        self._run.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self.table.cellDoubleClicked.connect(lambda row, _column: self.open_case(self.table.item(row, 0).text()))
        self._show_job_options()

    def _show_job_options(self, _value: Any = None) -> None:
        job = self._job.value
        for widget, visible in (
            (self._a, job in ("compare", "register")),
            (self._b, job in ("compare", "register")),
            (self._contrast, job not in ("compare", "register")),
            (self._weights, job != "segment"),
            (self._model, job == "segment"),
            (self._send, job == "segment"),
        ):
            widget.visible = visible

    def _settings(self) -> FeatureSettings | SegmentOptions | CompareSettings | RegisterSettings:
        """The job's typed settings (those of the single-case job), checked as they are built."""
        if self._job.value == "segment":
            model = file_value(self._model.value)
            if model is None:
                raise ValueError("choose the segmentation model (.pt) first")
            return SegmentOptions(Path(model))
        weights = self._weights.value.strip() or "anatomix"
        if self._job.value == "register":  # A is the fixed volume, B the moving one
            return RegisterSettings(weights=weights)
        features = FeatureSettings(weights=weights)
        return CompareSettings(features) if self._job.value == "compare" else features

    def run(self, _value: Any = None) -> None:
        """Start the batch in the background (a problem with the parameters is shown, nothing starts); a PACS
        query is read first, in the background too."""
        if self.runner.is_running:
            return
        try:
            query = self._query.value.strip()
            cohort_path = query or file_value(self._cohort.value)
            out = file_value(self._out.value)
            if cohort_path is None or out is None:
                raise ValueError("choose the cohort (or a PACS query) and the output folder first")
            roles = {"a": self._a.value, "b": self._b.value} if self._job.value == "compare" else {}
            if self._job.value == "register":
                roles = {"fixed": self._a.value, "moving": self._b.value}
            roles = roles or {"image": self._contrast.value}
            send = bool(self._send.value) and self._job.value == "segment"
            if send and not query:
                raise ValueError("sending labels back needs a PACS query as the cohort")
            job = job_named(self._job.value, roles, self._settings(), send=send)
            if not query:
                cohort = read_cohort(cohort_path)
        except (ValueError, OSError, DomaingenError) as err:
            show_problem(self._status, str(err))
            return
        scheduler = self._scheduler.value.strip() or None
        workers = None if scheduler else int(self._workers.value)
        settings = BatchSettings(Path(out), workers, scheduler, None, bool(self._force.value))
        self._out_dir = Path(out)
        if not query:
            self._set_cases([case.name for case in cohort.cases])
            self.runner.start(lambda cancel: run_batch(cohort, job, settings, cancel), f"batch {job.name}")
            return

        def from_pacs(cancel: Any):  # the query is asked in the background; its cases fill the table, then the batch
            yield {"stage": "search", "fraction": 0.0, "message": f"asking {query.split('?')[0]} for the studies"}
            found = read_cohort(query)
            names = [case.name for case in found.cases]
            yield {"stage": "cases", "fraction": 0.0, "message": f"{len(names)} studies", "cases": names}
            return (yield from run_batch(found, job, settings, cancel))

        self._set_cases([])  # filled when the query has answered
        self.runner.start(from_pacs, f"batch {job.name} on a PACS query")

    def _set_cases(self, names: list[str]) -> None:
        """One waiting row per case, in the cohort's order."""
        self.rows = {}
        self.table.setRowCount(len(names))
        for index, name in enumerate(names):
            self._set_row(index, {"case": name, "status": "waiting"})
        self._order = list(names)

    def cancel(self, _value: Any = None) -> None:
        """Stop after the cases running now; finished cases keep their outputs and rows."""
        self.runner.cancel()

    @property
    def worker(self) -> Any:
        return self.runner.worker

    def _set_busy(self, busy: bool) -> None:
        button_busy(self._run, self._cancel_button)(busy)
        if not busy:
            self._reload_rows()

    def _reload_rows(self) -> None:
        """After a run (finished, cancelled or failed), rows still waiting take what ``results.csv`` records (e.g. a
        case whose redo was cancelled keeps its earlier outputs)."""
        out = getattr(self, "_out_dir", None)
        if out is None:
            return
        try:
            with open(out / "results.csv", newline="") as handle:
                recorded = {row["case"]: row for row in csv.DictReader(handle)}
        except (OSError, ValueError, KeyError):
            return
        for index, name in enumerate(self._order):
            if name in recorded and self.rows.get(name, {}).get("status", "waiting") == "waiting":
                self.rows[name] = recorded[name]
                self._set_row(index, recorded[name])

    def _on_update(self, update: Progress) -> None:
        if "cases" in update:  # a PACS query's cases, once read
            self._set_cases(list(update["cases"]))  # type: ignore[typeddict-item]
        row = update.get("row")
        if row is not None:
            self.rows[row["case"]] = row
            self._set_row(self._order.index(row["case"]), row)

    def _set_row(self, index: int, row: dict[str, Any]) -> None:
        cells = (
            row["case"],
            row["status"],
            "" if row.get("seconds") in (None, "") else f"{float(row['seconds']):.1f}",
            row.get("error") or _figures_text(row),  # a failed case: why; else its figures
        )
        for column, text in enumerate(cells):
            item = QTableWidgetItem(str(text))
            item.setToolTip(str(text))
            self.table.setItem(index, column, item)

    def _done(self, rows: list[dict[str, Any]]) -> str:
        failed = sum(r["status"] == "failed" for r in rows)
        text = f"{len(rows)} cases: {len(rows) - failed} done, {failed} failed; {self._out_dir / 'results.csv'}"
        set_status(self._status, text)
        return text

    def open_case(self, name: str) -> list[Any]:
        """Open a finished case's NIfTI outputs as layers (their own geometry); a problem is shown otherwise."""
        row = self.rows.get(name)
        if row is None or row["status"] not in ("ok", "skipped"):
            show_problem(self._status, f"case {name} has no outputs to open ({row['status'] if row else 'not run'})")
            return []
        files = case_outputs(self._out_dir / name)
        layers = self.viewer.open([str(f) for f in files], plugin="napari-domaingen", stack=False)
        set_status(self._status, f"opened {len(layers)} layers of case {name}")
        return layers
