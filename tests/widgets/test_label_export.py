"""Labels leave napari with their names: DICOM Segmentations and NIfTI sidecars through a real viewer."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from napari_domaingen._napari.layers import geometry_kwargs
from napari_domaingen.io.errors import VolumeWriteError

from .._oblique import oblique_affine
from ..io.test_dicom import write_series
from ..io.test_dicom_seg import NAMES, _tcga_crop

PLUGIN = "napari-domaingen"


def _world(layer, index):
    return np.asarray(layer.data_to_world(np.asarray(index, dtype=float)))


@pytest.fixture
def dicom_with_labels(tmp_path):  # tests list it before make_napari_viewer: it skips without ../shared
    voxels, labels = _tcga_crop((30, 28, 20))
    affine = oblique_affine("LPS")
    uid, _files = write_series(tmp_path / "series", voxels, affine, modality="MR", description="T1 oblique")
    display = nib.as_closest_canonical(nib.Nifti1Image(labels, affine))
    return tmp_path / "series", uid, np.asarray(display.dataobj).transpose(2, 1, 0)


def test_labels_drawn_on_a_dicom_series_save_as_seg_and_reopen_in_place(
    dicom_with_labels, make_napari_viewer, tmp_path
):
    folder, uid, labels = dicom_with_labels
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    assert image.data.shape == labels.shape
    layer = viewer.add_labels(
        labels,
        name="tumour",
        features={"index": [0, 1, 2, 4], "name": ["background", *NAMES.values()]},
        **geometry_kwargs(image),
    )
    out = tmp_path / "tumour.dcm"
    assert layer.save(str(out), plugin=PLUGIN) == [str(out)]

    seg = hd.seg.segread(out)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == list(NAMES.values())
    assert seg.get_segment_description(1).algorithm_type.value == "MANUAL"  # drawn, not made by a model

    (back,) = viewer.open(str(out), plugin=PLUGIN)
    assert back._type_string == "labels" and np.array_equal(back.data, labels)
    for index in ([0, 0, 0], [s - 1 for s in labels.shape], [7, 11, 13]):
        np.testing.assert_allclose(_world(back, index), _world(layer, index), atol=1e-3)
    assert dict(zip(back.features["index"], back.features["name"])) == NAMES
    colour = np.asarray(back.colormap.map(np.array([4])))[0][:3]
    np.testing.assert_allclose(colour, np.asarray(layer.colormap.map(np.array([4])))[0][:3], atol=0.02)


def test_a_folder_with_the_series_and_its_seg_opens_both(dicom_with_labels, make_napari_viewer, tmp_path):
    folder, _uid, labels = dicom_with_labels
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    layer = viewer.add_labels(labels, name="tumour", **geometry_kwargs(image))
    layer.save(str(folder / "seg.dcm"), plugin=PLUGIN)
    layers = viewer.open(str(folder), plugin=PLUGIN)
    assert [type(x).__name__ for x in layers] == ["Image", "Labels"]
    assert np.array_equal(layers[1].data, labels)


def test_labels_without_a_dicom_source_say_how_to_export(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.ones((4, 5, 6), np.uint8))
    with pytest.raises(VolumeWriteError, match="domaingen export LABELS.nii.gz --reference DICOM_DIR"):
        layer.save(str(tmp_path / "x.dcm"), plugin=PLUGIN)
    assert not (tmp_path / "x.dcm").exists()


def test_names_and_colours_survive_a_nifti_save(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    data = rng.choice([0, 3, 8], size=(6, 7, 8)).astype(np.uint8)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(
        data,
        name="tissue",
        scale=(2.0, 0.9, 0.8),
        features={"index": [0, 3, 8], "name": ["background", "grey matter", "white matter"]},
        colormap={None: (1, 1, 1, 1), 0: (0, 0, 0, 0), 3: (1.0, 0.0, 0.0, 1.0), 8: (0.0, 0.0, 1.0, 1.0)},
    )
    out = tmp_path / "tissue.nii.gz"
    written = layer.save(str(out), plugin=PLUGIN)
    assert written == [str(out), str(tmp_path / "tissue.json"), str(tmp_path / "tissue.txt")]
    labels = json.loads((tmp_path / "tissue.json").read_text())["labels"]
    assert [(x["value"], x["name"], x["colour"]) for x in labels] == [
        (0, "background", [0, 0, 0]),
        (3, "grey matter", [255, 0, 0]),
        (8, "white matter", [0, 0, 255]),
    ]
    (back,) = viewer.open(str(out), plugin=PLUGIN)
    assert back._type_string == "labels" and np.array_equal(back.data, data)
    assert list(back.features["name"]) == ["background", "grey matter", "white matter"]
    np.testing.assert_allclose(np.asarray(back.colormap.map(np.array([3, 8])))[:, :3], [[1, 0, 0], [0, 0, 1]])
    (tmp_path / "tissue.json").unlink()  # the ITK-SNAP file alone gives the same
    (again,) = viewer.open(str(out), plugin=PLUGIN)
    assert list(again.features["name"]) == ["background", "grey matter", "white matter"]


def test_model_labels_corrected_by_hand_are_semiautomatic(dicom_with_labels, make_napari_viewer, tmp_path):
    from napari_domaingen._widgets.maskgen_segment import _mark_edited

    folder, _uid, labels = dicom_with_labels
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    geometry = geometry_kwargs(image)
    geometry["metadata"]["domaingen"]["maskgen"] = {"method": "ERM", "model_sha256": "ab" * 32, "model": "m.pt"}
    layer = viewer.add_labels(labels, name="model labels", **geometry)
    layer.save(str(tmp_path / "auto.dcm"), plugin=PLUGIN)
    _mark_edited(layer)  # what a paint stroke on a segmentation does
    layer.save(str(tmp_path / "edited.dcm"), plugin=PLUGIN)
    kinds = [hd.seg.segread(tmp_path / n).get_segment_description(1) for n in ("auto.dcm", "edited.dcm")]
    assert [k.algorithm_type.value for k in kinds] == ["AUTOMATIC", "SEMIAUTOMATIC"]
    assert kinds[1].algorithm_identification[0].AlgorithmName == "ERM"
    assert kinds[1].algorithm_identification[0].AlgorithmVersion == "ab" * 32


def _two_series_on_one_grid(tmp_path):
    """Two MR series (T1-like and FLAIR-like values) of one study written on one oblique grid."""
    rng = np.random.default_rng(3)
    affine = oblique_affine("LPS")
    voxels = rng.integers(0, 400, (24, 20, 12)).astype(np.int16)
    t1, _ = write_series(tmp_path / "t1", voxels, affine, modality="MR", description="T1")
    flair, _ = write_series(tmp_path / "flair", voxels[::-1].copy(), affine, modality="MR", description="FLAIR")
    return (tmp_path / "t1", t1), (tmp_path / "flair", flair)


def _new_labels_drawn_on(viewer, qtbot, image):
    """Select ``image``, press the layer list's *New labels* button and paint a block, as a user does."""
    viewer.layers.selection.active = image
    viewer.window._qt_viewer.layerButtons.newLabelsButton.click()
    layer = viewer.layers.selection.active
    assert layer._type_string == "labels" and layer.data.shape == image.data.shape
    assert not layer.metadata  # napari's own layer: the grid of the image, no record of the series
    layer.paint((5, 9, 9), 2)
    layer.paint((6, 10, 10), 1)
    return layer


