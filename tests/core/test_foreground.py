"""The foreground of skull-stripped MRI, raw MRI and CT: the tissue, never the background (NaN voxels out)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.foreground import find_foreground, foreground_mask

from ..conftest import shared_file


def _ball(shape=(40, 48, 44), radius=0.35):
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    return np.sqrt(sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, shape))) < radius


def test_skull_stripped_with_negative_tissue_is_the_tissue():
    rng = np.random.default_rng(0)
    brain = _ball()
    volume = np.where(brain, rng.normal(20.0, 30.0, brain.shape), 0.0).astype(np.float32)  # many voxels < 0
    volume[brain & (volume == 0)] = 1.0
    found = find_foreground(volume)
    assert found.rule == "flat background" and np.array_equal(found.mask, brain)
    assert (volume[brain] < 0).sum() > 1000  # the old "above the minimum" rule kept nearly everything
    for shifted in (volume + 1000.0, volume - 7.5, volume * 3.0):  # offset and scale change nothing
        assert np.array_equal(foreground_mask(shifted), brain)


def test_noisy_background_and_a_dark_hole_inside():
    rng = np.random.default_rng(1)
    head = _ball(radius=0.4)
    ventricle = _ball(radius=0.1)
    volume = np.abs(rng.normal(0.0, 4.0, head.shape))  # Rician-like air noise
    volume[head] = rng.normal(300.0, 20.0, head.sum())
    volume[ventricle] = rng.normal(5.0, 2.0, ventricle.sum())  # as dark as the air, but enclosed
    found = find_foreground(volume.astype(np.float32))
    assert found.rule == "noisy background" and found.threshold > found.level
    assert np.array_equal(found.mask, head)


def test_ct_air_is_background_and_a_crop_inside_the_anatomy_is_all_foreground():
    rng = np.random.default_rng(2)
    head = _ball(radius=0.4)
    ct = rng.normal(-1000.0, 15.0, head.shape)
    ct[head] = rng.normal(40.0, 10.0, head.sum())
    ct[_ball(radius=0.4) & ~_ball(radius=0.36)] = 1200.0  # skull
    found = find_foreground(ct.astype(np.int16))
    assert found.rule == "noisy background" and np.array_equal(found.mask, head)
    crop = ct[14:26, 18:30, 16:28]  # inside the brain: no background anywhere
    assert find_foreground(crop).rule == "no background" and foreground_mask(crop).all()


def test_nan_voxels_are_never_foreground_and_are_counted():
    volume = np.where(_ball(), 100.0, 0.0).astype(np.float32)
    volume[18:22, 20:24, 20:24] = np.nan
    found = find_foreground(volume)
    assert found.non_finite == 64 and not found.mask[18:22, 20:24, 20:24].any()
    assert found.voxels == _ball().sum() - 64
    with pytest.raises(ValueError, match="no finite voxel"):
        find_foreground(np.full((4, 4, 4), np.nan, np.float32))


@pytest.mark.parametrize(
    "name", ["tcga-du-7294/TCGA-DU-7294_t1_bet.nii.gz", "brats23-gli-00001-000/BraTS-GLI-00001-000-t2f.nii.gz"]
)
def test_real_skull_stripped_volumes(name):
    from napari_domaingen.io.nifti import read_nifti

    data = read_nifti(shared_file("data", "mri", *name.split("/"))).data
    found = find_foreground(data)
    brain = data != 0
    assert found.rule == "flat background"
    assert (found.mask & ~brain).sum() < 0.001 * brain.sum() and not (brain & ~found.mask).any()


def test_real_head_ct_keeps_the_head_not_the_air():
    from napari_domaingen.io.nifti import read_nifti

    ct = read_nifti(shared_file("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz")).data
    found = find_foreground(ct)
    assert found.rule == "noisy background" and -900 < found.threshold < 0
    assert np.median(ct[found.mask]) > -100 and np.median(ct[~found.mask]) < -900
