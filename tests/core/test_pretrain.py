"""Synthetic pretraining of a stable extractor: label maps, views, the contrastive loss, the training loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_domaingen.core.pretrain import (
    PretrainSettings,
    calibrate_batchnorm,
    label_ensemble,
    pretrain,
    render_view,
    sample_voxels,
    shippable,
    supervised_contrastive_loss,
    tissue_ensemble,
    training_pair,
)
from napari_domaingen.errors import TrainingError
from napari_domaingen.models.anatomix import AnatomixUNet, load_anatomix
from napari_domaingen.models.checkpoints import read_checkpoint
from napari_domaingen.progress import Cancelled, run

TINY = PretrainSettings(
    ngf=4,
    out_channels=8,
    num_downs=3,
    crop=16,
    batch_size=1,
    voxels=256,
    lr=1e-3,
    steps=8,
    checkpoint_every=4,
    device="cpu",
    calibration_volumes=1,
)


def test_label_ensemble_is_many_shapes_and_reproducible():
    labels = label_ensemble((32, 32, 32), np.random.default_rng(0), cells=10, ellipsoids=5)
    assert labels.shape == (32, 32, 32) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 15 and len(np.unique(labels)) >= 8
    assert np.array_equal(labels, label_ensemble((32, 32, 32), np.random.default_rng(0), cells=10, ellipsoids=5))


def test_tissue_ensemble_crops_real_anatomy_with_lesions():
    rng = np.random.default_rng(3)
    maps = [tissue_ensemble((16, 24, 32), rng) for _ in range(4)]
    for labels in maps:
        assert labels.shape == (16, 24, 32) and labels.min() >= 0 and labels.max() <= 3 + 4
        assert (labels > 0).any()  # every crop is centred in the brain
    assert any(len(set(np.unique(m)) & {1, 2, 3}) >= 2 for m in maps)  # grey and white matter (and CSF)


def test_views_share_labels_but_not_intensities():
    labels = label_ensemble((24, 24, 24), np.random.default_rng(1), cells=6, ellipsoids=2)
    rng = np.random.default_rng(2)
    a, b = render_view(labels, rng), render_view(labels, rng)
    for view in (a, b):
        assert view.shape == labels.shape and view.dtype == np.float32
        assert view.min() == pytest.approx(0.0) and view.max() == pytest.approx(1.0)
    means_a = [a[labels == v].mean() for v in np.unique(labels)]
    means_b = [b[labels == v].mean() for v in np.unique(labels)]
    assert abs(np.corrcoef(means_a, means_b)[0, 1]) < 0.99  # independent contrasts, not a rescaled copy


def test_sample_voxels_balances_labels():
    labels = np.zeros((20, 20, 20), np.int64)
    labels[:2, :2, :2] = 1  # a tiny structure of 8 voxels
    picks = sample_voxels(labels, 16, np.random.default_rng(0))
    assert (labels.reshape(-1)[picks] == 1).sum() == 8 and len(set(picks.tolist())) == len(picks)


def test_contrastive_loss_rewards_label_clusters():
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(16)
    centres = torch.randn(4, 8) * 5
    clustered = centres[labels] + 0.1 * torch.randn(64, 8)
    scattered = torch.randn(64, 8)
    assert supervised_contrastive_loss(clustered, labels) < supervised_contrastive_loss(scattered, labels) - 1.0
    # the features are L2-normalised: scale does not matter
    assert torch.allclose(
        supervised_contrastive_loss(3 * clustered, labels), supervised_contrastive_loss(clustered, labels), atol=1e-5
    )
    # no sample has a positive: zero, with a gradient path
    single = supervised_contrastive_loss(torch.randn(4, 8, requires_grad=True), torch.arange(4))
    assert single.item() == 0.0 and single.requires_grad


def test_training_pair_is_seeded_by_step():
    views, labels, picks = training_pair(TINY, 3)
    assert views.shape == (2, 1, 16, 16, 16) and labels.shape == (1, 16, 16, 16) and picks.shape[0] == 1
    again = training_pair(TINY, 3)
    assert torch.equal(views, again[0]) and np.array_equal(picks, again[2])
    assert not torch.equal(views, training_pair(TINY, 4)[0])


@pytest.mark.slow
def test_batchnorm_calibration_is_seeded_and_keeps_the_model_as_it_was():
    settings = dataclasses.replace(TINY, calibration_volumes=2)
    torch.manual_seed(0)
    model = AnatomixUNet(**settings.network()).eval()
    first = calibrate_batchnorm(model, settings)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert first == 2 and not model.training
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert any(not torch.allclose(v, torch.zeros_like(v)) for k, v in stats.items() if "running_mean" in k)
    calibrate_batchnorm(model, settings)
    assert all(torch.equal(stats[k], v) for k, v in model.state_dict().items() if "running" in k)
    assert calibrate_batchnorm(model, dataclasses.replace(settings, calibration_volumes=0)) == 0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="multiple of 16"):
        dataclasses.replace(PretrainSettings(), crop=40).check()
    with pytest.raises(ValueError, match="tissue_fraction"):
        dataclasses.replace(PretrainSettings(), tissue_fraction=1.5).check()


@pytest.mark.slow
def test_pretraining_decreases_the_loss_and_resumes_exactly(tmp_path):
    full = tmp_path / "full.pt"
    result = run(pretrain(full, TINY))
    losses = result.history["loss"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert read_checkpoint(full)["training"]["step"] == 8  # finished runs stay resumable (with more steps)

    # cancelled after the step-4 checkpoint: the file holds step 4 and resuming reproduces the full run
    part = tmp_path / "part.pt"
    job = pretrain(part, TINY, cancel=lambda: len(seen) >= 5)
    seen: list[dict] = []
    with pytest.raises(Cancelled):
        for update in job:
            seen.append(update)
    state = read_checkpoint(part)["training"]
    assert state["step"] == 4
    resumed = run(pretrain(part, dataclasses.replace(TINY, steps=1), resume=part))
    assert resumed.history["loss"] == losses  # bit for bit
    a, b = read_checkpoint(full)["state_dict"], read_checkpoint(part)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_becomes_an_extractor(tmp_path):
    work = tmp_path / "work.pt"
    with pytest.raises(Cancelled):
        run(pretrain(work, TINY, cancel=iter([False] * 4 + [True] * 100).__next__))
    with pytest.raises(ValueError, match="unfinished"):
        shippable(work, tmp_path / "ship.pt")
    run(pretrain(work, TINY, resume=work))
    path = shippable(work, tmp_path / "ship.pt", hardware="test")
    stored = read_checkpoint(path)
    assert set(stored) == {"format", "version", "state_dict", "config", "pretraining"}
    assert stored["format"] == "napari-domaingen/extractor" and stored["pretraining"]["hardware"] == "test"
    model = load_anatomix(path)
    assert isinstance(model, AnatomixUNet) and not model.training
    with torch.no_grad():
        features = model.features(torch.rand(1, 1, 20, 20, 20))
    assert features.shape == (1, 8, 20, 20, 20) and torch.isfinite(features).all()


def test_resume_refuses_a_file_without_training_state(tmp_path):
    path = tmp_path / "done.pt"
    run(pretrain(path, dataclasses.replace(TINY, steps=1, calibration_volumes=0)))
    shipped = shippable(path, tmp_path / "shipped.pt")
    with pytest.raises(TrainingError, match="holds no training state to resume"):
        run(pretrain(tmp_path / "again.pt", TINY, resume=shipped))
