"""The "Load volumes" dock widget in a real napari viewer, with the BraTS case and synthetic copies."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ..conftest import shared_file

BRATS = ("data", "mri", "brats23-gli-00001-000")
CT_PATH = ("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz")
SUBJECT = "BraTS-GLI-00001-000"


def _widget(viewer):
    from napari_domaingen._widgets.load_volumes import LoadVolumesWidget

    widget = LoadVolumesWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Load volumes")
    return widget


def _wait_done(qtbot, widget, timeout=30000):
    qtbot.waitUntil(
        lambda: widget.worker is not None and not widget.worker.is_running and widget.load_button.isEnabled(),
        timeout=timeout,
    )


def _moved_copy(path, out):
    """A crop of a BraTS volume rotated by 8° about S and shifted by (6, -4, 3) mm, as uncompressed NIfTI."""
    image = nib.load(str(path)).slicer[60:180, 60:200, 40:120]
    t = np.radians(8.0)
    world = np.eye(4)
    world[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    world[:3, 3] = (6.0, -4.0, 3.0)
    affine = world @ image.affine
    moved = nib.Nifti1Image(np.asarray(image.dataobj), affine)
    moved.set_qform(affine, code=1)
    moved.set_sform(affine, code=1)
    nib.save(moved, str(out))
    return out


def _crop_data(folder):
    return nib.load(str(folder / f"{SUBJECT}-t1n.nii.gz")).slicer[60:180, 60:200, 40:120].dataobj


@pytest.mark.slow
def test_load_brats_folder_then_resample_a_moved_copy(make_napari_viewer, qtbot, tmp_path):
    folder = shared_file(*BRATS)
    viewer = make_napari_viewer()
    widget = _widget(viewer)

    new = widget.add_paths([folder])
    assert len(new) == 5 and widget.table.rowCount() == 5
    contrasts = [widget.table.cellWidget(r, 1).currentText() for r in range(5)]
    assert contrasts == ["T1", "T1c", "T2", "FLAIR", "labels"]
    assert widget.table.item(0, 2).text() == f"{SUBJECT}-t1n.nii.gz"
    assert widget.table.item(0, 5).text() == "240×240×155"
    assert widget.table.item(0, 7).text() == "LPS"
    assert widget.table.item(0, 9).text() == "0 … 2921"
    assert widget.add_paths([folder]) == []  # already listed
    widget.set_checked(4, False)  # not the inpainting mask

    widget.load_button.click()
    # the load runs in a worker: nothing is added until its result comes back through the event loop
    assert widget.worker is not None
    assert len(viewer.layers) == 0
    assert not widget.load_button.isEnabled()
    _wait_done(qtbot, widget)

    names = [layer.name for layer in viewer.layers]
    assert names == [f"{SUBJECT} T1", f"{SUBJECT} T1c", f"{SUBJECT} T2", f"{SUBJECT} FLAIR"]
    t1 = viewer.layers[0]
    assert t1.data.shape == (155, 240, 240) and t1.colormap.name == "gray"
    assert tuple(t1.scale) == (1.0, 1.0, 1.0)
    assert all(tuple(layer.translate) == tuple(t1.translate) for layer in viewer.layers)
    assert viewer.layers[0].metadata["domaingen"]["nifti_source"].path.endswith("-t1n.nii.gz")
    assert widget.checked_rows() == [] or widget.checked_rows() == [4]
    assert widget.grid_label.text().startswith("4 volumes on one grid")
    assert widget.resample_button.isHidden()
    low, high = t1.contrast_limits  # default preset MRI 1–99 % of the non-zero voxels
    assert 0 < low < high < 2921

    # a rotated, shifted crop of the T1: reported, then resampled onto the T1 grid in one click
    copy = _moved_copy(folder / f"{SUBJECT}-t1n.nii.gz", tmp_path / "moved_t1n.nii")
    assert len(widget.add_paths([copy])) == 1
    assert widget.checked_rows() == [5]
    widget.load_button.click()
    _wait_done(qtbot, widget)
    moved = viewer.layers[-1]
    assert moved.data.shape == (80, 140, 120)
    assert widget.grid_label.text().startswith("not on one grid: ")
    assert "rotated by 8.0°" in widget.grid_label.text()
    assert not widget.resample_button.isHidden()
    assert widget.resample_button.text() == f"Resample onto {SUBJECT} T1"

    widget.resample_button.click()
    _wait_done(qtbot, widget)
    assert moved.data.shape == t1.data.shape
    assert tuple(moved.scale) == tuple(t1.scale)
    assert tuple(moved.translate) == tuple(t1.translate)
    assert np.allclose(moved.affine.affine_matrix, t1.affine.affine_matrix)
    assert moved.metadata["domaingen"]["nifti_source"] is t1.metadata["domaingen"]["nifti_source"]
    assert moved.metadata["domaingen"]["resampled_onto"] == f"{SUBJECT} T1"
    assert widget.grid_label.text().startswith("5 volumes on one grid")
    assert widget.resample_button.isHidden()
    # the crop (80×140×120 voxels of 1 mm) sits inside the T1 grid: its voxels are all there, interpolated
    # (values are checked exactly in tests/io/test_volume_set.py)
    assert (moved.data > 0).sum() > 0.5 * (np.asarray(_crop_data(folder)) > 0).sum()


def test_ct_preset_and_isotropic_loading(make_napari_viewer, qtbot, tmp_path):
    image = nib.load(str(shared_file(*CT_PATH)))
    crop = image.slicer[80:176, 80:176, 30:70]
    path = tmp_path / "head_ct.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(crop.dataobj), crop.affine, header=image.header), str(path))
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.add_paths([path])
    assert widget.table.cellWidget(0, 1).currentText() == "—"
    widget.isotropic.setChecked(True)
    widget.load_button.click()
    _wait_done(qtbot, widget)
    (layer,) = viewer.layers
    assert layer.name == "head_ct"
    assert tuple(layer.scale) == pytest.approx((1.0, 1.0, 1.0))
    assert layer.data.shape == (60, 92, 92)  # 40·1.5, ceil(96·0.957) mm
    record = layer.metadata["domaingen"]["resampled_from"]
    assert record["path"] == str(path)
    assert record["spacing"] == pytest.approx((1.5, 0.957031, 0.957031), abs=1e-5)
    assert widget.grid_label.text() == ""  # one volume: nothing to compare

    viewer.layers.selection = {layer}
    assert widget.apply_preset("CT brain") == [layer]
    assert tuple(layer.contrast_limits) == (0.0, 80.0)
    widget.preset.setCurrentText("CT bone")
    widget.apply_preset_button.click()
    assert tuple(layer.contrast_limits) == (-800.0, 2000.0)
    data_before = layer.data.copy()
    widget.apply_preset("full range")
    assert tuple(layer.contrast_limits) == (float(layer.data.min()), float(layer.data.max()))
    assert np.array_equal(layer.data, data_before)  # presets never change the data


def test_labels_load_as_labels_and_errors_are_reported(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    seg = np.zeros((20, 18, 16), np.uint8)
    seg[5:10, 4:9, 3:7] = 2
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(tmp_path / "case_seg.nii.gz"))
    nib.save(nib.Nifti1Image(seg.astype(np.float32) * 10, np.eye(4)), str(tmp_path / "case_t2.nii.gz"))
    widget.add_paths([tmp_path / "missing.nii.gz", tmp_path])
    assert "missing.nii.gz: no such file" in widget.status.text()
    assert widget.table.rowCount() == 2
    widget.set_contrast(0, "FLAIR")  # user's correction of the recognised contrast
    widget.load_button.click()
    _wait_done(qtbot, widget)
    from napari.layers import Image, Labels

    assert [layer.name for layer in viewer.layers] == ["case FLAIR", "case labels"]
    assert isinstance(viewer.layers[0], Image) and isinstance(viewer.layers[1], Labels)
    assert viewer.layers[1].data.dtype == np.uint8
    assert widget.grid_label.text().startswith("2 volumes on one grid")


def test_a_ct_preset_on_data_that_are_not_hounsfield_units_says_so(make_napari_viewer, tmp_path):
    from ._gui import plugin_widget

    path = tmp_path / "photo_like.nii.gz"
    data = (np.random.default_rng(0).random((20, 30, 30)) * 255).astype(np.uint8)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-domaingen")
    widget = plugin_widget(viewer, "Load volumes")
    viewer.layers.selection.active = layer
    widget.apply_preset("CT brain")
    status = widget.status.text()
    assert "'photo_like' holds 0 … 254 (uint8), not Hounsfield units" in status, status
    assert "use an MRI preset or 'full range'" in status
    widget.apply_preset("MRI 1–99 %")
    assert "Hounsfield" not in widget.status.text()


def _patient(folder, right_mm: float, seed: int):
    """T1 and FLAIR files of a synthetic patient whose head lies ``right_mm`` further right in scanner space."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 1.2, 1.0])
    affine[:3, 3] = (-80.0 + right_mm, -100.0, -60.0)
    for contrast in ("t1", "flair"):
        volume = rng.random((160, 200, 120)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, affine), str(folder / f"p{seed}_{contrast}.nii.gz"))
    return folder


