"""Readers and writers through a real napari viewer (File ▸ Open / Save with this plugin)."""

import nibabel as nib
import numpy as np
import pytest

from ..conftest import mri_files, shared_file

PLUGIN = "napari-domaingen"


def _world_of_voxel(layer, index):
    return np.asarray(layer.data_to_world(np.asarray(index, dtype=float)))


@pytest.mark.slow
def test_real_mri_files_open_with_nibabel_world_coordinates(make_napari_viewer):
    files = mri_files()
    if not files:
        pytest.skip("shared MRI data not available")
    viewer = make_napari_viewer()
    for path in files:
        layers = viewer.open(str(path), plugin=PLUGIN)
        assert len(layers) == 1
        layer = layers[0]
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
        shape = np.array(image.shape[:3])
        for ijk in (np.zeros(3, int), shape - 1):
            ras = image.affine[:3, :3] @ ijk + image.affine[:3, 3]
            world = ras[::-1]  # world axes are (S, A, R)
            zyx = np.round(np.asarray(layer.world_to_data(world))).astype(int)
            assert np.allclose(_world_of_voxel(layer, zyx), world, atol=1e-3), path.name
            assert layer.data[tuple(zyx)] == data[tuple(ijk)].astype(layer.data.dtype)
        expected = "labels" if "seg" in path.name or "mask" in path.name else "image"
        assert layer._type_string == expected, path.name
        viewer.layers.clear()


def test_labels_saved_through_plugin_reload_identically(make_napari_viewer, tmp_path):
    path = shared_file("data", "mri", "tcga-du-7294", "tcga-du-7294_seg-fusion-mav.nii.gz")
    viewer = make_napari_viewer()
    (labels,) = viewer.open(str(path), plugin=PLUGIN)
    labels.data[80, 100, 100] = 3  # paint a voxel
    out = tmp_path / "painted.nii.gz"
    labels.save(str(out), plugin=PLUGIN)
    original, saved = nib.load(str(path)), nib.load(str(out))
    assert np.array_equal(saved.affine, original.affine)
    reread = viewer.open(str(out), plugin=PLUGIN)[0]
    assert np.array_equal(reread.data, labels.data)
    diff = np.asanyarray(saved.dataobj) != np.asanyarray(original.dataobj)
    assert diff.sum() == 1


def test_oblique_labels_round_trip_through_viewer(make_napari_viewer, tmp_path):
    from .._oblique import oblique_affine

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(10, 12, 9)).astype(np.uint8)
    path = tmp_path / "oblique_label.nii.gz"
    nib.save(nib.Nifti1Image(labels, oblique_affine("LPS")), str(path))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer._type_string == "labels"
    out = tmp_path / "saved.nii.gz"
    layer.save(str(out), plugin=PLUGIN)
    saved = nib.load(str(out))
    assert np.array_equal(saved.affine, nib.load(str(path)).affine)
    assert np.array_equal(np.asanyarray(saved.dataobj), labels)
    # the world position of voxel (0,0,0) of the file is nibabel's
    ras0 = saved.affine[:3, 3]
    zyx = np.round(np.asarray(layer.world_to_data(ras0[::-1]))).astype(int)
    assert layer.data[tuple(zyx)] == labels[0, 0, 0]


