"""The transform's conventions, checked against SimpleITK on written files."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_domaingen.core.registration_space import as_array, as_sitk
from napari_domaingen.core.transform import SpatialTransform, TransformFileError, read_transform


def _grid(shape=(20, 22, 24), spacing=2.0):
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = (-10.0, 5.0, -20.0)
    return affine, shape


def _smooth_field(reference: sitk.Image, amplitude=3.0) -> sitk.Image:
    z, y, x = np.meshgrid(*[np.arange(n) for n in reference.GetSize()[::-1]], indexing="ij")
    u = np.stack([amplitude * np.sin(y / 5.0), amplitude * np.cos(z / 6.0), 0.5 * amplitude * np.sin(x / 7.0)], -1)
    field = sitk.GetImageFromArray(u.astype(np.float64), isVector=True)
    field.CopyInformation(reference)
    return field


def _rotation(degrees=7.0, shift=(3.0, -2.0, 1.5)):
    angle = np.deg2rad(degrees)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = shift
    return matrix


def test_composite_applies_the_warp_first_then_the_affine():
    affine, shape = _grid()
    reference = as_sitk(np.zeros(shape, np.float32), affine)
    transform = SpatialTransform(_rotation(), _smooth_field(reference))
    point = np.asarray(reference.TransformIndexToPhysicalPoint((9, 11, 7)), float)
    u = np.asarray(transform.warp.GetPixel((9, 11, 7)))
    expected = transform.matrix[:3, :3] @ (point + u) + transform.matrix[:3, 3]
    assert np.allclose(transform.itk().TransformPoint(point.tolist()), expected, atol=1e-6)
    back = transform.inverse_itk().TransformPoint(transform.itk().TransformPoint(point.tolist()))
    assert np.allclose(back, point, atol=0.05)


def test_written_files_applied_by_simpleitk_give_our_moved_image(tmp_path):
    affine, shape = _grid()
    rng = np.random.default_rng(1)
    moving = as_sitk(rng.random(shape).astype(np.float32), affine)
    reference = as_sitk(np.zeros(shape, np.float32), affine)
    transform = SpatialTransform(_rotation(), _smooth_field(reference))
    ours = as_array(transform.resample(moving, reference))
    written = transform.write(tmp_path)
    assert [p.name for p in written] == ["affine.mat", "affine_inverse.mat", "warp.nii.gz", "warp_inverse.nii.gz"]
    # SimpleITK on its own, the files in antsApplyTransforms' order (warp, then affine, for a fixed point)
    field = sitk.ReadImage(str(tmp_path / "warp.nii.gz"), sitk.sitkVectorFloat64)
    theirs_transform = sitk.CompositeTransform(
        [sitk.ReadTransform(str(tmp_path / "affine.mat")), sitk.DisplacementFieldTransform(field)]
    )
    theirs = as_array(sitk.Resample(moving, reference, theirs_transform, sitk.sitkLinear, 0.0))
    assert np.percentile(np.abs(theirs - ours), 99) <= 0.01 * (ours.max() - ours.min())
    again = read_transform(tmp_path)
    assert np.allclose(again.matrix, transform.matrix, atol=1e-6)
    assert np.allclose(as_array(again.resample(moving, reference)), ours, atol=1e-4)


def test_linear_transform_has_no_folds_and_a_reflection_is_flagged():
    assert SpatialTransform(_rotation()).folds() == 0
    assert SpatialTransform(np.diag([-1.0, 1.0, 1.0, 1.0])).folds() == -1


def test_files_of_another_kind_are_refused_with_their_name(tmp_path):
    scalar = tmp_path / "image.nii.gz"
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkFloat32), str(scalar))
    with pytest.raises(TransformFileError, match="image.nii.gz: not a displacement field"):
        read_transform(scalar)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a transform")
    with pytest.raises(TransformFileError, match="junk.mat: not an ITK transform file"):
        read_transform(junk)
    with pytest.raises(TransformFileError, match="holds no affine.mat"):
        read_transform(tmp_path / "empty_dir") if (tmp_path / "empty_dir").mkdir() is None else None
    text = tmp_path / "notes.csv"
    text.write_text("a,b\n")
    with pytest.raises(TransformFileError, match="notes.csv: not a transform file"):
        read_transform(text)
    bspline = tmp_path / "bspline.tfm"
    sitk.WriteTransform(sitk.BSplineTransform(3), str(bspline))
    with pytest.raises(TransformFileError, match="not a linear"):
        read_transform(bspline)
