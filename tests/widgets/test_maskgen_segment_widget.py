"""The "MaskGen — segment" dock widget in a real napari viewer (a 40³ real crop, a tiny model trained here, CPU)."""

import numpy as np
import pytest

from ..conftest import tcga_tumour_region

PLUGIN = "napari-domaingen"
SCALE = (2.0, 0.9, 0.8)
TRANSLATE = (10.0, -5.0, 3.0)
CLASS_NAMES = ("background", "necrosis", "oedema")


@pytest.fixture(autouse=True)
def _fresh(fresh_feature_caches, monkeypatch):
    """No extractors or remembered checkpoints left over from other tests."""
    from napari_domaingen._widgets import maskgen_train

    monkeypatch.setattr(maskgen_train, "LAST_TRAINED", [])


@pytest.fixture(scope="module")
def case():
    """(image, labels) 40³ around the TCGA tumour, the labels' 2 renamed 4: values 0, 1, 4 (not contiguous)."""
    image, labels, region = tcga_tumour_region(20)
    crop = labels.data[region].astype(np.uint8)
    crop[crop == 2] = 4
    return image.data[region].astype(np.float32), crop


@pytest.fixture(scope="module")
def trained(case, tmp_path_factory, anatomix_weights):
    """A MaskGen and an ERM checkpoint (tiny UNet, 2 steps each)."""
    from napari_domaingen.core.maskgen_training import TrainSettings, train
    from napari_domaingen.core.segmentation_data import labelled_volume
    from napari_domaingen.progress import run

    folder = tmp_path_factory.mktemp("models")
    volume = labelled_volume(*case, name="tcga crop")
    paths = {}
    for method, use_features in (("maskgen", True), ("erm", False)):
        settings = TrainSettings(
            weights=str(anatomix_weights),
            use_features=use_features,
            base=4,
            levels=2,
            crop=32,
            steps=2,
            batch_size=1,
            lr=3e-3,
            augment=False,
            device="cpu",
            class_names=CLASS_NAMES,
        )
        paths[method] = run(train([volume], folder / f"{method}.pt", settings)).checkpoint
    return paths


def _widget(viewer):
    from napari_domaingen._widgets.maskgen_segment import MaskGenSegmentWidget

    widget = MaskGenSegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="MaskGen — segment")
    widget._device.value = "cpu"
    return widget


def _image(viewer, case):
    return viewer.add_image(case[0], name="t1", scale=SCALE, translate=TRANSLATE)


def _run(qtbot, widget, layers_before, viewer, added=1, timeout=30000):
    widget._run.native.click()
    qtbot.waitUntil(lambda: len(viewer.layers) == layers_before + added, timeout=timeout)
    qtbot.waitUntil(lambda: not widget.worker.is_running and widget._run.enabled, timeout=timeout)


