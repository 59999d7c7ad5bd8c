"""Training MaskGen / ERM on a tiny real crop: loss goes down, checkpoints, resume, fine-tune, cancel, bad input."""

import numpy as np
import pytest
import torch

from napari_domaingen.core.maskgen import ModelCompatibilityError, read_model_file
from napari_domaingen.core.maskgen_training import TrainSettings, train, validation_region
from napari_domaingen.core.segmentation_data import labelled_volume
from napari_domaingen.errors import TrainingError
from napari_domaingen.progress import Cancelled, run

from ..conftest import tcga_tumour_region


@pytest.fixture(autouse=True)
def _fresh(fresh_feature_caches):
    """No extractors left over from other tests."""


@pytest.fixture(scope="module")
def tumour_crop():
    """A 48³ crop of the TCGA T1 around its tumour labels (0 background, 1 and 2 tumour sub-regions), 1 mm."""
    image, labels, region = tcga_tumour_region(24)
    return labelled_volume(image.data[region], labels.data[region], "tcga crop", spacing=image.spacing)


def _settings(weights, **kw):
    values = {
        "weights": str(weights),
        "base": 4,
        "levels": 2,
        "crop": 32,
        "steps": 6,
        "batch_size": 2,
        "lr": 3e-3,
        "augment": False,
        "checkpoint_every": 3,
        "validate_every": 0,
        "device": "cpu",
    }
    values.update(kw)
    return TrainSettings(**values)


def _weights_equal(a, b):
    sa, sb = read_model_file(a)["state_dict"], read_model_file(b)["state_dict"]
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_training_decreases_the_loss_and_writes_a_checkpoint(tmp_path, tumour_crop, anatomix_weights):
    updates = []
    result = run(
        train(
            [tumour_crop],
            tmp_path / "m.pt",
            _settings(anatomix_weights, steps=16, validate_every=8),
            validation=[tumour_crop],
        ),
        updates.append,
    )
    losses = result.history["loss"]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    checkpoint = read_model_file(result.checkpoint)
    assert checkpoint["training"]["step"] == 16 and checkpoint["spec"]["label_values"] == [0, 1, 2]
    assert checkpoint["spec"]["unet"]["in_channels"] == 17 and checkpoint["spec"]["mask_rate"] == 0.75
    assert checkpoint["spec"]["features"]["channels"] == 16
    steps = [u for u in updates if u["stage"] == "train" and "loss" in u]
    assert all({"step", "steps", "loss", "lr", "seconds_per_step", "eta"} <= set(u) for u in steps)
    lrs = [u["lr"] for u in steps]
    assert lrs[0] == pytest.approx(3e-3) and all(b < a for a, b in zip(lrs, lrs[1:]))  # cosine, per step
    validations = [u for u in updates if u["stage"] == "validate"]
    assert [u["step"] for u in validations] == [8, 16]
    assert all(0.0 <= u["val_dice"] <= 1.0 for u in validations)
    assert set(validations[0]["val_dice_per_class"]) == {"class 1", "class 2"}
    assert result.history["val"] == [[8, validations[0]["val_dice"]], [16, validations[1]["val_dice"]]]
    assert [u["checkpoint_step"] for u in updates if "checkpoint" in u] == [3, 6, 9, 12, 15, 16]


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, tumour_crop, anatomix_weights):
    settings = _settings(anatomix_weights, augment=True, steps=6, checkpoint_every=3)
    full = run(train([tumour_crop], tmp_path / "full.pt", settings))
    steps = []

    def stop_after_four():
        return len(steps) >= 4

    job = train([tumour_crop], tmp_path / "part.pt", settings, cancel=stop_after_four)
    with pytest.raises(Cancelled):
        run(job, lambda u: steps.append(u) if u.get("loss") is not None else None)
    assert read_model_file(tmp_path / "part.pt")["training"]["step"] == 3  # the last checkpoint is kept intact

    resumed = run(train([tumour_crop], tmp_path / "part.pt", settings, resume=tmp_path / "part.pt"))
    # every draw of a step is seeded from (seed, step): the resumed run is the uninterrupted run, bit for bit
    assert resumed.history["loss"] == full.history["loss"]
    assert _weights_equal(tmp_path / "part.pt", tmp_path / "full.pt")


