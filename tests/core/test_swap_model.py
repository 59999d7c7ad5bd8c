"""Swap model files: our format, bare encoder state dicts, the shipped default, clear refusals."""

from __future__ import annotations

import pytest
import torch

from napari_domaingen.core.swap_model import (
    CAMELYON_MEAN,
    default_model_path,
    load_swap_model,
    read_swap_file,
    save_swap_model,
)
from napari_domaingen.models.checkpoints import CheckpointLoadError
from napari_domaingen.models.dgm import PRESETS, DGMEncoder, ViTConfig


@pytest.fixture
def encoder() -> DGMEncoder:
    torch.manual_seed(0)
    return DGMEncoder(PRESETS["small"]).eval()


def test_round_trip_and_float16_storage(tmp_path, encoder):
    x = torch.rand(1, 3, 64, 64)
    for half in (False, True):
        path = save_swap_model(tmp_path / f"m{half}.pt", encoder, card={"data": "test"}, half=half)
        model = load_swap_model(path)
        assert model.card == {"data": "test"} and model.mean == CAMELYON_MEAN
        assert not any(p.requires_grad for p in model.encoder.parameters()) and not model.encoder.training
        with torch.no_grad():
            diff = (model.encoder(model.normalise(x)) - encoder(model.normalise(x))).abs().max()
        assert diff == 0 if not half else diff < 0.05
    assert (
        torch.load(tmp_path / "mTrue.pt", weights_only=True)["state_dict"]["blocks.0.attn.qkv.weight"].dtype
        == torch.float16
    )


def test_normalise_and_denormalise_are_inverse(encoder):
    from napari_domaingen.core.swap_model import SwapModel

    swap = SwapModel(encoder)
    rgb = torch.rand(2, 3, 8, 8)
    assert torch.allclose(swap.denormalise(swap.normalise(rgb)), rgb, atol=1e-6)


def test_a_bare_encoder_state_dict_loads(tmp_path, encoder):
    path = tmp_path / "bare.pth"
    torch.save({"model": {f"module.{k}": v for k, v in encoder.state_dict().items()}}, path)
    model = load_swap_model(path)
    assert model.config == PRESETS["small"]
    assert read_swap_file(path)["card"]["source"] == "bare encoder state dict"


def test_wrong_files_are_refused_clearly(tmp_path, encoder):
    maskgen = tmp_path / "seg.pt"
    torch.save({"format": "napari-domaingen/maskgen", "state_dict": {}}, maskgen)
    with pytest.raises(CheckpointLoadError, match="this is a MaskGen/ERM segmentation model, not a DGM-DR"):
        load_swap_model(maskgen)
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointLoadError, match="other.pt: not a DGM-DR anatomy/style model"):
        load_swap_model(other)
    good = save_swap_model(tmp_path / "good.pt", encoder)
    with pytest.raises(ValueError, match="differs from the expected"):
        load_swap_model(good, expect=ViTConfig(img_size=64, patch_size=8, embed_dim=384, depth=6, num_heads=6))
    with pytest.raises(FileNotFoundError):
        load_swap_model(tmp_path / "missing.pt")


def test_the_shipped_default_model_is_small_and_loads():
    path = default_model_path()
    if not path.is_file():
        pytest.fail(f"the shipped model is missing: {path}")
    assert path.stat().st_size <= 20 * 2**20
    model = load_swap_model("default")
    assert model.config == PRESETS["small"]
    assert {"data", "recipe", "steps"} <= set(model.card)
