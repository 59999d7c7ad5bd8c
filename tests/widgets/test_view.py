"""The radiological view: every medical volume, however it is opened, shows anterior up and the patient's right
on the screen's left (coronal and sagittal: superior up); the neurological view is one setting away."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ._gui import PLUGIN, camera, plugin_widget

SHAPE = (40, 48, 36)  # NIfTI voxel axes (i, j, k)


def _marked_volume(path, affine):
    """A 'head' (value 100) with a bright marker (1000) in its right, anterior, superior corner, wherever the
    file's voxel axes point. Returns the marker's world position (S, A, R)."""
    data = np.zeros(SHAPE, np.float32)
    data[4:-4, 4:-4, 4:-4] = 100.0
    corner = np.array(SHAPE) - 12
    world_corners = [affine[:3, :3] @ np.array(c) + affine[:3, 3] for c in ((4, 4, 4), corner)]
    directions = np.sign(world_corners[1] - world_corners[0])  # which voxel end is right/anterior/superior
    index = tuple(slice(c, c + 8) if d > 0 else slice(4, 12) for c, d in zip(corner, directions))
    data[index] = 1000.0
    nib.save(nib.Nifti1Image(data, affine), str(path))
    centre = np.array([(s.start + s.stop - 1) / 2 for s in index])
    ras = affine[:3, :3] @ centre + affine[:3, 3]
    return ras[::-1]


def _marker_quadrant(viewer, world, order):
    """Where the marker appears on screen in the view with dims ``order``: ``("top"|"bottom", "left"|"right")``."""
    viewer.dims.order = order
    for layer in viewer.layers:  # the whole range: the two-valued test head is not an MRI for the 1–99 % preset
        if layer._type_string == "image":
            layer.contrast_limits = (0.0, 1000.0)
    for axis in order[:1]:
        viewer.dims.set_point(axis, world[axis])
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float).mean(-1)
    head = shot > 10
    bright = shot > 200
    assert bright.sum() > 4 and head.sum() > bright.sum(), "the marker or the head is not on screen"
    rows, cols = np.nonzero(head)
    b_rows, b_cols = np.nonzero(bright)
    return ("top" if b_rows.mean() < rows.mean() else "bottom", "left" if b_cols.mean() < cols.mean() else "right")


@pytest.mark.slow
@pytest.mark.parametrize("orientation", ["RAS", "LPS"])
def test_file_open_is_radiological_in_all_three_planes(make_napari_viewer, tmp_path, orientation):
    flips = {"RAS": (1, 1, 1), "LPS": (-1, -1, 1)}[orientation]
    affine = np.diag([*flips, 1.0]) * np.array([1.0, 1.0, 1.2, 1.0])
    affine[:3, 3] = (-20.0 * flips[0], 30.0 * flips[1], 5.0)
    path = tmp_path / f"head_{orientation}.nii.gz"
    marker = _marked_volume(path, affine)
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(path), plugin=PLUGIN)  # File ▸ Open / drag and drop take this path
    assert tuple(str(getattr(a, "value", a)) for a in camera(viewer).orientation2d) == ("up", "left")
    # world coordinates are untouched: patient millimetres (S, A, R) as nibabel gives them
    voxel = np.round(layer.world_to_data(marker)).astype(int)
    assert layer.data[tuple(voxel)] == 1000.0
    assert _marker_quadrant(viewer, marker, (0, 1, 2)) == ("top", "left")  # axial: anterior up, right on the left
    assert _marker_quadrant(viewer, marker, (1, 0, 2)) == ("top", "left")  # coronal: superior up, right on the left
    assert _marker_quadrant(viewer, marker, (2, 0, 1)) == ("top", "left")  # sagittal: superior up, anterior left


@pytest.mark.slow
def test_sample_data_load_volumes_and_the_neurological_setting(make_napari_viewer, qtbot, tmp_path):
    from napari_domaingen._napari import view

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "brain_mri")
    assert view.orientation(viewer) == ("up", "left")

    widget = plugin_widget(viewer, "Load volumes")
    assert widget.view.currentText() == "radiological"
    widget.view.setCurrentText("neurological")
    widget.view.textActivated.emit("neurological")  # what choosing it in the combo box does
    assert view.orientation(viewer) == ("up", "right")
    assert "patient's right on the screen's right" in widget.status.text()
    settings = json.loads((view.config_dir() / "settings.json").read_text())
    assert settings == {"view": "neurological"}  # kept for later sessions

    path = tmp_path / "t1.nii.gz"
    _marked_volume(path, np.eye(4))
    other = make_napari_viewer()
    widget_b = plugin_widget(other, "Load volumes")
    widget_b.add_paths([path])
    widget_b.load_selected()
    qtbot.waitUntil(lambda: len(other.layers) == 1, timeout=20000)
    assert view.orientation(other) == ("up", "right")


@pytest.mark.slow
def test_histology_after_the_volumes_are_gone_is_not_flipped(make_napari_viewer, tmp_path):
    from napari_domaingen._napari import view

    path = tmp_path / "t1.nii.gz"
    _marked_volume(path, np.eye(4))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    assert view.orientation(viewer) == ("up", "left")
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "histology_pair")
    assert view.orientation(viewer) == ("down", "right")  # slides as stored: napari's own orientation


@pytest.mark.slow
def test_the_next_volume_after_the_last_one_closed_is_framed(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.3: the last volume closed while another layer stays (napari then frames nothing), the next patient
    opened with File ▸ Open lies 338 mm away: the camera and the slider move to it, as Home would."""
    from ._gui import full_hd_window

    first, second = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    _marked_volume(first, np.eye(4))
    moved = np.eye(4)
    moved[:3, 3] = (338.0, 20.0, -150.0)
    marker = _marked_volume(second, moved)
    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    (layer,) = viewer.open(str(first), plugin=PLUGIN)
    viewer.add_points(np.array([[20.0, 20.0, 20.0]]), name="notes")  # a layer that stays
    viewer.layers.remove(layer)
    viewer.open(str(second), plugin=PLUGIN)
    viewer.dims.set_point(0, marker[0])
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float).mean(-1)
    assert (shot > 200).sum() > 4  # the marker of the new volume is on screen, without pressing Home


