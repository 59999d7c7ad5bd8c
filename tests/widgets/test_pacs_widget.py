"""The PACS dock in a real napari viewer against a real Orthanc: search, open a series (its exact geometry), draw
labels, send them as DICOM-SEG, find the SEG on the server and read it back; refusals and errors in the status."""

from __future__ import annotations

import time

import highdicom as hd
import numpy as np
import pytest

from napari_domaingen.io import dicomweb as dw
from napari_domaingen.io.dicom import read_series
from napari_domaingen.io.dicom_seg import read_dicom_seg
from napari_domaingen.io.geometry import display_affine_from_layer
from napari_domaingen.progress import run

from .._orthanc import PASSWORD, write_study
from ._gui import full_hd_window, plugin_widget


def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget.runner.outcome is not None and not widget.runner.is_running, timeout=timeout)
    qtbot.wait(50)


@pytest.fixture
def dock(make_napari_viewer, pacs_env, tmp_path):
    patient = f"PACS-DOCK-{time.time_ns()}"
    written = write_study(tmp_path / "source", patient)
    pacs_env.upload([f for _, files, _ in written.values() for f in files])
    viewer = make_napari_viewer()
    widget = plugin_widget(viewer, "PACS")
    widget._server.value = pacs_env.url
    return viewer, widget, patient, written


def test_search_open_draw_and_send_a_seg(dock, qtbot, pacs_env):
    viewer, widget, patient, written = dock
    full_hd_window(viewer, qtbot)
    widget._patient_id.value = patient
    widget.search()
    _wait(qtbot, widget)
    assert [s.patient_id for s in widget.studies] == [patient] and widget.study_table.rowCount() == 1
    widget.study_table.selectRow(0)  # a click on the study lists its series
    _wait(qtbot, widget)
    assert [widget.series_table.item(r, 0).text() for r in range(2)] == ["T1 axial", "FLAIR axial"]
    widget.series_table.selectRow(0)
    assert widget._open.enabled
    widget.open_selected()
    _wait(qtbot, widget)
    image = viewer.layers["T1 axial"]
    original = read_series(written["T1"][2])
    assert np.array_equal(np.asarray(image.data), original.data)
    assert np.allclose(display_affine_from_layer(image), original.display_affine, atol=1e-6)

    drawn = np.zeros(image.data.shape, np.uint8)
    drawn[10:20, 12:22, 8:18] = 1
    drawn[4:8, 4:8, 4:8] = 2
    labels = viewer.add_labels(drawn, name="tumour", **_geometry(image))
    widget._labels.value = labels
    widget.send()
    _wait(qtbot, widget)
    sent = widget.sent
    assert sent is not None, widget._status.value
    assert (widget._seg_series.value, widget._seg_instance.value) == (sent.series_uid, sent.sop_instance_uid)
    assert widget._kept.value == str(sent.path) and sent.path.is_file()
    assert "stored the segmentation" in widget._status.value and PASSWORD not in widget._status.value
    server = dw.server_from(pacs_env.url)
    (stored,) = [s for s in dw.find_series(server, sent.study_uid) if s.modality == "SEG"]
    assert stored.uid == sent.series_uid
    back = next(run(dw.get_series(server, sent.study_uid, stored.uid)).glob("*.dcm"))
    assert hd.seg.segread(back).SOPInstanceUID == sent.sop_instance_uid
    assert np.array_equal(read_dicom_seg(back).data, drawn)
    widget.list_series(0)  # the study now lists the SEG too; it is not an image to open
    _wait(qtbot, widget)
    row = [s.modality for s in widget.series].index("SEG")
    widget.series_table.selectRow(row)
    widget.open_selected()
    assert "not image series" in widget._status.value and len(viewer.layers) == 2


def _geometry(layer):
    return {"scale": layer.scale, "translate": layer.translate, "affine": layer.affine, "metadata": {}}


def test_labels_not_on_a_retrieved_series_are_refused_and_errors_are_shown(dock, qtbot, monkeypatch):
    viewer, widget, patient, _ = dock
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="local")
    widget._labels.value = viewer.add_labels(np.ones((8, 8, 8), np.uint8), name="hand drawn")
    widget.send()
    assert "not on a series opened from the PACS" in widget._status.value and widget.sent is None
    widget._patient_id.value = "NOBODY"
    widget.search()
    _wait(qtbot, widget)
    assert widget._status.value == "no study matches"
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_PASSWORD", "wrong-password")
    widget._patient_id.value = patient
    widget.search()
    _wait(qtbot, widget)
    assert "HTTP 401" in widget._status.value and "wrong-password" not in widget._status.value
