"""AnatomixUNet against the original implementation's reference outputs, and checkpoint loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from napari_domaingen.models.anatomix import (
    AnatomixUNet,
    CheckpointLoadError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    infer_config,
    load_anatomix,
    strip_prefixes,
)
from napari_domaingen.models.weights import ENV_WEIGHTS_DIR, REGISTRY

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
TOL = 1e-4

SMALL = {"in_channels": 1, "out_channels": 3, "ngf": 2, "num_downs": 2}
SMALL_DEV = {**SMALL, "norm": "instance", "pooling": "avg", "upsample": "trilinear", "norm_eps": 1e-2}


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"reference fixture not available: {path}")
    return path


@pytest.fixture(scope="module")
def anatomix_ref() -> dict[str, Any]:
    return torch.load(fixture("anatomix_reference.pt"), weights_only=True)


@pytest.fixture(scope="module")
def dev_ref() -> dict[str, Any]:
    return torch.load(fixture("anatomix_dev_options_reference.pt"), weights_only=True)


def small_model(seed: int = 0, **overrides: Any) -> AnatomixUNet:
    torch.manual_seed(seed)
    model = AnatomixUNet(**{**SMALL, **overrides})
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


# ---------------------------------------------------------------------------- reference outputs


def test_reproduces_anatomix_reference(anatomix_ref: dict[str, Any]) -> None:
    model = load_anatomix(anatomix_ref["state_dict"])
    assert model.config == REGISTRY["anatomix"].config
    assert (model.penultimate_index, model.final_index) == (64, 65)
    x = anatomix_ref["input"]
    with torch.no_grad():
        out = model.forward_intermediates(x, [64, 65])  # one pass, original module indices
        penultimate = model.features(x, "penultimate")  # input size is valid: no padding
    ref_final, ref_64 = anatomix_ref["final"], anatomix_ref["intermediate"]["64"]
    assert (out[65] - ref_final).abs().max().item() <= TOL
    assert (out[64] - ref_64).abs().max().item() <= TOL
    assert (penultimate - ref_64).abs().max().item() <= TOL


def test_reproduces_dev_options_reference(dev_ref: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "dev_small.pth"
    torch.save(dev_ref["state_dict"], path)
    model = load_anatomix(path)  # architecture inferred from the state dict
    assert model.config == {
        "in_channels": 1,
        "out_channels": 8,
        "ngf": 4,
        "num_downs": 5,
        "norm": "instance",
        "pooling": "avg",
        "upsample": "trilinear",
        "norm_eps": 1e-2,
    }
    with torch.no_grad():
        final = model.features(dev_ref["input"])
    assert final.shape == dev_ref["final"].shape
    assert (final - dev_ref["final"]).abs().max().item() <= TOL


# ---------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("variant", ["anatomix", "anatomix-dev"])
def test_state_dict_matches_manifest(variant: str) -> None:
    manifest = json.loads(fixture(f"anatomix_manifest_{variant}.json").read_text())
    with torch.device("meta"):  # full size without allocating memory
        model = AnatomixUNet(**REGISTRY[variant].config)
    sd = model.state_dict()
    expected = {k: v["shape"] for k, v in manifest["state_dict"].items()}
    assert list(sd) == list(expected)
    assert {k: list(v.shape) for k, v in sd.items()} == expected
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == manifest["n_params"] == REGISTRY[variant].n_params
    if variant == "anatomix":
        assert n_params == 5_899_344
    assert infer_config(sd) == REGISTRY[variant].config


@pytest.mark.parametrize("num_downs", [1, 2, 3, 4, 5])
def test_penultimate_and_final_indices(num_downs: int) -> None:
    with torch.device("meta"):
        model = AnatomixUNet(ngf=2, num_downs=num_downs)
    assert model.final_index == 14 * num_downs + 9
    assert model.penultimate_index == 14 * num_downs + 8
    assert isinstance(model.model[model.final_index], nn.Conv3d)
    assert isinstance(model.model[model.penultimate_index], nn.ReLU)
    assert isinstance(model.model[model.penultimate_index - 2], nn.Conv3d)


def test_features_any_size_and_layers() -> None:
    model = small_model(num_downs=3, ngf=3, out_channels=5)
    x = torch.rand(2, 1, 37, 50, 61)
    with torch.no_grad():
        final = model.features(x)
        penultimate = model.features(x, layer="penultimate")
        tiny = model.features(torch.rand(1, 1, 5, 7, 9))
    assert final.shape == (2, 5, 37, 50, 61)
    assert penultimate.shape == (2, 3, 37, 50, 61)
    assert tiny.shape == (1, 5, 5, 7, 9)
    assert torch.isfinite(final).all() and torch.isfinite(penultimate).all() and torch.isfinite(tiny).all()
    assert (penultimate >= 0).all()  # post-ReLU


def test_features_equal_forward_for_valid_sizes() -> None:
    model = small_model(**{k: v for k, v in SMALL_DEV.items() if k not in SMALL})
    x = torch.rand(1, 1, 8, 16, 24)
    with torch.no_grad():
        assert torch.equal(model.features(x), model(x))
        assert torch.equal(model.features(x, "penultimate"), model(x, layer="penultimate"))


def test_forward_rejects_invalid_sizes() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 1, 8, 8, 9))
    with pytest.raises(ValueError, match="input channel"):
        model.features(torch.rand(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="5D"):
        model.features(torch.rand(8, 8, 8))


def test_config_round_trip() -> None:
    model = small_model(**{k: v for k, v in SMALL_DEV.items() if k not in SMALL})
    again = AnatomixUNet(**model.config)
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------- loading


def test_loaded_model_is_frozen_float32(anatomix_ref: dict[str, Any]) -> None:
    model = load_anatomix(anatomix_ref["state_dict"], variant="anatomix", device="cpu")
    assert not model.training
    params = list(model.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
    # the float16 fixture values are copied exactly
    assert torch.equal(model.state_dict()["model.0.weight"], anatomix_ref["state_dict"]["model.0.weight"].float())


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(prefix: str, tmp_path: Path) -> None:
    model = small_model(seed=1)
    path = tmp_path / "compiled.pth"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    loaded = load_anatomix(path)
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert set(strip_prefixes({"_orig_mod.model.0.weight": torch.zeros(1)})) == {"model.0.weight"}


def test_checkpoint_with_stored_config(tmp_path: Path) -> None:
    model = small_model(seed=2, **{k: v for k, v in SMALL_DEV.items() if k not in SMALL})
    path = tmp_path / "with_config.pth"
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    loaded = load_anatomix(path)
    assert loaded.config == model.config


def test_other_architecture_names_mismatching_keys(tmp_path: Path) -> None:
    path = tmp_path / "small_batchnorm.pth"
    torch.save(small_model().state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_anatomix(path, variant="anatomix")
    msg = str(info.value)
    assert str(path) in msg
    assert "model.0.weight" in msg and "[2, 1, 3, 3, 3]" in msg and "[16, 1, 3, 3, 3]" in msg
    assert "missing key" in msg and "shape mismatch" in msg
    assert info.value.missing and info.value.mismatched

    # a stored config that disagrees with the weights: instance-norm layout vs batch-norm weights
    torch.save({"config": {**SMALL_DEV}, "state_dict": small_model().state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key.*model\.1\.running_mean"):
        load_anatomix(path)


def test_non_anatomix_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "linear.pth"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(CheckpointLoadError, match="linear.pth.*not an anatomix UNet"):
        load_anatomix(path)


def test_text_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointLoadError, match="notes.pth: not a PyTorch checkpoint"):
        load_anatomix(path)
    truncated = tmp_path / "truncated.pth"
    torch.save(small_model().state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError, match="truncated.pth"):
        load_anatomix(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_anatomix(tmp_path / "missing.pth")


class _Payload:
    """Unpickling this creates ``marker`` (a harmless stand-in for arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    live = tmp_path / "live_marker"
    pickle.loads(pickle.dumps(_Payload(live))).close()
    assert live.exists(), "the payload must really execute when unpickled unsafely"

    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pth"
    torch.save({"model.0.weight": torch.zeros(1), "x": _Payload(marker)}, zipped)
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    for path in (zipped, raw):
        with pytest.raises(UnsafeCheckpointError, match=path.name):
            load_anatomix(path)
    assert not marker.exists()


def test_registry_name_uses_hand_placed_file(
    anatomix_ref: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_hub(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the hub must not be contacted when the file is present")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    torch.save({"_orig_mod." + k: v for k, v in anatomix_ref["state_dict"].items()}, tmp_path / "anatomix.pth")
    model = load_anatomix("anatomix")
    assert model.config == REGISTRY["anatomix"].config
    with torch.no_grad():
        final = model.features(anatomix_ref["input"])
    assert (final - anatomix_ref["final"]).abs().max().item() <= TOL
    # the anatomix weights are no anatomix-dev checkpoint
    with pytest.raises(CheckpointMismatchError, match="anatomix.pth"):
        load_anatomix("anatomix", variant="anatomix-dev")
    with pytest.raises(ValueError, match="unknown anatomix variant"):
        load_anatomix("anatomix", variant="nope")
