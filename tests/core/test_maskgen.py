"""MaskGen input: view masking statistics, frozen per-crop features, ablation, model files and compatibility."""

import pytest
import torch

from napari_domaingen.core.maskgen import (
    FeatureInput,
    ModelCompatibilityError,
    ModelSpec,
    ablate,
    check_features,
    load_model,
    read_model_file,
    save_model,
    view_mask,
)
from napari_domaingen.models.checkpoints import CheckpointLoadError
from napari_domaingen.models.segunet import SegUNet


@pytest.fixture(autouse=True)
def _fresh(fresh_feature_caches):
    """No extractors left over from other tests."""


@pytest.mark.parametrize("p", [0.25, 0.5, 0.75])
def test_view_masking_zeroes_whole_channels_at_rate_p_and_rescales_survivors(p):
    torch.manual_seed(0)
    x = torch.rand(64, 17, 4, 4, 4) + 0.5  # strictly positive: a zero means masked
    y = view_mask(x, p, training=True)
    per_channel = y.reshape(64, 17, -1)
    zeroed = (per_channel == 0).all(dim=2)
    kept = (per_channel != 0).all(dim=2)
    assert bool((zeroed | kept).all())  # channels are masked whole, never partly
    n = zeroed.numel()
    rate = zeroed.float().mean().item()
    assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5  # within 4 standard errors over 1088 draws
    ratio = y[kept[..., None, None, None].expand_as(y)] / x[kept[..., None, None, None].expand_as(x)]
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / (1 - p)))
    # samples are masked independently: not every sample has the same mask
    assert len({tuple(row.tolist()) for row in zeroed}) > 1


def test_no_masking_at_inference_or_at_rate_zero():
    x = torch.rand(2, 17, 4, 4, 4)
    assert view_mask(x, 0.75, training=False) is x
    assert view_mask(x, 0.0, training=True) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        view_mask(x, 1.0)


def test_feature_input_concatenates_frozen_instance_normalised_features(anatomix_weights):
    features = FeatureInput.load(str(anatomix_weights), "final", torch.device("cpu"), precision="fp32")
    assert features.channels == 17 and features.spec.channels == 16
    assert not features.extractor.training
    assert not any(p.requires_grad for p in features.extractor.parameters())
    image = torch.rand(2, 1, 32, 32, 32, requires_grad=True)
    x = features(image)
    assert x.shape == (2, 17, 32, 32, 32)
    assert not features.features(image).requires_grad  # frozen: no gradient reaches the extractor
    assert torch.equal(x[:, :1], image.detach())
    # what the MaskGen code computes: the extractor's output through an affine-free InstanceNorm3d, per crop
    with torch.no_grad():
        expected = torch.nn.InstanceNorm3d(16)(features.extractor(image.detach()))
    assert torch.allclose(x[:, 1:], expected, atol=1e-5)
    # the same fingerprint every time, tied to the weights
    again = FeatureInput.load(str(anatomix_weights), "final", torch.device("cpu"))
    assert again.spec.fingerprint == features.spec.fingerprint and len(features.spec.fingerprint) == 64


def test_penultimate_layer_gives_ngf_channels(anatomix_weights):
    features = FeatureInput.load(str(anatomix_weights), "penultimate", torch.device("cpu"), precision="fp32")
    assert features(torch.rand(1, 1, 32, 32, 32)).shape == (1, 17, 32, 32, 32)


def test_ablation_zeroes_image_or_features():
    x = torch.rand(1, 17, 4, 4, 4) + 1
    assert torch.equal(ablate(x, "none"), x)
    no_image = ablate(x, "image")
    assert bool((no_image[:, 0] == 0).all()) and torch.equal(no_image[:, 1:], x[:, 1:])
    no_features = ablate(x, "features")
    assert bool((no_features[:, 1:] == 0).all()) and torch.equal(no_features[:, :1], x[:, :1])
    with pytest.raises(ModelCompatibilityError, match="ERM"):
        ablate(torch.rand(1, 1, 4, 4, 4), "features")


def _spec(features_spec, **kw):
    values = {
        "unet": {"in_channels": 17 if features_spec else 1, "num_classes": 3, "base": 4, "levels": 2},
        "crop": (32, 32, 32),
        "label_values": (0, 1, 4),
        "class_names": ("background", "edema", "core"),
        "features": features_spec,
        "mask_rate": 0.75 if features_spec else 0.0,
        "spacing": (1.0, 1.0, 1.0),
    }
    values.update(kw)
    return ModelSpec(**values)


def test_model_file_round_trips_and_loads_weights_only(tmp_path, anatomix_weights):
    features = FeatureInput.load(str(anatomix_weights), "final", torch.device("cpu"))
    spec = _spec(features.spec)
    model = SegUNet(**spec.unet)
    path = save_model(tmp_path / "m.pt", model, spec, training={"step": 3, "optimizer": {"lr": torch.tensor(1.0)}})
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "napari-domaingen/maskgen" and raw["training"]["step"] == 3
    loaded, spec2 = load_model(path)
    assert spec2 == spec and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert "MaskGen" in spec2.describe() and "edema, core" in spec2.describe()
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_wrong_files_are_named_clearly(tmp_path, anatomix_weights):
    with pytest.raises(CheckpointLoadError, match="this is a feature extractor, not a MaskGen/ERM segmentation model"):
        read_model_file(anatomix_weights)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointLoadError, match="not a PyTorch checkpoint"):
        read_model_file(text)


def test_extractor_mismatches_are_explained(anatomix_weights):
    features = FeatureInput.load(str(anatomix_weights), "final", torch.device("cpu"))
    spec = _spec(features.spec)
    check_features(spec, features.spec)
    other = features.spec.__class__(**{**features.spec.__dict__, "fingerprint": "0" * 64, "weights": "other.pth"})
    with pytest.raises(ModelCompatibilityError, match="another extractor"):
        check_features(spec, other)
    wider = features.spec.__class__(**{**features.spec.__dict__, "channels": 32, "weights": "anatomix-dev.pth"})
    with pytest.raises(ModelCompatibilityError, match=r"input channel counts differ \(17 vs 33\)"):
        check_features(spec, wider)
    with pytest.raises(ModelCompatibilityError, match="ERM model"):
        check_features(_spec(None), features.spec)
    with pytest.raises(ModelCompatibilityError, match="needs the 16 'final' feature channels"):
        check_features(spec, None)
