import numpy as np

from napari_domaingen.core.rgb import PCAProjection, pca_rgb


def test_pca_rgb_shape_and_background():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, 6, 7, 8)).astype(np.float32)
    image = np.zeros((6, 7, 8))
    image[1:5, 1:6, 1:7] = 1
    rgb = pca_rgb(features, image)
    assert rgb.shape == (6, 7, 8, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[image == 0] == 0) and rgb[image > 0].std() > 0


def test_projection_fitted_on_a_is_applied_unchanged_to_b():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 4, 5, 6))
    projection = PCAProjection.fit(a)
    assert np.allclose(projection.components @ projection.components.T, np.eye(3), atol=1e-8)
    # b = a: identical colours; b shifted: colours shift (same basis and scaling, no refit)
    assert np.array_equal(projection.apply(a), projection.apply(a.copy()))
    assert not np.array_equal(projection.apply(a), projection.apply(a + 0.5))
