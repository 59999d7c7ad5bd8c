"""The register jobs on arrays and files, and Compare's "register B onto A first"."""

import numpy as np
import pytest

from napari_domaingen.core.jobs.register import RegisterArrays, dice_per_class, register_arrays
from napari_domaingen.core.register import RegisterSettings
from napari_domaingen.progress import run

from .test_register import _known, _moved_by, _phantom

FAST = RegisterSettings(features="mindssc", linear_iterations=(100, 50), deformable_iterations=(30, 15))


def test_dice_per_class_leaves_out_the_background():
    a = np.array([0, 1, 1, 2, 2, 0])
    b = np.array([0, 1, 0, 2, 2, 2])
    assert dice_per_class(a, b) == pytest.approx({1: 2 / 3, 2: 0.8})


def test_register_arrays_moves_image_and_labels_onto_the_fixed_grid():
    fixed, affine = _phantom()
    truth = _known()
    moving = _moved_by(fixed, affine, np.linalg.inv(truth), contrast=lambda v: 1.6 - v)
    labels = (moving > 0).astype(np.uint8)  # the object itself
    out = run(register_arrays(RegisterArrays(fixed, affine, moving, affine, labels), FAST))
    assert out.moved.shape == fixed.shape and out.moved_labels.dtype == np.uint8
    before = dice_per_class((fixed > 0).astype(np.uint8), labels)[1]
    assert dice_per_class((fixed > 0).astype(np.uint8), out.moved_labels)[1] > max(0.95, before + 0.05)
    assert out.displacement_mm.max() > 3.0 and out.checkerboard.shape == fixed.shape
    assert out.registration.transform.inverse_warp() is not None  # computed in the job, saving only writes


def test_labels_on_another_grid_are_refused_when_built():
    fixed, affine = _phantom()
    with pytest.raises(ValueError, match="not on the grid of moving"):
        RegisterArrays(fixed, affine, fixed, affine, np.zeros((3, 3, 3), np.uint8))


def test_compare_can_register_b_onto_a_first_and_says_so(anatomix_weights, fresh_feature_caches):
    from napari_domaingen.core.features import FeatureSettings
    from napari_domaingen.core.jobs.compare import CompareArrays, CompareSettings, compare_arrays

    fixed, affine = _phantom()
    moving = _moved_by(fixed, affine, np.linalg.inv(_known()))
    features = FeatureSettings(weights=str(anatomix_weights))
    arrays = CompareArrays(fixed, moving, affine, affine, names=("T1", "FLAIR"))
    plain = run(compare_arrays(arrays, CompareSettings(features)))
    registered = run(compare_arrays(arrays, CompareSettings(features, register=("rigid", "affine"))))
    assert plain.aligned == "one voxel grid"
    assert registered.aligned.startswith("B registered onto A first (rigid + affine, FireANTs")
    assert registered.summary.cka_intensity > plain.summary.cka_intensity + 0.2
    with pytest.raises(ValueError, match="stages must be some of"):
        CompareSettings(features, register=("elastic",))


def test_a_linear_run_removes_an_earlier_runs_warps_from_its_folder(tmp_path):
    """Otherwise the folder would hold this run's affine with another run's warp (read together later)."""
    import nibabel as nib

    from napari_domaingen.core.jobs.register import RegisterJob, run_register
    from napari_domaingen.core.transform import read_transform

    fixed, affine = _phantom()
    for name, data in (("fixed.nii.gz", fixed), ("moving.nii.gz", _moved_by(fixed, affine, np.linalg.inv(_known())))):
        nib.save(nib.Nifti1Image(data, np.diag([-2.0, -2.0, 2.0, 1.0])), str(tmp_path / name))
    out = tmp_path / "out"
    deformable = RegisterJob(tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz", out, settings=FAST)
    run(run_register(deformable))
    assert (out / "warp.nii.gz").is_file() and not read_transform(out).is_linear
    linear = RegisterSettings(stages=("rigid",), features="mindssc", linear_iterations=(50, 20))
    result = run(run_register(RegisterJob(tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz", out, settings=linear)))
    assert not (out / "warp.nii.gz").exists() and read_transform(out).is_linear
    assert any("removed" in line for line in result.lines)