def test_cancel_mid_run_keeps_the_last_checkpoint(tmp_path, tumour_crop, anatomix_weights):
    path = tmp_path / "m.pt"
    seen = []
    job = train(
        [tumour_crop], path, _settings(anatomix_weights, steps=20, checkpoint_every=2), cancel=lambda: len(seen) >= 5
    )
    with pytest.raises(Cancelled, match="cancelled at step 5"):
        run(job, lambda u: seen.append(u) if u.get("loss") is not None else None)
    checkpoint = read_model_file(path)
    assert checkpoint["training"]["step"] == 4
    assert len(checkpoint["training"]["history"]["loss"]) == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_fine_tune_keeps_network_and_classes_with_new_schedule(tmp_path, tumour_crop, anatomix_weights):
    base = run(train([tumour_crop], tmp_path / "base.pt", _settings(anatomix_weights, steps=3)))
    tuned = run(
        train([tumour_crop], tmp_path / "tuned.pt", _settings(anatomix_weights, steps=2, lr=1e-4), init=base.checkpoint)
    )
    assert tuned.spec.unet == base.spec.unet and tuned.spec.label_values == base.spec.label_values
    assert tuned.spec.features.fingerprint == base.spec.features.fingerprint
    assert read_model_file(tuned.checkpoint)["training"]["step"] == 2
    assert tuned.history["lr"][0] == pytest.approx(1e-4)
    # new labels beyond the model's classes are refused with the values named
    labels = tumour_crop.labels.copy()
    labels[labels == 2] = 3
    other = labelled_volume(tumour_crop.image, labels, "relabelled")
    with pytest.raises(ValueError, match=r"label values \[3\] are beyond the model's classes \[0, 1, 2\]"):
        run(train([other], tmp_path / "x.pt", _settings(anatomix_weights, steps=1), init=base.checkpoint))


def test_a_checkpoint_from_another_extractor_is_refused(tmp_path, tumour_crop, anatomix_weights):
    base = run(train([tumour_crop], tmp_path / "base.pt", _settings(anatomix_weights, steps=1)))
    state = torch.load(anatomix_weights, weights_only=True)
    state = {k: (v * 1.01 if v.is_floating_point() else v) for k, v in state.items()}
    other = tmp_path / "other_extractor.pth"
    torch.save(state, other)
    with pytest.raises(ModelCompatibilityError, match="another extractor"):
        run(train([tumour_crop], tmp_path / "x.pt", _settings(other, steps=1), init=base.checkpoint))


def test_erm_baseline_is_the_same_loop_without_features(tmp_path, tumour_crop):
    result = run(
        train(
            [tumour_crop],
            tmp_path / "erm.pt",
            TrainSettings(use_features=False, base=4, levels=2, crop=32, steps=2, device="cpu"),
        )
    )
    assert result.spec.method == "ERM" and result.spec.features is None
    assert result.spec.unet["in_channels"] == 1 and result.spec.mask_rate == 0.0


def test_bad_settings_and_crops_are_refused(tmp_path, tumour_crop, anatomix_weights):
    with pytest.raises(ValueError, match="multiple of 4"):
        run(train([tumour_crop], tmp_path / "m.pt", _settings(anatomix_weights, crop=30)))
    with pytest.raises(ValueError, match=r"view-masking rate must be in \[0, 1\)"):
        run(train([tumour_crop], tmp_path / "m.pt", _settings(anatomix_weights, mask_rate=1.0)))
    assert not (tmp_path / "m.pt").exists()


def test_validation_region_is_the_labelled_box_plus_half_a_crop(tumour_crop):
    region = validation_region(tumour_crop, (32, 32, 32))
    z, y, x = np.nonzero(tumour_crop.labels)
    assert region[0].start == max(0, z.min() - 16) and region[0].stop == min(48, z.max() + 1 + 16)