@pytest.mark.slow
def test_segment_adds_labels_with_class_names_on_the_image_grid(make_napari_viewer, qtbot, case, trained, tmp_path):
    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    src = _image(viewer, case)
    widget = _widget(viewer)
    widget._model.value = trained["maskgen"]
    assert widget._model_info.value.startswith("MaskGen (image + ")
    assert "classes: necrosis, oedema" in widget._model_info.value and "trained 2/2 steps" in widget._model_info.value
    assert widget._overlap.value == pytest.approx(0.5) and widget._feature_mode.value == "auto"
    widget._probabilities.value = True
    _run(qtbot, widget, 1, viewer, added=2)

    labels, probabilities = viewer.layers[1], viewer.layers[2]
    assert labels.name == "t1 MaskGen labels" and labels.data.shape == case[0].shape
    assert set(np.unique(labels.data)) <= {0, 1, 4}
    assert tuple(labels.scale) == SCALE and tuple(labels.translate) == TRANSLATE
    np.testing.assert_allclose(labels.affine.affine_matrix, src.affine.affine_matrix)
    assert list(labels.features["index"]) == [0, 1, 4] and list(labels.features["name"]) == list(CLASS_NAMES)
    assert labels._label_index == {0: 0, 1: 1, 4: 2}  # value 4 → row "oedema" in napari's status bar
    meta = labels.metadata["domaingen"]["maskgen"]
    assert meta["model"] == str(trained["maskgen"]) and meta["class_names"] == list(CLASS_NAMES)

    assert probabilities.name == "t1 MaskGen probabilities" and not probabilities.visible
    assert probabilities.data.shape == (3, *case[0].shape) and probabilities.data.dtype == np.float32
    np.testing.assert_allclose(probabilities.data.sum(axis=0), 1.0, atol=1e-4)
    assert tuple(probabilities.scale) == (1.0, *SCALE) and tuple(probabilities.translate) == (0.0, *TRANSLATE)

    status = widget._status.value
    assert status.startswith("MaskGen: voxels per class: necrosis")
    assert "warning" in status and "differ from the training data" in status  # 2 × 0.9 × 0.8 mm vs 1 mm
    assert widget.last_result is not None and widget.last_result.warnings
    assert meta["feature_mode"] == "shared"  # auto: a 40³ volume's features fit in memory

    # provenance for the sidecars / DICOM-SEG, and the per-class statistics table under the dock
    from napari_domaingen.models.weights import sha256_file

    assert meta["method"] == "MaskGen" and meta["model_sha256"] == sha256_file(trained["maskgen"])
    rows = widget.stats.rows
    assert [(r.value, r.name) for r in rows] == [(1, "necrosis"), (4, "oedema")]
    assert widget.stats.table.rowCount() == 2 and widget.stats.table.item(1, 1).text() == "oedema"
    for row in rows:
        assert row.voxels == int((labels.data == row.value).sum())
        assert row.volume_mm3 == pytest.approx(row.voxels * np.prod(SCALE))
        if row.voxels:
            assert row.mean == pytest.approx(float(case[0][labels.data == row.value].mean()), rel=1e-5)
    labels.paint((20, 20, 20), 1)  # a correction by hand: the labels are now semi-automatic
    assert labels.metadata["domaingen"]["maskgen"]["edited"] is True
    # issue 27.6: the statistics follow the painting by themselves (they stayed at the model's figures until Compute)
    painted = int((labels.data == 1).sum())
    assert painted != rows[0].voxels

    def shown_voxels() -> str:
        table = widget.stats.table
        return next(table.item(i, 2).text() for i in range(table.rowCount()) if table.item(i, 0).text() == "1")

    qtbot.waitUntil(lambda: shown_voxels() == str(painted), timeout=5000)
    assert widget.stats.rows[0].voxels == painted
    saved = widget.stats.save(tmp_path / "stats.csv").read_text().splitlines()
    assert saved[0] == "value,name,voxels,volume_mm3,mean,std" and saved[2].startswith("4,oedema,")


@pytest.mark.slow
def test_ablation_changes_what_the_model_sees(make_napari_viewer, qtbot, case, trained):
    viewer = make_napari_viewer()
    _image(viewer, case)
    widget = _widget(viewer)
    widget._model.value = trained["maskgen"]
    widget._probabilities.value = True
    widget._window.value = "crop"  # the paper's windows on both sides: only the ablation differs in what it sees
    assert "Fig. 4" in widget._ablation.tooltip
    _run(qtbot, widget, 1, viewer, added=2)
    full = viewer.layers["t1 MaskGen probabilities"].data
    widget._ablation.value = "image"
    widget._feature_mode.value = "per-window"
    _run(qtbot, widget, 3, viewer, added=2)
    assert viewer.layers[-2].name == "t1 MaskGen labels (image zeroed)"
    assert widget.last_result.settings.ablation == "image"
    assert widget.last_result.settings.feature_mode == "per-window"
    assert not np.allclose(viewer.layers[-1].data, full, atol=1e-3)

    widget._model.value = trained["erm"]  # an ERM model has no features to zero
    assert widget._model_info.value.startswith("ERM (image only)")
    assert not widget._ablation.enabled and widget._ablation.value == "none"
    widget._probabilities.value = False
    _run(qtbot, widget, 5, viewer)
    assert viewer.layers[-1].name == "t1 ERM labels"


