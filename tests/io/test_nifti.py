import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.io.errors import VolumeReadError, VolumeWriteError
from napari_domaingen.io.geometry import voxel_to_world
from napari_domaingen.io.nifti import read_nifti, to_display_order, write_nifti

from .._oblique import oblique_affine as _oblique_affine
from ..conftest import mri_files, shared_file

ORIENTATIONS = ["RAS", "LPS", "PSR", "ILA"]


def _write(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _check_world_positions(path, volume):
    """Every file voxel value sits at the display index whose world position is nibabel's for that voxel."""
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    shape = np.array(image.shape[:3])
    rng = np.random.default_rng(0)
    corners = [np.zeros(3, int), shape - 1, np.array([shape[0] - 1, 0, 0])]
    samples = corners + [rng.integers(0, shape) for _ in range(20)]
    inverse = np.linalg.inv(volume.display_affine)
    for ijk in samples:
        ras = image.affine[:3, :3] @ ijk + image.affine[:3, 3]
        world = ras[::-1]  # display world order is (S, A, R)
        zyx = inverse[:3, :3] @ world + inverse[:3, 3]
        assert np.allclose(zyx, np.round(zyx), atol=1e-4)
        zyx = np.round(zyx).astype(int)
        assert np.allclose(voxel_to_world(volume.display_affine, zyx), world, atol=1e-4)
        assert volume.data[tuple(zyx)] == data[tuple(ijk)]


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_synthetic_orientations_map_to_nibabel_world(tmp_path, codes):
    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    path = _write(tmp_path / f"vol_{codes}.nii.gz", data, _oblique_affine(codes))
    volume = read_nifti(path)
    assert volume.data.shape == volume.source.display_shape
    _check_world_positions(path, volume)


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_labels_round_trip_keeps_affine_and_voxels(tmp_path, codes):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=(9, 8, 7)).astype(np.uint8)
    path = _write(tmp_path / "case_seg.nii.gz", labels, _oblique_affine(codes))
    volume = read_nifti(path)
    assert volume.is_label
    out = write_nifti(tmp_path / "saved.nii.gz", volume.data, source=volume.source, is_label=True)
    original, saved = nib.load(str(path)), nib.load(str(out))
    assert np.array_equal(saved.affine, original.affine)
    assert np.array_equal(saved.header.get_qform(), original.header.get_qform())
    assert np.array_equal(np.asanyarray(saved.dataobj), labels)


def test_real_files_map_to_nibabel_world():
    files = mri_files()
    if not files:
        pytest.skip("shared MRI data not available")
    for path in files[:6] + [p for p in files if "cranium" in p.name]:
        _check_world_positions(path, read_nifti(path))


@pytest.mark.parametrize(
    "relative",
    [
        ("data", "mri", "brats23-gli-00001-000", "BraTS-GLI-00001-000-inpainting-mask.nii.gz"),
        ("data", "mri", "tcga-du-7294", "tcga-du-7294_seg-fusion-mav.nii.gz"),
        ("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz"),
    ],
)
def test_real_files_round_trip(tmp_path, relative):
    path = shared_file(*relative)
    volume = read_nifti(path)
    out = write_nifti(tmp_path / "out.nii.gz", volume.data, source=volume.source, is_label=volume.is_label)
    original, saved = nib.load(str(path)), nib.load(str(out))
    assert np.array_equal(saved.affine, original.affine)
    assert nib.aff2axcodes(saved.affine) == nib.aff2axcodes(original.affine)
    assert np.array_equal(np.asanyarray(saved.dataobj), np.asanyarray(original.dataobj).astype(volume.data.dtype))


def test_brats_is_lps_and_ct_is_anisotropic():
    brats = read_nifti(shared_file("data", "mri", "brats23-gli-00001-000", "BraTS-GLI-00001-000-t1n.nii.gz"))
    assert brats.source.axcodes == ("L", "P", "S")
    assert not brats.is_label
    ct = read_nifti(shared_file("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz"))
    assert ct.spacing == pytest.approx((1.5, 0.957, 0.957), abs=1e-3)
    assert ct.data.dtype == np.int16


