import numpy as np
import pytest

from napari_domaingen.core.stability import (
    GridMismatchError,
    compare,
    cosine_map,
    linear_cka,
    patch_rows,
    require_same_grid,
    sample_indices,
)
from napari_domaingen.io.geometry import resample_to_grid


def _random_orthogonal(n, rng):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


def test_cka_is_one_for_identical_inputs_and_invariant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.7 * x @ _random_orthogonal(8, rng)) == pytest.approx(1.0)
    assert linear_cka(x, x + 5.0) == pytest.approx(1.0)  # centring removes offsets


def test_cka_of_unrelated_data_is_small_and_symmetric():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5000, 6)), rng.normal(size=(5000, 4))
    assert linear_cka(x, y) < 0.05
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x))


def test_cka_of_single_channels_is_squared_correlation():
    rng = np.random.default_rng(2)
    a = rng.normal(size=3000)
    b = 0.5 * a + rng.normal(size=3000)
    assert linear_cka(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1] ** 2)


def test_cka_rejects_mismatched_rows_and_handles_constants():
    with pytest.raises(ValueError, match="same N"):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))
    assert linear_cka(np.ones((10, 2)), np.random.default_rng(0).normal(size=(10, 2))) == 0.0


def test_cosine_map():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 4, 6, 7))
    assert np.allclose(cosine_map(a, a), 1.0, atol=1e-6)
    assert np.allclose(cosine_map(a, -2 * a), -1.0, atol=1e-6)
    with pytest.raises(GridMismatchError):
        cosine_map(a, a[:, :3])


def test_sampling_and_patches():
    index = sample_indices((10, 10, 10), None, 50)
    assert index.size == 50 and np.all(np.diff(index) > 0)
    with pytest.raises(ValueError, match="empty"):
        sample_indices((4, 4, 4), np.zeros((4, 4, 4), bool), 10)
    image = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    rows = patch_rows(image, np.array([13]))  # the centre voxel: its patch is the whole image
    assert np.array_equal(rows[0], image.ravel())


def test_compare_summary_on_a_contrast_change():
    rng = np.random.default_rng(4)
    image_a = rng.random((12, 14, 16)).astype(np.float32)
    image_b = np.sqrt(image_a)  # another "contrast" of the same anatomy
    features = rng.normal(size=(8, 12, 14, 16))
    summary = compare(features, features, image_a, image_b)
    assert summary.cka_features == pytest.approx(1.0)
    assert summary.mean_cosine == pytest.approx(1.0)
    assert 0.8 < summary.cka_intensity < 1.0
    assert set(summary.as_dict()) == {
        "cka_features",
        "cka_intensity",
        "cka_intensity_patch",
        "mean_cosine",
        "n_voxels",
        "foreground_voxels",
    }


def test_grid_check_and_resampling():
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    require_same_grid((4, 5, 6), affine, (4, 5, 6), affine)
    with pytest.raises(GridMismatchError, match="shapes differ"):
        require_same_grid((4, 5, 6), affine, (4, 5, 7), affine)
    shifted = affine.copy()
    shifted[:3, 3] = [2.0, 0, 0]  # B starts one voxel further along Z
    with pytest.raises(GridMismatchError, match="affines differ"):
        require_same_grid((4, 5, 6), affine, (4, 5, 6), shifted)
    data = np.random.default_rng(5).random((4, 5, 6)).astype(np.float32)
    on_a = resample_to_grid(data, shifted, (4, 5, 6), affine, order=1)
    assert np.allclose(on_a[1:], data[:-1], atol=1e-5) and np.all(on_a[0] == 0)
    labels = (data > 0.5).astype(np.uint8)
    nearest = resample_to_grid(labels, shifted, (4, 5, 6), affine, order=0)
    assert nearest.dtype == np.uint8 and np.array_equal(nearest[1:], labels[:-1])