def test_wrong_files_say_why_and_start_nothing(make_napari_viewer, qtbot, case, anatomix_weights, tmp_path):
    viewer = make_napari_viewer()
    _image(viewer, case)
    widget = _widget(viewer)
    widget._run.native.click()
    assert "choose a model checkpoint" in widget._status.value and widget.worker is None

    widget._model.value = anatomix_weights  # the extractor's weights chosen as the model
    status = widget._status.value
    assert "not a MaskGen/ERM segmentation model" in status and "choose it as the feature extractor" in status
    assert widget._model_info.value == ""
    widget._run.native.click()
    assert "not a MaskGen/ERM segmentation model" in widget._status.value and widget.worker is None

    text = tmp_path / "notes.pt"
    text.write_text("hello")
    widget._model.value = text
    assert "not a PyTorch checkpoint" in widget._status.value
    widget._model.value = tmp_path / "missing.pt"
    assert "not found" in widget._status.value
    assert len(viewer.layers) == 1


def test_use_the_model_just_trained(make_napari_viewer, qtbot, case, trained):
    from napari_domaingen._widgets import maskgen_train

    viewer = make_napari_viewer()
    _image(viewer, case)
    widget = _widget(viewer)
    widget._use_last.native.click()
    assert "no model has been trained in this session" in widget._status.value

    maskgen_train._remember(trained["erm"])
    maskgen_train._remember(trained["maskgen"])  # the last one written wins
    widget._use_best.native.click()  # trained without validation: no best model
    assert "wrote no best model" in widget._status.value and widget._model.value is None
    widget._use_last.native.click()
    assert widget._model.value == trained["maskgen"] and widget._model_info.value.startswith("MaskGen")
    maskgen_train._remember(trained["erm"], best=trained["maskgen"])  # a run whose best model is another file
    widget._use_best.native.click()
    assert widget._model.value == trained["maskgen"] and maskgen_train.latest_checkpoint() == trained["erm"]
    _run(qtbot, widget, 1, viewer)
    assert viewer.layers[-1].name == "t1 MaskGen labels"


def test_a_model_trained_in_the_train_widget_is_used(make_napari_viewer, qtbot, case, anatomix_weights, tmp_path):
    """Both dock widgets from the plugin menu: train for 2 steps, then 'use the model just trained'."""
    from napari_domaingen._widgets.maskgen_segment import MaskGenSegmentWidget
    from napari_domaingen._widgets.maskgen_train import MaskGenTrainWidget

    viewer = make_napari_viewer()
    _image(viewer, case)
    viewer.add_labels(case[1], name="tumour", scale=SCALE, translate=TRANSLATE)
    _dock, trainer = viewer.window.add_plugin_dock_widget(PLUGIN, "MaskGen — train")
    _dock, segmenter = viewer.window.add_plugin_dock_widget(PLUGIN, "MaskGen — segment")
    assert isinstance(trainer, MaskGenTrainWidget) and isinstance(segmenter, MaskGenSegmentWidget)
    trainer._weights_file.value = anatomix_weights
    trainer._method.value = "erm"
    trainer._base.value, trainer._levels.value, trainer._crop.value = 4, 2, 32
    trainer._steps.value, trainer._batch.value, trainer._augment.value = 2, 1, False
    trainer._output.value = tmp_path / "erm.pt"
    trainer._start.native.click()
    qtbot.waitUntil(lambda: trainer.last_result is not None, timeout=30000)

    segmenter._device.value = "cpu"
    segmenter._use_last.native.click()
    assert segmenter._model.value == tmp_path / "erm.pt"
    _run(qtbot, segmenter, 2, viewer)
    assert viewer.layers[-1].name == "t1 ERM labels" and tuple(viewer.layers[-1].scale) == SCALE
