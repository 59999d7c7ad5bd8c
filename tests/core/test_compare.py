import numpy as np
import pytest

from napari_domaingen.core.compare import compare_volumes, similarity_to_voxel
from napari_domaingen.core.features import FeatureCache, FeatureSettings
from napari_domaingen.core.rgb import ChannelProjection, PCAProjection, colour_projection
from napari_domaingen.core.stability import GridMismatchError
from napari_domaingen.progress import run


@pytest.fixture
def weights(anatomix_weights):
    return str(anatomix_weights)


def _pair():
    rng = np.random.default_rng(0)
    a = np.zeros((24, 28, 32), np.float32)
    a[4:20, 5:23, 6:26] = rng.random((16, 18, 20))
    return a, np.where(a > 0, 1.0 - a, 0).astype(np.float32)  # an inverted contrast, same foreground


@pytest.mark.slow
def test_compare_volumes_end_to_end(weights):
    a, b = _pair()
    cache = FeatureCache()
    updates = []
    result = run(compare_volumes(a, b, FeatureSettings(weights=weights), cache=cache), updates.append)
    assert result.rgb_a.shape == result.rgb_b.shape == a.shape + (3,)
    assert result.rgb_a.dtype == np.uint8 and np.all(result.rgb_a[~result.mask] == 0)
    assert result.cosine.shape == a.shape and np.all(np.abs(result.cosine) <= 1 + 1e-5)
    assert 0 <= result.summary.cka_features <= 1 and result.summary.n_voxels == int(result.mask.sum())
    assert len(cache) == 2 and updates[-1]["stage"] == "done"
    again = run(compare_volumes(a, b, FeatureSettings(weights=weights), cache=cache))
    assert again.features_a.cached and again.features_b.cached


def test_projection_of_a_applies_unchanged_to_b():
    rng = np.random.default_rng(1)
    fa = rng.normal(size=(6, 5, 6, 7))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    fb = np.einsum("ij,jzyx->izyx", rotation, fa)  # B = a known rotation of A's features
    projection = colour_projection(fa, None, "pca")
    assert isinstance(projection, PCAProjection)
    # colours of B use A's basis: a rotated B gets other colours, while B == A gets the very same ones
    assert not np.array_equal(projection.apply(fb), projection.apply(fa))
    refit = PCAProjection.fit(fb)
    assert np.allclose(np.abs(refit.components @ rotation), np.abs(projection.components), atol=1e-6)
    channels = colour_projection(fa, None, "channels", (3, 1, 0))
    assert isinstance(channels, ChannelProjection) and channels.channels == (3, 1, 0)
    # shared scaling: B = A + offset saturates upwards instead of being rescaled
    assert projection.apply(fa + 100.0).mean() != projection.apply(fa).mean()


def test_similarity_to_voxel_matches_the_cosine_map():
    rng = np.random.default_rng(2)
    fa, fb = rng.normal(size=(8, 4, 5, 6)), rng.normal(size=(8, 4, 5, 6))
    similarity = similarity_to_voxel(fa, (1, 2, 3), fb)
    from napari_domaingen.core.stability import cosine_map

    assert similarity[1, 2, 3] == pytest.approx(cosine_map(fa, fb)[1, 2, 3], abs=1e-5)
    assert similarity_to_voxel(fa, (1, 2, 3), fa).max() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="outside"):
        similarity_to_voxel(fa, (9, 0, 0), fb)


def test_bad_pairs(weights):
    a, b = _pair()
    with pytest.raises(GridMismatchError, match="not on one voxel grid"):
        run(compare_volumes(a, b[:, :, :-1], FeatureSettings(weights=weights)))
    with pytest.raises(ValueError, match="constant"):
        run(compare_volumes(a, np.zeros_like(a), FeatureSettings(weights=weights)))
    with pytest.raises(ValueError, match="channels"):
        colour_projection(np.zeros((4, 2, 2, 2)), None, "channels", (0, 1, 7))


def test_a_constant_offset_changes_no_figure(anatomix_weights, fresh_feature_caches):
    """Skull-stripped-like volumes with negative tissue values: adding a constant to both changes nothing."""
    from napari_domaingen.core.compare import compare_volumes
    from napari_domaingen.core.features import FeatureSettings
    from napari_domaingen.progress import run

    rng = np.random.default_rng(7)
    grid = np.indices((24, 32, 32)).astype(np.float32)
    brain = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, (11.5, 15.5, 15.5), (9.0, 12.0, 12.0))) < 1
    a = np.where(brain, rng.normal(10.0, 40.0, brain.shape), 0.0).astype(np.float32)
    b = np.where(brain, 50.0 - 0.5 * a + rng.normal(0.0, 10.0, brain.shape), 0.0).astype(np.float32)
    settings = FeatureSettings(weights=str(anatomix_weights), device="cpu")
    plain = run(compare_volumes(a, b, settings))
    shifted = run(compare_volumes(a + 250.0, b + 250.0, settings))
    assert plain.summary.foreground_voxels == shifted.summary.foreground_voxels == brain.sum()
    for key, value in plain.summary.as_dict().items():
        assert getattr(shifted.summary, key) == pytest.approx(value, abs=1e-4), key


def test_compare_arrays_resamples_only_when_asked_and_needed():
    from napari_domaingen.core.jobs.compare import CompareArrays

    a = np.zeros((4, 5, 6), np.float32)
    shifted = np.eye(4)
    shifted[:3, 3] = 2.0
    same = CompareArrays(a, a, np.eye(4), np.eye(4))
    assert not same.needs_resampling(False) and not same.needs_resampling(True)
    off = CompareArrays(a, np.zeros((4, 5, 7)), np.eye(4), shifted, names=("T1", "FLAIR"))
    assert off.shape_b == (4, 5, 7) and off.needs_resampling(True)
    with pytest.raises(GridMismatchError, match="T1 and FLAIR are not on one voxel grid"):
        off.needs_resampling(False)
