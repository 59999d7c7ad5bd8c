"""Registration on FireANTs: known transforms recovered, identity kept, bad input refused, cancel honoured."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from napari_domaingen.core.register import RegisterSettings, RegistrationInputError, register
from napari_domaingen.core.registration_space import as_array, as_sitk
from napari_domaingen.progress import Cancelled, run

SPACING = 2.0


def _phantom(shape=(40, 44, 40), seed=0):
    """A smooth blobby 'head' inside an ellipsoid on a zero background, 2 mm voxels, and its display affine."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = (z / 0.8) ** 2 + (y / 0.85) ** 2 + (x / 0.8) ** 2 < 1
    texture = gaussian_filter(rng.random(shape), 2.0)
    volume = np.where(inside, 0.3 + (texture - texture.min()) / np.ptp(texture), 0.0).astype(np.float32)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = -np.asarray(shape) * SPACING / 2
    return volume, affine


def _moved_by(volume, affine, matrix, contrast=lambda v: v):
    image = as_sitk(volume, affine)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    moved = as_array(sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0))
    return np.where(moved > 0, contrast(moved), 0.0).astype(np.float32)


def _known(degrees=5.0, shift=(4.0, -3.0, 2.0)):
    angle = np.deg2rad(degrees)
    matrix = np.eye(4)
    matrix[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = shift
    return matrix


def _error_mm(found, truth, volume, affine):
    """Mean distance (mm) between two fixed→moving maps over foreground points."""
    image = as_sitk(volume, affine)
    points = np.argwhere(volume > 0)[::97]
    errors = []
    for z, y, x in points:
        p = image.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        errors.append(np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p))))
    return float(np.mean(errors))


def _itk(matrix):
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    return transform


FAST = {"linear_iterations": (100, 50), "deformable_iterations": (40, 20)}


def test_recovers_a_known_rigid_transform_across_a_contrast_change():
    fixed, affine = _phantom()
    truth = _known()
    moving = _moved_by(fixed, affine, np.linalg.inv(truth), contrast=lambda v: 1.6 - v)  # another contrast
    settings = RegisterSettings(stages=("rigid", "affine"), features="mindssc", **FAST)
    before = _error_mm(_itk(np.eye(4)), _itk(truth), fixed, affine)
    result = run(register(fixed, affine, moving, affine, settings))
    after = _error_mm(result.transform.itk(), _itk(truth), fixed, affine)
    assert before > 5.0 and after < 1.5, (before, after)
    assert result.stages == ("rigid", "affine") and result.transform.is_linear


def test_deformable_stage_keeps_an_identity_pair_identity_and_does_not_fold():
    fixed, affine = _phantom()
    settings = RegisterSettings(features="mindssc", **FAST)
    result = run(register(fixed, affine, fixed.copy(), affine, settings))
    reference = as_sitk(fixed, affine)
    displacement = result.transform.displacement_mm(reference)[fixed > 0]
    assert float(np.mean(displacement)) < 0.1 and result.transform.folds() == 0
    assert result.features == "mindssc" and result.info["channels"] == 12


def test_progress_reports_iterations_and_cancel_stops_the_engine():
    fixed, affine = _phantom()
    messages, calls = [], {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 30

    job = register(fixed, affine, fixed.copy(), affine, RegisterSettings(features="mindssc", **FAST), cancel=cancel)
    with pytest.raises(Cancelled):
        for update in job:
            messages.append(update["message"])
    assert any("iteration" in m for m in messages)


def test_bad_input_is_refused_with_a_clear_message():
    fixed, affine = _phantom()
    settings = RegisterSettings(features="mindssc", **FAST)
    with pytest.raises(RegistrationInputError, match="moving: expected a 3D volume"):
        run(register(fixed, affine, fixed[0], affine, settings))
    with pytest.raises(RegistrationInputError, match="moving: expected a 3D volume"):
        run(register(fixed, affine, fixed[None], affine, settings))
    with pytest.raises(RegistrationInputError, match="moving: .*constant|moving: .*no foreground"):
        run(register(fixed, affine, np.zeros_like(fixed), affine, settings))
    far = affine.copy()
    far[:3, 3] += 500.0
    with pytest.raises(RegistrationInputError, match="fields of view do not overlap"):
        run(register(fixed, affine, fixed, far, settings))


def test_settings_are_checked_when_built():
    with pytest.raises(ValueError, match="stages must be some of"):
        RegisterSettings(stages=("rigid", "bspline"))
    with pytest.raises(ValueError, match="features must be one of"):
        RegisterSettings(features="sift")
    assert RegisterSettings(stages=("deformable", "rigid")).stages == ("rigid", "deformable")


def test_given_masks_replace_the_foregrounds_and_are_checked():
    fixed, affine = _phantom()
    truth = _known()
    moving = _moved_by(fixed, affine, np.linalg.inv(truth))
    settings = RegisterSettings(stages=("rigid",), features="mindssc", linear_iterations=(100, 50))
    masks = (fixed > 0, (moving > 0).astype(np.uint8))
    result = run(register(fixed, affine, moving, affine, settings, masks=masks))
    assert _error_mm(result.transform.itk(), _itk(truth), fixed, affine) < 1.5
    with pytest.raises(RegistrationInputError, match="moving: its mask .* is not on its grid"):
        run(register(fixed, affine, moving, affine, settings, masks=(None, np.ones((3, 3, 3)))))
    with pytest.raises(RegistrationInputError, match="fixed: its mask is empty"):
        run(register(fixed, affine, moving, affine, settings, masks=(np.zeros_like(fixed), None)))