@pytest.mark.slow
def test_an_oblique_series_says_what_the_user_sees_and_loads_straight_on_request(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.9: an oblique DICOM raised napari's 'Non-orthogonal slicing' warning on every slice and showed a
    stepped sagittal view without a word; now one plain note, and Load volumes ▸ isotropic + scanner axes resamples
    it onto a straight grid."""
    import warnings

    from napari.utils.notifications import notification_manager

    from napari_domaingen.io.volume_resample import obliquity_degrees

    from .._oblique import oblique_affine
    from ..io.test_dicom import write_series
    from .test_load_volumes_widget import _wait_done, _widget

    voxels = np.random.default_rng(0).integers(0, 300, (24, 20, 12)).astype(np.int16)
    write_series(tmp_path / "series", voxels, oblique_affine("LPS"), modality="MR", description="T1 oblique")
    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (layer,) = viewer.open(str(tmp_path / "series"), plugin=PLUGIN)
        for axis in (0, 1, 2):
            viewer.dims.order = tuple(np.roll([0, 1, 2], axis))
            viewer.dims.set_point(0, viewer.dims.point[0] + 1.0)
        qtbot.wait(50)
    notes = [text for text in seen if "is oblique" in text]
    assert len(notes) == 1 and "napari draws each slice without that tilt" in notes[0]
    assert "isotropic + scanner axes" in notes[0]
    assert not [w for w in caught if "Non-orthogonal slicing" in str(w.message)]

    widget = _widget(viewer)
    widget.add_paths([tmp_path / "series"])
    widget.isotropic.setChecked(True)
    widget.straight.setChecked(True)
    widget.load_button.click()
    _wait_done(qtbot, widget)
    straight = viewer.layers[-1]
    assert obliquity_degrees(straight.metadata["domaingen"]["display_affine"]) < 1e-6
    assert np.allclose(straight.scale, 1.0) and np.allclose(straight.affine.affine_matrix, np.eye(4))
    centre = np.asarray(layer.data_to_world(np.array(layer.data.shape) / 2 - 0.5))
    inside = np.round(np.asarray(straight.world_to_data(centre))).astype(int)
    assert np.all(inside >= 0) and np.all(inside < straight.data.shape)  # the same anatomy, on a straight grid