@pytest.mark.slow
def test_a_second_patient_opens_in_view_and_is_never_resampled_onto_the_first(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.3: load one case, Clear list, load another patient: the camera stayed on the first patient (338 mm
    away, a black canvas) and *Resample onto <the first patient's T1>* was offered."""
    from ._gui import camera, full_hd_window

    first, second = _patient(tmp_path / "a", 0.0, 1), _patient(tmp_path / "b", 338.0, 2)
    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    widget = _widget(viewer)
    for folder in (first, second):
        widget.clear()
        widget.add_paths([folder])
        widget.load_selected()
        _wait_done(qtbot, widget)
    new = [layer for layer in viewer.layers if layer.name.startswith("p2")]
    assert len(viewer.layers) == 4 and len(new) == 2
    low, high = np.asarray(new[0].extent.world)
    centre = np.asarray(camera(viewer).center)[-2:]
    assert np.all(low[-2:] <= centre) and np.all(centre <= high[-2:])  # the second patient is on screen
    assert low[0] <= viewer.dims.point[0] <= high[0]  # and the slider inside it
    assert not widget.resample_button.isVisible()
    assert widget.grid_label.text().startswith("2 volumes on one grid")  # this case only


def test_isotropic_loading_at_the_spacing_a_model_asks_for(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.6: a 2 mm model's spacing warning pointed to *Load volumes ▸ isotropic*, which resampled to 1 mm."""
    from types import SimpleNamespace

    from napari_domaingen.core.segment import spacing_warning

    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 36, 30)).astype(np.float32), np.eye(4)), str(path))
    spec = SimpleNamespace(spacing=(2.0, 2.0, 2.0))  # a model trained on 2 mm voxels (the warning reads only that)
    advice = spacing_warning(spec, (1.0, 1.0, 1.0))
    assert "Load volumes ▸ isotropic, set to 2 mm" in advice
    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    widget = _widget(viewer)
    widget.add_paths([path])
    widget.isotropic.setChecked(True)
    widget.isotropic_mm.setValue(2.0)  # what the advice says
    widget.load_button.click()
    _wait_done(qtbot, widget)
    (layer,) = viewer.layers
    assert tuple(layer.scale) == pytest.approx((2.0, 2.0, 2.0)) and layer.data.shape == (15, 18, 20)
    assert spacing_warning(spec, tuple(layer.scale)) is None