def test_new_labels_layer_painted_in_napari_is_written_on_the_image_grid(make_napari_viewer, tmp_path):
    path = shared_file("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin=PLUGIN)
    labels = viewer.add_labels(
        np.zeros(image.data.shape, np.uint8), scale=image.scale, translate=image.translate, name="painted"
    )
    labels.data[50, 60, 70] = 1
    out = tmp_path / "painted.nii.gz"
    labels.save(str(out), plugin=PLUGIN)
    saved, original = nib.load(str(out)), nib.load(str(path))
    assert np.allclose(saved.affine, original.affine, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("truncated.nii.gz", None, "truncated"),
        ("notes.nii", b"just some text\n" * 40, "not a readable NIfTI"),
        ("empty.png", b"", "empty"),
    ],
)
@pytest.mark.slow
def test_bad_files_give_clear_errors_and_napari_keeps_running(make_napari_viewer, tmp_path, name, content, problem):
    path = tmp_path / name
    if content is None:
        good = tmp_path / "good.nii.gz"
        nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), str(good))
        blob = good.read_bytes()
        content = blob[: len(blob) // 2]
    path.write_bytes(content)
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:
        viewer.open(str(path), plugin=PLUGIN)
    message = str(info.value) + str(getattr(info.value, "__cause__", ""))
    assert name in message and problem in message
    assert len(viewer.layers) == 0
    viewer.add_image(np.zeros((4, 4)))  # still usable
    assert len(viewer.layers) == 1


def test_5d_nifti_is_refused(make_napari_viewer, tmp_path):
    path = tmp_path / "five.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2, 2), np.float32), np.eye(4)), str(path))
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:
        viewer.open(str(path), plugin=PLUGIN)
    assert "five.nii.gz: has 5 dimensions" in str(info.value) + str(info.value.__cause__)


def test_labels_layer_of_another_shape_is_not_written(make_napari_viewer, tmp_path):
    path = shared_file("data", "mri", "brats23-gli-00001-000", "BraTS-GLI-00001-000-t1n.nii.gz")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin=PLUGIN)
    wrong = viewer.add_labels(np.zeros((10, 10, 10), np.uint8), metadata=dict(image.metadata), name="wrong")
    out = tmp_path / "wrong.nii.gz"
    with pytest.raises(Exception) as info:
        wrong.save(str(out), plugin=PLUGIN)
    assert "differs from its source volume" in str(info.value) + str(info.value.__cause__)
    assert not out.exists()
    assert len(viewer.layers) == 2


@pytest.mark.slow
def test_4d_nifti_opens_as_one_layer_per_volume(make_napari_viewer, tmp_path):
    path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 7, 8, 3)).astype(np.float32), np.eye(4)), str(path))
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["dwi [0]", "dwi [1]", "dwi [2]"]
    assert all(layer.data.shape == (8, 7, 6) for layer in layers)


def test_dicom_folder_opens_through_the_plugin(make_napari_viewer, tmp_path):
    from ..io.test_dicom import write_series

    path = shared_file("data", "mri", "brats23-gli-00001-000", "BraTS-GLI-00001-000-t1n.nii.gz")
    crop = nib.load(str(path)).slicer[80:144, 90:154, 50:82]
    nifti = tmp_path / "t1_crop.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(crop.dataobj), crop.affine), str(nifti))
    write_series(tmp_path / "dicom", np.asarray(crop.dataobj), crop.affine, modality="MR", description="T1 crop")
    viewer = make_napari_viewer()
    (from_dicom,) = viewer.open(str(tmp_path / "dicom"), plugin=PLUGIN)
    (from_nifti,) = viewer.open(str(nifti), plugin=PLUGIN)
    assert np.array_equal(from_dicom.data, from_nifti.data)
    assert np.allclose(from_dicom.scale, from_nifti.scale) and np.allclose(
        from_dicom.translate, from_nifti.translate, atol=1e-3
    )
    assert from_dicom.name == "T1 crop"


def test_file_open_on_a_folder_of_nifti_files(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.6: File ▸ Open on a folder of NIfTI files said only "no DICOM files found"; it now opens them, and a
    folder with neither says where a subject's volumes go."""
    from napari_domaingen.io.errors import VolumeReadError

    case = tmp_path / "case"
    case.mkdir()
    for name in ("sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"):
        nib.save(nib.Nifti1Image(np.ones((6, 7, 8), np.float32), np.eye(4)), str(case / name))
    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    layers = viewer.open(str(case), plugin=PLUGIN)
    assert sorted(layer.name for layer in layers) == ["sub-01_FLAIR", "sub-01_T1w"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(VolumeReadError, match="Load volumes ▸ Add folder"):
        viewer.open(str(tmp_path / "empty"), plugin=PLUGIN)


def test_file_open_shows_volumes_with_the_load_volumes_contrast(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.9: File ▸ Open gave napari's full range (a dim image), Load volumes the 1–99 % preset."""
    from napari_domaingen.io.intensity_presets import DEFAULT_PRESET, contrast_limits_for

    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, 50.0, (20, 24, 28)).astype(np.float32)
    data[0, 0, 0] = 20000.0  # one hot voxel: the full range would make everything else dark
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    expected = contrast_limits_for(layer.data, DEFAULT_PRESET)
    assert tuple(layer.contrast_limits) == pytest.approx(expected) and expected[1] < 1000.0
