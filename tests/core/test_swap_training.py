"""DGM-DR training loop: the losses, loss decrease, checkpoints, exact resume, cancel, fine-tuning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_domaingen.core.swap_model import default_model_path, load_swap_model, read_swap_file
from napari_domaingen.core.swap_training import CropSource, SwapTrainSettings, swap_losses, train_swap
from napari_domaingen.errors import TrainingError
from napari_domaingen.models.dgm import PRESETS, DGMEncoder
from napari_domaingen.progress import Cancelled, run

SETTINGS = SwapTrainSettings(steps=4, batch_size=2, num_mixes=2, warmup=1, checkpoint_every=2, device="cpu")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    from skimage import data

    tissue = data.immunohistochemistry()
    return [tissue[:96, :96], tissue[200:300, 250:330]]


def test_the_three_losses():
    torch.manual_seed(0)
    encoder = DGMEncoder(PRESETS["small"])
    x = torch.randn(2, 3, 64, 64)
    losses = swap_losses(encoder, x, num_mixes=3, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"total", "reconstruction", "anatomy", "characteristics"}
    assert torch.isclose(losses["total"], losses["reconstruction"] + losses["anatomy"] + losses["characteristics"])
    losses["total"].backward()
    assert encoder.blocks[0].attn.qkv.weight.grad is not None and encoder.pos_embed.grad is None


def test_the_stain_pair_losses_and_the_restained_crops(images, tmp_path):
    from napari_domaingen.core.swap_training import restained, stain_pair_losses

    source = CropSource(images, 64)
    crops = source.sample(0, 3, 2)
    other = restained(crops, 0, 3)
    assert other.shape == crops.shape and torch.equal(other, restained(crops, 0, 3))  # seeded per step
    assert not torch.equal(other, restained(crops, 0, 4))
    assert (other - crops).abs().mean() > 0.02  # another stain
    grey = [t.mean(1).flatten() for t in (crops, other)]
    assert torch.corrcoef(torch.stack(grey))[0, 1].abs() > 0.5  # the same tissue
    torch.manual_seed(0)
    encoder = DGMEncoder(PRESETS["small"])
    losses = stain_pair_losses(encoder, crops, other)
    assert set(losses) == {"pair_anatomy", "pair_render"} and all(v > 0 for v in losses.values())
    (losses["pair_anatomy"] + losses["pair_render"]).backward()
    assert encoder.blocks[-1].mlp.fc2.weight.grad is not None
    settings = SwapTrainSettings(steps=3, batch_size=2, num_mixes=1, warmup=1, stain_pairs=1.0, device="cpu")
    result = run(train_swap(images, tmp_path / "pairs.pt", settings))
    assert len(result.history["pair_render"]) == 3 and all(math.isfinite(v) for v in result.history["loss"])
    assert read_swap_file(result.checkpoint)["training"]["settings"]["stain_pairs"] == 1.0
    with pytest.raises(ValueError, match="stain-pair weight"):
        SwapTrainSettings(stain_pairs=-1.0).check()


def test_crops_are_seeded_per_step_and_pad_small_images(images):
    source = CropSource([images[0], images[0][:20, :30]], 64)
    assert source.sample(0, 5, 3).shape == (3, 3, 64, 64)
    assert torch.equal(source.sample(0, 5, 3), source.sample(0, 5, 3))
    assert not torch.equal(source.sample(0, 5, 3), source.sample(0, 6, 3))


def test_training_decreases_the_loss_and_writes_a_usable_model(tmp_path, images):
    settings = SwapTrainSettings(steps=12, batch_size=4, num_mixes=2, warmup=2, checkpoint_every=0, device="cpu")
    updates: list[dict] = []
    result = run(train_swap(images, tmp_path / "m.pt", settings), updates.append)
    losses = result.history["loss"]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    assert any("checkpoint" in u for u in updates) and updates[-1]["stage"] == "done"
    stored = read_swap_file(result.checkpoint)
    assert stored["training"]["step"] == 12 and stored["card"]["steps"] == 12  # finished, resumable with more steps
    load_swap_model(result.checkpoint)


def test_cancel_keeps_the_last_checkpoint_and_resume_is_exact(tmp_path, images):
    whole = run(train_swap(images, tmp_path / "whole.pt", SETTINGS))
    steps_seen: list[int] = []

    def cancel() -> bool:
        return len(steps_seen) >= 3  # after step 3: the checkpoint of step 2 is the last one

    job = train_swap(images, tmp_path / "part.pt", SETTINGS, cancel=cancel)
    with pytest.raises(Cancelled):
        for update in job:
            if update.get("loss") is not None:
                steps_seen.append(update["step"])
    stored = read_swap_file(tmp_path / "part.pt")
    assert stored["training"]["step"] == 2
    resumed = run(
        train_swap(images, tmp_path / "part.pt", SwapTrainSettings(device="cpu", steps=1), resume=tmp_path / "part.pt")
    )
    assert resumed.history["loss"] == whole.history["loss"]
    a = read_swap_file(whole.checkpoint)["state_dict"]
    b = read_swap_file(resumed.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_starts_from_a_model(tmp_path, images):
    first = run(train_swap(images, tmp_path / "a.pt", SETTINGS))
    tuned = run(
        train_swap(
            images,
            tmp_path / "b.pt",
            SwapTrainSettings(steps=2, batch_size=2, lr=1e-4, device="cpu"),
            init=first.checkpoint,
        )
    )
    card = read_swap_file(tuned.checkpoint)["card"]
    assert card["fine_tuned_from"] == str(first.checkpoint)
    with pytest.raises(TrainingError, match="holds no training state"):  # the shipped model: fine-tune it instead
        run(train_swap(images, tmp_path / "c.pt", SETTINGS, resume=default_model_path()))


def test_bad_settings_and_data(tmp_path, images):
    with pytest.raises(ValueError, match="unknown encoder preset"):
        run(train_swap(images, tmp_path / "x.pt", SwapTrainSettings(preset="huge", device="cpu")))
    with pytest.raises(ValueError, match="no training images"):
        run(train_swap([], tmp_path / "x.pt", SETTINGS))
    with pytest.raises(ValueError, match="image 1: .*NaN"):
        run(train_swap([np.full((70, 70, 3), np.nan)], tmp_path / "x.pt", SETTINGS))
