import numpy as np
import pytest
import torch

from napari_domaingen.core.features import (
    FeatureCache,
    FeatureSettings,
    extract_features,
    normalise,
    preprocess,
)
from napari_domaingen.models.anatomix import load_anatomix
from napari_domaingen.progress import Cancelled, run

from ..conftest import FIXTURES


@pytest.fixture(scope="module")
def fixture_weights(tmp_path_factory):
    path = FIXTURES / "anatomix_reference.pt"
    if not path.exists():
        pytest.skip(f"reference fixture not available: {path}")
    reference = torch.load(path, weights_only=True)
    weights = tmp_path_factory.mktemp("weights") / "anatomix.pth"
    torch.save(reference["state_dict"], weights)
    return str(weights), reference


def _extract(volume, **kwargs):
    updates = []
    result = run(extract_features(volume, FeatureSettings(**kwargs), cache=FeatureCache()), updates.append)
    return result, updates


def test_preprocess_scales_to_unit_range_and_clips():
    volume = np.linspace(-1000, 3000, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    out = preprocess(volume)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    windowed = preprocess(volume, ct_window="brain")  # 0..80 HU
    assert np.all(windowed[volume <= 0] == 0) and np.all(windowed[volume >= 80] == 1)
    clipped = preprocess(volume, clip_percentiles=(10, 90))
    assert (clipped == 1).sum() > 1 and (clipped == 0).sum() > 1
    assert np.all(preprocess(np.zeros((3, 3, 3))) == 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((20, 20), np.float32), "3D volume"),
        (np.zeros((20, 20, 3), np.uint8), "RGB"),
        (np.zeros((2, 3, 8, 8, 8), np.float32), "5D"),
        (np.full((8, 8, 8), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_volumes_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        run(extract_features(data, FeatureSettings(weights="unused.pth"), cache=FeatureCache()))


def test_whole_volume_matches_the_reference_network(fixture_weights):
    weights, reference = fixture_weights
    x = reference["input"][0, 0].numpy()
    result, updates = _extract(x, weights=weights, precision="fp32", normalisation="none", strategy="whole")
    model = load_anatomix(weights)
    with torch.no_grad():
        expected = model.features(torch.from_numpy(preprocess(x))[None, None])[0].numpy()
    assert result.features.shape == (16,) + x.shape
    assert np.abs(result.features - expected).max() < 1e-4
    assert [u["stage"] for u in updates][0] == "load" and updates[-1]["stage"] == "done"
    fractions = [u["fraction"] for u in updates]
    assert fractions == sorted(fractions)


def test_odd_sizes_give_finite_features_of_the_input_shape(fixture_weights):
    weights, _ = fixture_weights
    volume = np.random.default_rng(0).random((37, 50, 61)).astype(np.float32)
    for layer in ("final", "penultimate"):
        result, _ = _extract(volume, weights=weights, layer=layer, precision="fp32")
        assert result.features.shape == (16, 37, 50, 61)
        assert np.isfinite(result.features).all()


@pytest.mark.slow
def test_sliding_window_agrees_with_whole_volume(fixture_weights):
    weights, reference = fixture_weights
    x = reference["input"][0, 0].numpy()
    whole, _ = _extract(x, weights=weights, precision="fp32", strategy="whole")
    sliding, updates = _extract(x, weights=weights, precision="fp32", strategy="sliding", roi=32, overlap=0.5)
    assert sliding.strategy == "sliding"
    cosine = (whole.features * sliding.features).sum(0) / (
        np.linalg.norm(whole.features, axis=0) * np.linalg.norm(sliding.features, axis=0)
    )
    assert cosine.mean() > 0.95
    assert len(updates) >= 3


def test_auto_strategy_falls_back_to_sliding_window_under_a_small_budget(fixture_weights):
    weights, _ = fixture_weights
    volume = np.random.default_rng(1).random((32, 40, 48)).astype(np.float32)
    result, _ = _extract(volume, weights=weights, memory_budget=1024, roi=32)
    assert result.strategy == "sliding"


def test_bf16_is_close_to_fp32(fixture_weights):
    weights, reference = fixture_weights
    x = reference["input"][0, 0].numpy()
    full, _ = _extract(x, weights=weights, precision="fp32", normalisation="none")
    half, _ = _extract(x, weights=weights, precision="bf16", normalisation="none")
    assert half.precision == "bf16"
    relative = np.linalg.norm(half.features - full.features) / np.linalg.norm(full.features)
    assert relative < 0.02


def test_normalisations():
    features = torch.randn(16, 4, 5, 6) * 3 + 2
    z = normalise(features, "instance")
    assert torch.allclose(z.mean(dim=(1, 2, 3)), torch.zeros(16), atol=1e-5)
    assert torch.allclose(z.std(dim=(1, 2, 3), unbiased=False), torch.ones(16), atol=1e-3)
    assert torch.allclose(normalise(features, "unit").norm(dim=0), torch.ones(4, 5, 6), atol=1e-5)
    with pytest.raises(ValueError, match="normalisation"):
        normalise(features, "bogus")


def test_float16_output(fixture_weights):
    weights, reference = fixture_weights
    result, _ = _extract(reference["input"][0, 0].numpy(), weights=weights, output_dtype="float16")
    assert result.features.dtype == np.float16


def test_cache_reuses_and_recomputes_on_change(fixture_weights):
    weights, reference = fixture_weights
    cache = FeatureCache()
    x = reference["input"][0, 0].numpy().copy()
    settings = FeatureSettings(weights=weights)
    first = run(extract_features(x, settings, cache=cache))
    second = run(extract_features(x, settings, cache=cache))
    assert second.cached and second.features is first.features
    assert cache.lookup(x, settings) is not None
    x[0, 0, 0] += 0.5  # an edited layer
    assert cache.lookup(x, settings) is None
    third = run(extract_features(x, settings, cache=cache))
    assert not third.cached and len(cache) == 2


def test_cancel_stops_and_caches_nothing(fixture_weights):
    weights, _ = fixture_weights
    cache = FeatureCache()
    volume = np.random.default_rng(2).random((64, 64, 64)).astype(np.float32)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 10

    with pytest.raises(Cancelled):
        run(extract_features(volume, FeatureSettings(weights=weights, strategy="sliding", roi=32), cancel, cache))
    assert len(cache) == 0


def test_closing_the_generator_stops_the_worker(fixture_weights):
    weights, _ = fixture_weights
    volume = np.random.default_rng(3).random((64, 64, 64)).astype(np.float32)
    job = extract_features(volume, FeatureSettings(weights=weights, strategy="sliding", roi=32), cache=FeatureCache())
    for update in job:
        if update["stage"] == "inference":
            break
    job.close()  # what napari's worker.quit() does; returns once the inference thread has stopped
