"""The Batch dock with a real viewer: run a cohort case by case, cancel, open a finished case."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_domaingen._napari.output_layers import COSINE_COLORMAP, COSINE_LIMITS

from ..core.test_batch import cohort_dir  # noqa: F401 (the module-scoped cohort fixture)


def _widget(viewer, cohort, out, weights):
    from napari_domaingen._widgets.batch import BatchWidget

    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Batch")
    widget._cohort.value, widget._out.value, widget._weights.value = cohort, out, str(weights)
    return widget


@pytest.mark.slow
def test_batch_dock_runs_cancels_and_opens_a_case(cohort_dir, anatomix_weights, make_napari_viewer, qtbot, tmp_path):  # noqa: F811
    from ._gui import full_hd_window

    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    widget = _widget(viewer, cohort_dir, tmp_path / "out", anatomix_weights)
    assert not widget._a.native.isHidden() and widget._model.native.isHidden()  # compare: A, B, the extractor
    widget._run.native.click()
    qtbot.waitUntil(lambda: "cases:" in widget._status.value, timeout=60000)
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=10000)
    assert widget.table.rowCount() == 5
    statuses = {widget.table.item(i, 0).text(): widget.table.item(i, 1).text() for i in range(5)}
    assert statuses == {"brats": "ok", "corrupt": "failed", "noflair": "failed", "offgrid": "failed", "tcga": "ok"}
    assert "cka_features" in widget.table.item(4, 3).text()
    assert "5 cases: 2 done, 3 failed" in widget._status.value
    why = {widget.table.item(i, 0).text(): widget.table.item(i, 3).text() for i in range(5)}
    assert why["corrupt"].startswith("case corrupt: its T1 file cannot be used: ")  # issue 27.6: no contradiction

    row = [widget.table.item(i, 0).text() for i in range(5)].index("tcga")
    widget.table.scrollToItem(widget.table.item(row, 0))
    cell = widget.table.visualItemRect(widget.table.item(row, 0)).center()
    qtbot.mouseClick(widget.table.viewport(), Qt.MouseButton.LeftButton, pos=cell)  # a user's double-click:
    qtbot.mouseDClick(widget.table.viewport(), Qt.MouseButton.LeftButton, pos=cell)  # press, release, press
    assert widget._status.value.startswith("opened 3 layers of case tcga")
    layers = list(viewer.layers)
    names = [layer.name for layer in layers]
    assert len(layers) == 3 and "cosine_similarity" in names and all(layer.ndim >= 3 for layer in layers)
    cosine = layers[names.index("cosine_similarity")]
    assert np.allclose(cosine.scale[-3:], (1.0, 1.0, 1.0)) and cosine.data.shape[-3:] == (32, 40, 40)
    # Issue 27.4: as the Compare dock shows them, not three grey additive layers per rendering and a grey map
    assert cosine.colormap.name == COSINE_COLORMAP and tuple(cosine.contrast_limits) == COSINE_LIMITS
    renderings = [layer for layer in layers if layer.name.endswith("_features_rgb")]
    assert len(renderings) == 2 and all(layer.rgb and layer.data.shape == (32, 40, 40, 3) for layer in renderings)
    assert all(np.allclose(layer.scale, cosine.scale) for layer in renderings)
    assert widget.open_case("noflair") == [] and "has no outputs" in widget._status.value

    # cancel: a second run stops after the case in progress; every row then shows what results.csv records (issue
    # 27.7: a cancelled redo kept the rows of cases whose earlier outputs are still on disk), or "waiting"
    widget._force.value = True
    widget._run.native.click()
    widget.cancel()
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=60000)
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        kept = {row["case"]: row["status"] for row in csv.DictReader(handle)}
    assert kept["tcga"] in ("ok", "skipped") and kept["brats"] in ("ok", "skipped")
    statuses = {widget.table.item(i, 0).text(): widget.table.item(i, 1).text() for i in range(5)}
    assert statuses == {name: kept.get(name, "waiting") for name in statuses}
    assert widget.open_case("tcga")


@pytest.mark.slow
def test_batch_dock_shows_why_a_case_failed_and_labels_the_cohort(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.7: the error column was off-screen at 1920 × 1080 and the cohort field had no label."""
    from qtpy.QtWidgets import QLabel

    from napari_domaingen._widgets.batch import BatchWidget

    from ._gui import full_hd_window

    (tmp_path / "cohort" / "case-without-flair").mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)),
        tmp_path / "cohort" / "case-without-flair" / "x_t1.nii.gz",
    )
    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Batch")
    assert any(label.text() == "cohort" and label.isVisibleTo(widget) for label in widget.findChildren(QLabel))
    widget._cohort.value, widget._out.value = tmp_path / "cohort", tmp_path / "out"
    widget._run.native.click()
    qtbot.waitUntil(lambda: "cases:" in widget._status.value, timeout=30000)
    qtbot.wait(50)
    text = widget.table.item(0, 3).text()
    assert widget.table.item(0, 1).text() == "failed" and "FLAIR" in text
    header, viewport = widget.table.horizontalHeader(), widget.table.viewport()
    left = header.sectionViewportPosition(3)
    assert 0 <= left and left + 120 <= viewport.width()  # the reason starts on screen, with room to read it
    assert widget.table.item(0, 3).toolTip() == text


def test_batch_dock_says_what_is_missing(make_napari_viewer, tmp_path):
    from napari_domaingen._widgets.batch import BatchWidget

    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    widget._job.value = "segment"
    assert not widget._model.native.isHidden() and not widget._contrast.native.isHidden()
    assert widget._a.native.isHidden()
    widget._cohort.value, widget._out.value = tmp_path, tmp_path / "out"
    widget.run()
    assert "choose the segmentation model" in widget._status.value and not widget.runner.is_running


def test_batch_dock_segments_a_pacs_query_and_sends_the_segs(pacs_env, make_napari_viewer, qtbot, tmp_path):
    """Issue 31: a DICOMweb query as the cohort (read in the background), the labels sent back as DICOM-SEG."""
    import time

    from napari_domaingen._widgets.batch import BatchWidget
    from napari_domaingen.io import dicomweb as dw

    from .._orthanc import write_study
    from ..conftest import tiny_erm_model

    prefix = f"PACS-BATCHDOCK-{time.time_ns()}"
    for number in (1, 2):
        written = write_study(tmp_path / "source", f"{prefix}-{number}", contrasts=("T1",))
        pacs_env.upload(written["T1"][1])
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    widget._job.value = "segment"
    assert not widget._send.native.isHidden()
    widget._model.value, widget._out.value = tiny_erm_model(tmp_path / "tiny.pt"), tmp_path / "out"
    widget._send.value, widget._cohort.value = True, tmp_path
    widget.run()  # a folder cohort cannot be sent back
    assert "needs a PACS query" in widget._status.value and not widget.runner.is_running
    widget._query.value = f"dicomweb+{pacs_env.url}?PatientID={prefix}-*"
    widget.run()
    qtbot.waitUntil(lambda: widget.runner.outcome is not None and not widget.runner.is_running, timeout=120000)
    assert widget._status.value.startswith("2 cases: 2 done, 0 failed"), widget._status.value
    assert [widget.table.item(r, 1).text() for r in range(2)] == ["ok", "ok"]
    server = dw.server_from(pacs_env.url)
    for row in widget.rows.values():
        study = dw.find_studies(server, patient_id=row["case"].split("_")[0])[0].uid
        assert [s.uid for s in dw.find_series(server, study) if s.modality == "SEG"] == [row["seg_series_uid"]]