def test_4d_file_is_channel_first(tmp_path):
    data = np.random.default_rng(0).random((4, 5, 6, 3)).astype(np.float32)
    path = _write(tmp_path / "stack.nii.gz", data, np.diag([2.0, 1.0, 1.0, 1.0]))
    volume = read_nifti(path)
    assert volume.data.shape == (3, 6, 5, 4)
    assert np.allclose(volume.data[1], to_display_order(data[..., 1], volume.source))
    out = write_nifti(tmp_path / "again.nii.gz", volume.data, source=volume.source)
    assert np.allclose(nib.load(str(out)).get_fdata(), data)


def test_write_without_source_uses_display_affine(tmp_path):
    affine = _oblique_affine("RAS")
    data = np.zeros((3, 4, 5), np.uint8)
    data[1, 2, 3] = 7
    display = affine[np.ix_([2, 1, 0, 3], [2, 1, 0, 3])]
    out = write_nifti(tmp_path / "new.nii.gz", data, display_affine=display, is_label=True)
    volume = read_nifti(out)
    assert np.allclose(volume.display_affine, display)
    assert np.array_equal(volume.data, data)


# --- bad input: a clear message naming the file and the problem --------------------------------------------


def test_truncated_gzip(tmp_path):
    good = _write(tmp_path / "good.nii.gz", np.ones((20, 20, 20), np.float32), np.eye(4))
    blob = good.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VolumeReadError, match=r"truncated\.nii\.gz: .*(truncated|not a readable)"):
        read_nifti(bad)


def test_5d_file(tmp_path):
    path = _write(tmp_path / "five.nii.gz", np.zeros((2, 3, 4, 2, 2), np.float32), np.eye(4))
    with pytest.raises(VolumeReadError, match=r"five\.nii\.gz: has 5 dimensions"):
        read_nifti(path)


def test_text_file_renamed(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("this is not an image\n" * 50)
    with pytest.raises(VolumeReadError, match=r"notes\.nii: not a readable NIfTI file"):
        read_nifti(path)
    gz = tmp_path / "notes.nii.gz"
    gz.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(VolumeReadError, match=r"notes\.nii\.gz: "):
        read_nifti(gz)


def test_missing_file(tmp_path):
    with pytest.raises(VolumeReadError, match="no such file"):
        read_nifti(tmp_path / "absent.nii.gz")


def test_labels_with_another_shape_are_refused(tmp_path):
    path = _write(tmp_path / "vol.nii.gz", np.zeros((4, 5, 6), np.float32), np.eye(4))
    volume = read_nifti(path)
    target = tmp_path / "labels.nii.gz"
    with pytest.raises(VolumeWriteError, match=r"differs from its source volume .*vol\.nii\.gz"):
        write_nifti(target, np.zeros((6, 5, 5), np.uint8), source=volume.source, is_label=True)
    assert not target.exists()


def test_write_refuses_float_labels_and_wrong_suffix(tmp_path):
    with pytest.raises(VolumeWriteError, match="integers"):
        write_nifti(tmp_path / "x.nii.gz", np.zeros((2, 2, 2)), display_affine=np.eye(4), is_label=True)
    with pytest.raises(VolumeWriteError, match=r"\.nii"):
        write_nifti(tmp_path / "x.png", np.zeros((2, 2, 2), np.uint8), display_affine=np.eye(4))


def test_written_files_get_the_usual_permissions(tmp_path):
    """The atomic write goes through a private temporary file; the result must not stay owner-only (0600)."""
    import os

    from napari_domaingen.io.nifti import default_file_mode, write_nifti
    from napari_domaingen.models.checkpoints import atomic_save

    path = write_nifti(tmp_path / "vol.nii.gz", np.zeros((4, 5, 6), np.float32), display_affine=np.eye(4))
    assert os.stat(path).st_mode & 0o777 == default_file_mode()
    checkpoint = atomic_save({"a": 1}, tmp_path / "model.pt")
    assert os.stat(checkpoint).st_mode & 0o777 == default_file_mode()
    assert default_file_mode() & 0o044  # readable by others under the usual umask 022


def test_fractional_labels_are_refused_for_what_they_are(tmp_path):
    from napari_domaingen.io.errors import VolumeReadError

    path = tmp_path / "mask.nii.gz"
    data = np.zeros((6, 7, 8), np.float32)
    data[2:4, 2:4, 2:4] = 0.5  # a probability map / linearly resampled mask
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(VolumeReadError, match=r"fractional values \(8 voxels, e\.g\. 0\.5\)") as err:
        read_nifti(path, as_label=True)
    assert str(path) in str(err.value) and "empty" not in str(err.value)