@pytest.mark.slow
def test_new_labels_drawn_on_a_dicom_series_save_as_seg(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.2: *New labels* on a DICOM volume was refused as 'not on a volume read from a DICOM series'."""
    from ._gui import full_hd_window

    (folder, uid), _ = _two_series_on_one_grid(tmp_path)
    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    layer = _new_labels_drawn_on(viewer, qtbot, image)
    out = tmp_path / "drawn.dcm"
    assert layer.save(str(out), plugin=PLUGIN) == [str(out)]
    seg = hd.seg.segread(out)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert seg.get_segment_description(1).algorithm_type.value == "MANUAL"
    (back,) = viewer.open(str(out), plugin=PLUGIN)
    assert np.array_equal(back.data, layer.data)
    for index in ([0, 0, 0], [5, 9, 9]):
        np.testing.assert_allclose(_world(back, index), _world(image, index), atol=1e-3)


@pytest.mark.slow
def test_new_labels_on_two_fitting_series_ask_which_one(make_napari_viewer, qtbot, tmp_path):
    """Two series on one grid: a dialog lists both; the chosen one is referenced and remembered."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QComboBox, QInputDialog

    from ._gui import full_hd_window

    (t1_folder, _t1), (flair_folder, flair_uid) = _two_series_on_one_grid(tmp_path)
    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    (t1,) = viewer.open(str(t1_folder), plugin=PLUGIN)
    viewer.open(str(flair_folder), plugin=PLUGIN)
    layer = _new_labels_drawn_on(viewer, qtbot, t1)
    shown: list[list[str]] = []

    def pick_flair():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QInputDialog):
            QTimer.singleShot(50, pick_flair)
            return
        combo = dialog.findChild(QComboBox)
        shown.append([combo.itemText(i) for i in range(combo.count())])
        combo.setCurrentIndex(1)
        dialog.accept()

    QTimer.singleShot(50, pick_flair)
    out = tmp_path / "drawn.dcm"
    assert layer.save(str(out), plugin=PLUGIN) == [str(out)]
    assert len(shown[0]) == 2 and "t1" in shown[0][0].lower() and "flair" in shown[0][1].lower()
    assert hd.seg.segread(out).ReferencedSeriesSequence[0].SeriesInstanceUID == flair_uid
    again = tmp_path / "again.dcm"
    assert layer.save(str(again), plugin=PLUGIN) == [str(again)]  # remembered: no second dialog
    assert hd.seg.segread(again).ReferencedSeriesSequence[0].SeriesInstanceUID == flair_uid
