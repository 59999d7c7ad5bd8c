"""The same training rules for every method (MaskGen/ERM, DGM-DR swap, extractor pretraining), on tiny real runs.

Each method trains through core.training.fit; these tests check that its wiring keeps the rules: bit-exact resume
after a cancel, ``resume A → out B`` leaves A untouched, a finished run resumed without more steps writes nothing,
and (with validation) the best model and the CSV history.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_domaingen.core import maskgen_training, swap_training
from napari_domaingen.core.maskgen import load_model
from napari_domaingen.core.pretrain import PretrainSettings, pretrain
from napari_domaingen.core.segmentation_data import labelled_volume
from napari_domaingen.core.swap_model import load_swap_model
from napari_domaingen.core.training import RunFiles
from napari_domaingen.core.training_log import read_history
from napari_domaingen.models.anatomix import load_anatomix
from napari_domaingen.models.checkpoints import read_checkpoint
from napari_domaingen.progress import Cancelled, run


def _cube() -> object:
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 0.1, (32, 32, 32)).astype(np.float32)
    labels = np.zeros((32, 32, 32), np.uint8)
    labels[8:20, 10:24, 6:18] = 1
    image[labels == 1] += 1.0
    return labelled_volume(image, labels, "cube")


def _histology() -> list[np.ndarray]:
    from skimage import data

    tissue = data.immunohistochemistry()
    return [tissue[:96, :96], tissue[200:300, 250:330]]


def maskgen_job(out, steps, resume=None, cancel=None, validation=False, **kw):
    settings = maskgen_training.TrainSettings(
        use_features=False,
        base=4,
        levels=2,
        crop=16,
        steps=steps,
        batch_size=1,
        lr=3e-3,
        checkpoint_every=2,
        validate_every=2,
        device="cpu",
        **kw,
    )
    cube = _cube()
    return maskgen_training.train(
        [cube], out, settings, validation=[cube] if validation else (), resume=resume, cancel=cancel
    )


def swap_job(out, steps, resume=None, cancel=None, validation=False, **kw):
    settings = swap_training.SwapTrainSettings(
        steps=steps, batch_size=2, num_mixes=1, warmup=1, checkpoint_every=2, validate_every=2, device="cpu", **kw
    )
    images = _histology()
    return swap_training.train_swap(
        images, out, settings, resume=resume, cancel=cancel, validation=images[:1] if validation else ()
    )


def pretrain_job(out, steps, resume=None, cancel=None, validation=False, **kw):
    settings = PretrainSettings(
        ngf=4,
        out_channels=8,
        num_downs=3,
        crop=16,
        batch_size=1,
        voxels=128,
        steps=steps,
        warmup=1,
        checkpoint_every=2,
        device="cpu",
        calibration_volumes=0,
        **kw,
    )
    return pretrain(out, settings, resume=resume, cancel=cancel)


JOBS = {"maskgen": maskgen_job, "swap": swap_job, "pretrain": pretrain_job}
LOADERS = {"maskgen": load_model, "swap": load_swap_model, "pretrain": load_anatomix}


def _weights(path):
    return read_checkpoint(path)["state_dict"]


@pytest.fixture(params=list(JOBS))
def method(request):
    return request.param


@pytest.mark.slow
def test_cancel_then_resume_elsewhere_is_bit_exact_and_leaves_the_checkpoint_untouched(tmp_path, method):
    job = JOBS[method]
    whole = run(job(tmp_path / "whole.pt", 6))
    seen = []
    with pytest.raises(Cancelled):
        run(
            job(tmp_path / "a.pt", 6, cancel=lambda: len(seen) >= 3),
            lambda u: seen.append(u) if u["stage"] == "train" and "loss" in u else None,
        )
    assert read_checkpoint(tmp_path / "a.pt")["training"]["step"] == 2  # the last checkpoint is kept
    before = (tmp_path / "a.pt").read_bytes()
    resumed = run(job(tmp_path / "b.pt", 1, resume=tmp_path / "a.pt"))  # steps 1: the run's own 6
    assert resumed.history["loss"] == whole.history["loss"]  # bit for bit
    assert (tmp_path / "a.pt").read_bytes() == before
    a, b = _weights(tmp_path / "whole.pt"), _weights(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    LOADERS[method](tmp_path / "b.pt")
    rows = read_history(RunFiles.of(tmp_path / "b.pt").history)
    assert [int(r["step"]) for r in rows] == list(range(1, 7))


def test_a_finished_run_resumed_without_more_steps_writes_nothing(tmp_path, method):
    job = JOBS[method]
    run(job(tmp_path / "a.pt", 2))
    before = (tmp_path / "a.pt").read_bytes()
    updates = []
    result = run(job(tmp_path / "b.pt", 1, resume=tmp_path / "a.pt"), updates.append)
    assert result.checkpoint is None and not (tmp_path / "b.pt").exists()
    assert "already finished all 2 steps; nothing to train and nothing written" in updates[-1]["message"]
    assert (tmp_path / "a.pt").read_bytes() == before
    longer = run(job(tmp_path / "a.pt", 4, resume=tmp_path / "a.pt"))  # a larger count trains it further
    assert longer.steps_done == 4 and read_checkpoint(tmp_path / "a.pt")["training"]["step"] == 4


@pytest.mark.parametrize(
    "name, target",
    [
        ("maskgen", "napari_domaingen.core.maskgen_training.validate"),
        ("swap", "napari_domaingen.core.swap_training.ValidationTiles.psnr"),
    ],
)
def test_best_model_history_and_patience_with_a_score_that_rises_then_falls(tmp_path, monkeypatch, name, target):
    scores = iter([0.3, 0.8, 0.5, 0.4, 0.2])
    if name == "maskgen":
        monkeypatch.setattr(target, lambda *a, **k: (next(scores), {"class 1": 0.0}))
    else:
        monkeypatch.setattr(target, lambda *a, **k: next(scores))
    result = run(JOBS[name](tmp_path / "m.pt", 10, validation=True, patience=2))
    files = RunFiles.of(tmp_path / "m.pt")
    assert result.steps_done == 8 and "best 0.8 at step 4" in result.stopped  # 0.5 and 0.4 at steps 6, 8
    assert result.best == files.best and "training" not in read_checkpoint(files.best)
    best = LOADERS[name](files.best)
    assert best is not None
    rows = read_history(files.history)
    assert [(int(r["step"]), r["val_score"]) for r in rows if not math.isnan(r["val_score"])] == [
        (2, 0.3),
        (4, 0.8),
        (6, 0.5),
        (8, 0.4),
    ]
    assert len(rows) == 8 and all(r["seconds"] > 0 for r in rows)


def test_swap_validation_scores_the_reconstruction_psnr(tmp_path):
    updates = []
    run(swap_job(tmp_path / "m.pt", 2, validation=True), updates.append)
    checks = [u for u in updates if u["stage"] == "validate"]
    assert [u["step"] for u in checks] == [2] and 5.0 < checks[0]["val_psnr"] < 60.0
    assert checks[0]["val_score"] == checks[0]["val_psnr"] and "PSNR" in checks[0]["message"]
    assert RunFiles.of(tmp_path / "m.pt").best.is_file()


def test_maskgen_validation_scores_the_mean_foreground_dice(tmp_path):
    updates = []
    run(maskgen_job(tmp_path / "m.pt", 2, validation=True), updates.append)
    checks = [u for u in updates if u["stage"] == "validate"]
    assert checks and checks[0]["val_score"] == checks[0]["val_dice"] and 0.0 <= checks[0]["val_dice"] <= 1.0


def test_pretrain_fine_tunes_from_an_extractor_file(tmp_path):
    first = run(pretrain_job(tmp_path / "a.pt", 2))
    settings = PretrainSettings(
        steps=2, crop=16, batch_size=1, voxels=128, lr=1e-4, device="cpu", calibration_volumes=0
    )
    tuned = run(pretrain(tmp_path / "b.pt", settings, init=first.checkpoint))  # its network size wins
    stored = read_checkpoint(tuned.checkpoint)
    assert stored["config"]["ngf"] == 4 and stored["training"]["step"] == 2
    assert tuned.history["lr"][0] == pytest.approx(1e-4 / 2)  # a new schedule: the warm-up fits in 2 steps
