"""The Batch dock with a real viewer: run a cohort case by case, cancel, open a finished case."""

from __future__ import annotations

import numpy as np
import pytest

from ..core.test_batch import cohort_dir  # noqa: F401 (the module-scoped cohort fixture)


def _widget(viewer, cohort, out, weights):
    from napari_domaingen._widgets.batch import BatchWidget

    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Batch")
    widget._cohort.value, widget._out.value, widget._weights.value = cohort, out, str(weights)
    return widget


@pytest.mark.slow
def test_batch_dock_runs_cancels_and_opens_a_case(cohort_dir, anatomix_weights, make_napari_viewer, qtbot, tmp_path):  # noqa: F811
    viewer = make_napari_viewer()
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

    layers = widget.open_case("tcga")  # what a double-click does
    names = [layer.name for layer in layers]
    assert "cosine_similarity" in names and all(layer.ndim >= 3 for layer in layers)
    cosine = layers[names.index("cosine_similarity")]
    assert np.allclose(cosine.scale[-3:], (1.0, 1.0, 1.0)) and cosine.data.shape[-3:] == (32, 40, 40)
    assert widget.open_case("noflair") == [] and "has no outputs" in widget._status.value

    # cancel: a second run stops after the case in progress; finished rows stay
    widget._force.value = True
    widget._run.native.click()
    widget.cancel()
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=60000)
    assert widget._run.enabled and any(widget.table.item(i, 1).text() == "waiting" for i in range(5))


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
