"""Volumes as SimpleITK images: the display geometry kept exactly, LPS as ITK expects, grids and boxes."""

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from napari_domaingen.core.registration_space import as_array, as_sitk, display_affine_of, isotropic_grid, physical_box
from napari_domaingen.io.nifti import read_nifti


def test_round_trip_keeps_the_display_geometry_of_an_oblique_volume():
    angle = np.deg2rad(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine[:3, :3] *= [1.5, 0.8, 0.8]
    affine[:3, 3] = (-30.0, 12.0, 7.0)
    data = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    image = as_sitk(data, affine)
    assert np.allclose(display_affine_of(image), affine) and np.array_equal(as_array(image), data)


def test_matches_what_simpleitk_reads_from_the_same_nifti_file(tmp_path):
    """Our reader's display volume, made an ITK image, puts every voxel where SimpleITK's own reading does."""
    ras = np.array([[-0.9, 0, 0, 90.0], [0, 0, 1.2, -100.0], [0, -1.1, 0, 80.0], [0, 0, 0, 1]])  # not canonical
    data = np.random.default_rng(1).random((9, 10, 11)).astype(np.float32)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, ras), str(path))
    volume = read_nifti(path)
    ours = as_sitk(volume.data, volume.display_affine)
    theirs = sitk.ReadImage(str(path), sitk.sitkFloat32)
    resampled = sitk.Resample(theirs, ours, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    assert np.allclose(as_array(resampled), volume.data)


def test_isotropic_grid_crops_to_the_mask_box_and_the_box_corners():
    image = as_sitk(np.zeros((20, 20, 20), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    mask = np.zeros((20, 20, 20), bool)
    mask[5:10, 5:10, 5:10] = True
    grid = isotropic_grid(image, 2.0, mask, margin_mm=2.0)
    assert grid.GetSpacing() == (2.0, 2.0, 2.0) and grid.GetSize() == (5, 5, 5)
    corners = physical_box(image, mask)
    assert np.allclose(np.ptp(corners, axis=0), 4.0)