def test_a_fully_masked_batch_is_redrawn_not_trained_on():
    """All 17 channels of a batch-1 sample are zeroed on 0.75 % of steps: BN would divide by a zero variance."""
    from napari_domaingen.core.maskgen import view_mask
    from napari_domaingen.core.maskgen_training import has_signal, masked_input
    from napari_domaingen.core.training import seeded_torch, step_seed

    x = torch.rand(1, 17, 4, 4, 4) + 0.5
    degenerate = []
    for step in range(2000):
        with seeded_torch(step_seed(0, step, stream=2)):
            if not has_signal(view_mask(x, 0.75)):
                degenerate.append(step)
    assert degenerate  # it happens (expected ~15 of 2000)
    for step in degenerate:
        again = masked_input(x, 0.75, seed=0, step=step)
        assert has_signal(again)
        assert torch.equal(again, masked_input(x, 0.75, seed=0, step=step))  # still reproducible
    ordinary = next(s for s in range(2000) if s not in degenerate)
    with seeded_torch(step_seed(0, ordinary, stream=2)):
        expected = view_mask(x, 0.75)
    assert torch.equal(masked_input(x, 0.75, seed=0, step=ordinary), expected)  # the ordinary draw is untouched


def test_constant_input_is_skipped_and_then_refused(tmp_path):
    """A crop without any signal changes nothing; a run made only of them stops with a clear message."""
    labels = np.zeros((32, 32, 32), np.uint8)
    labels[10:20, 10:20, 10:20] = 1
    flat = labelled_volume(np.zeros((32, 32, 32), np.float32), labels, "flat")
    updates = []
    with pytest.raises(TrainingError, match="10 of the last 20 steps were skipped.*no signal"):
        run(
            train(
                [flat],
                tmp_path / "m.pt",
                TrainSettings(
                    use_features=False,
                    base=4,
                    levels=2,
                    crop=32,
                    steps=30,
                    augment=False,
                    checkpoint_every=5,
                    device="cpu",
                ),
            ),
            updates.append,
        )
    skipped = [u for u in updates if u.get("skipped")]
    assert len(skipped) == 9 and all(np.isnan(u["loss"]) for u in skipped)  # the 10th raises
    checkpoint = read_model_file(tmp_path / "m.pt")  # the weights saved at step 5 are finite
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_non_finite_gradients_never_reach_the_weights(tmp_path, tumour_crop, monkeypatch):
    before = run(
        train(
            [tumour_crop],
            tmp_path / "m.pt",
            TrainSettings(use_features=False, base=4, levels=2, crop=32, steps=1, device="cpu"),
        )
    )
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("inf")))
    updates = []
    result = run(
        train(
            [tumour_crop],
            tmp_path / "tuned.pt",
            TrainSettings(use_features=False, crop=32, steps=3, device="cpu"),
            init=before.checkpoint,
        ),
        updates.append,
    )
    assert [u["skipped"] for u in updates if u.get("skipped")] == ["non-finite gradients"] * 3
    # nothing was applied to the learned parameters (batch-norm running statistics follow the forward passes)
    old, new = read_model_file(before.checkpoint)["state_dict"], read_model_file(result.checkpoint)["state_dict"]
    learned = [k for k in old if "running_" not in k and "num_batches" not in k]
    assert learned and all(torch.equal(old[k], new[k]) for k in learned)


def test_pair_snapshots_check_the_grid_cheaply_and_name_classes():
    from napari_domaingen.core.maskgen_pairs_job import PairSnapshot, class_names_for

    image, labels = np.random.default_rng(0).random((4, 5, 6), np.float32), np.ones((4, 5, 6), np.uint8)
    shifted = np.eye(4)
    shifted[:3, 3] = 1.0
    PairSnapshot(image, labels, "ok", (1.0, 1.0, 1.0), np.eye(4), np.eye(4)).check_grid()  # no voxel read
    with pytest.raises(ValueError, match="off: .*resample the labels onto the image grid"):
        PairSnapshot(image, labels, "off", (1.0, 1.0, 1.0), np.eye(4), shifted).check_grid()
    assert class_names_for([0, 1, 2], {}) is None
    names = class_names_for([0, 1, 2], {1: "tumour"})
    assert names is not None and names[1] == "tumour" and len(names) == 3
