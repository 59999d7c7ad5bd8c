"""The one training loop (core.training.fit) on a tiny task: schedule, resume rules, best model, history, patience."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from napari_domaingen.core.training import (
    LoopSettings,
    RunFiles,
    Skip,
    Validation,
    fit,
    lr_factor,
    resume_settings,
    run_state,
    seeded_torch,
    step_seed,
)
from napari_domaingen.core.training_log import read_history
from napari_domaingen.errors import TrainingError
from napari_domaingen.models.checkpoints import atomic_save, read_checkpoint
from napari_domaingen.progress import Cancelled, run


class Toy:
    """A linear model fitted to noisy targets drawn per step; validation scores follow ``scores`` (by call)."""

    def __init__(self, scores=(), seed: int = 0, skip_steps=()):
        with seeded_torch(seed):
            self.module = torch.nn.Linear(4, 1)
        self.scores, self.calls, self.skip_steps = list(scores), 0, set(skip_steps)
        self.validates = bool(self.scores)

    def loss(self, step):
        if step in self.skip_steps:
            return Skip("empty batch")
        generator = torch.Generator().manual_seed(step_seed(0, step))
        x = torch.randn(8, 4, generator=generator)
        y = x.sum(1, keepdim=True) + 0.1 * torch.randn(8, 1)  # global generator: seeded by the loop
        loss = torch.nn.functional.mse_loss(self.module(x), y)
        return {"loss": loss, "half": loss / 2}

    def validate(self, cancel):
        score = self.scores[min(self.calls, len(self.scores) - 1)]
        self.calls += 1
        return Validation(score, f"score {score}", {"val_toy": score})

    def payload(self, state):
        return {"format": "toy", "state_dict": self.module.state_dict(), "step": state.step}

    def finish(self):
        return ""


SETTINGS = LoopSettings(steps=10, lr=0.05, warmup=2, checkpoint_every=4, validate_every=2, device="cpu")


def _resume(path, settings=SETTINGS, **kw):
    stored = read_checkpoint(path)
    state = run_state(stored, path)
    settings = resume_settings(LoopSettings, state, settings)
    toy = Toy(**kw)
    toy.module.load_state_dict(stored["state_dict"])
    return toy, settings, state


def test_lr_rises_over_the_warmup_then_follows_the_cosine_to_zero():
    lrs = [lr_factor(step, 100, 10) for step in range(100)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[:10] == sorted(lrs[:10]) and lrs[10] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-3
    assert lr_factor(0, 100) == 1.0 and lr_factor(50, 100) == pytest.approx(0.5)


def test_a_run_writes_model_history_and_reports_every_step(tmp_path):
    updates = []
    result = run(fit(Toy(), replace(SETTINGS, validate_every=0), tmp_path / "m.pt"), updates.append)
    steps = [u for u in updates if u["stage"] == "train" and "loss" in u]
    assert [u["step"] for u in steps] == list(range(1, 11))
    assert [u["checkpoint_step"] for u in updates if "checkpoint" in u] == [4, 8, 10]
    assert steps[0]["lr"] == pytest.approx(0.05 / 3) and steps[2]["lr"] == pytest.approx(0.05)
    assert updates[-1]["stage"] == "done" and f"saved {tmp_path / 'm.pt'}" in updates[-1]["message"]
    rows = read_history(RunFiles.of(tmp_path / "m.pt").history)
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert [r["loss"] for r in rows] == pytest.approx(result.history["loss"], rel=1e-5)
    assert list(rows[0]) == ["step", "loss", "lr", "seconds", "val_score", "half"]
    assert all(math.isnan(r["val_score"]) for r in rows) and rows[-1]["seconds"] >= rows[0]["seconds"] > 0
    assert result.best is None and not RunFiles.of(tmp_path / "m.pt").best.exists()


def test_cancel_keeps_the_last_checkpoint_and_resume_is_bit_exact(tmp_path):
    whole = run(fit(Toy(), SETTINGS, tmp_path / "whole.pt"))
    seen = []
    with pytest.raises(Cancelled):
        run(
            fit(Toy(), SETTINGS, tmp_path / "a.pt", cancel=lambda: len(seen) >= 6),
            lambda u: seen.append(u) if u["stage"] == "train" and "loss" in u else None,
        )
    before = (tmp_path / "a.pt").read_bytes()
    assert read_checkpoint(tmp_path / "a.pt")["training"]["step"] == 4
    toy, settings, state = _resume(tmp_path / "a.pt")
    resumed = run(fit(toy, settings, tmp_path / "b.pt", state, resumed_from=tmp_path / "a.pt"))
    assert resumed.history["loss"] == whole.history["loss"]  # bit for bit
    assert resumed.history["val"] == whole.history["val"]
    assert (tmp_path / "a.pt").read_bytes() == before  # --resume A --out B leaves A untouched
    a, b = read_checkpoint(tmp_path / "whole.pt")["state_dict"], read_checkpoint(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_resumed_without_more_steps_writes_nothing_and_says_so(tmp_path):
    run(fit(Toy(), SETTINGS, tmp_path / "a.pt"))
    before = (tmp_path / "a.pt").read_bytes()
    toy, settings, state = _resume(tmp_path / "a.pt", replace(SETTINGS, steps=4))
    updates = []
    result = run(fit(toy, settings, tmp_path / "b.pt", state, resumed_from=tmp_path / "a.pt"), updates.append)
    assert result.checkpoint is None and result.steps_done == 10
    assert "already finished all 10 steps; nothing to train and nothing written" in updates[-1]["message"]
    assert "saved" not in updates[-1]["message"]
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "a.pt").read_bytes() == before
    # a larger step count continues the finished run
    toy, settings, state = _resume(tmp_path / "a.pt", replace(SETTINGS, steps=12))
    longer = run(fit(toy, settings, tmp_path / "b.pt", state, resumed_from=tmp_path / "a.pt"))
    assert longer.steps_done == 12 and len(longer.history["loss"]) == 12
    assert read_checkpoint(tmp_path / "b.pt")["training"]["step"] == 12


def test_the_best_model_and_the_scores_are_kept_as_the_score_rises_then_falls(tmp_path):
    scores = [0.2, 0.5, 0.7, 0.6, 0.4]  # validations at steps 2, 4, 6, 8, 10: best at step 6
    updates = []
    result = run(fit(Toy(scores), SETTINGS, tmp_path / "m.pt"), updates.append)
    files = RunFiles.of(tmp_path / "m.pt")
    assert result.best == files.best and read_checkpoint(files.best)["step"] == 6
    assert "training" not in read_checkpoint(files.best)  # an export: segment/swap with it, fine-tune from it
    assert [u["best_step"] for u in updates if "best" in u] == [2, 4, 6]
    rows = {int(r["step"]): r["val_score"] for r in read_history(files.history)}
    assert [rows[s] for s in (2, 4, 6, 8, 10)] == pytest.approx(scores) and math.isnan(rows[3])
    assert read_checkpoint(tmp_path / "m.pt")["training"]["best"] == [6, 0.7]


def test_patience_stops_after_that_many_validations_without_improvement(tmp_path):
    updates = []
    result = run(fit(Toy([0.2, 0.5, 0.7, 0.6, 0.4]), replace(SETTINGS, patience=2), tmp_path / "m.pt"), updates.append)
    assert result.steps_done == 10 and not result.stopped  # the second worse score comes at the last step
    result = run(fit(Toy([0.5, 0.4, 0.3, 0.9]), replace(SETTINGS, patience=2), tmp_path / "p.pt"), updates.append)
    assert (
        result.steps_done == 6 and "no better validation score in 2 validations; best 0.5 at step 2" in result.stopped
    )
    stored = read_checkpoint(tmp_path / "p.pt")
    assert stored["training"]["step"] == 6 and stored["training"]["stopped"] == result.stopped
    assert read_checkpoint(RunFiles.of(tmp_path / "p.pt").best)["step"] == 2
    assert "stopped early at step 6" in updates[-1]["message"]
    # resumed without more steps: nothing to do; the stored stop is named
    toy, settings, state = _resume(tmp_path / "p.pt", scores=[0.1])
    again = []
    run(fit(toy, settings, tmp_path / "p.pt", state, resumed_from=tmp_path / "p.pt"), again.append)
    assert "stopped early at step 6" in again[-1]["message"] and "nothing written" in again[-1]["message"]


def test_the_best_model_follows_a_resume_to_another_file(tmp_path):
    with pytest.raises(Cancelled):
        run(fit(Toy([0.9, 0.1]), SETTINGS, tmp_path / "a.pt", cancel=lambda: (tmp_path / "a.pt").exists()))
    toy, settings, state = _resume(tmp_path / "a.pt", scores=[0.1])
    result = run(fit(toy, settings, tmp_path / "b.pt", state, resumed_from=tmp_path / "a.pt"))
    assert result.best == RunFiles.of(tmp_path / "b.pt").best and read_checkpoint(result.best)["step"] == 2


def test_skipped_and_non_finite_steps(tmp_path, monkeypatch):
    result = run(fit(Toy(skip_steps={3}), replace(SETTINGS, validate_every=0), tmp_path / "s.pt"))
    assert math.isnan(result.history["loss"][3]) and result.history["skipped"] == [[4, "empty batch"]]
    with pytest.raises(TrainingError, match="10 of the last 20 steps were skipped"):
        run(fit(Toy(skip_steps=range(100)), replace(SETTINGS, steps=30), tmp_path / "x.pt"))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("inf")))
    toy = Toy()
    weight = toy.module.weight.detach().clone()
    result = run(fit(toy, replace(SETTINGS, steps=3, validate_every=0), tmp_path / "g.pt"))
    assert result.history["skipped"] == [[s, "non-finite gradients"] for s in (1, 2, 3)]
    assert torch.equal(toy.module.weight.detach(), weight)


def test_a_diverging_loss_or_weights_stop_with_a_clear_error_and_keep_the_checkpoint(tmp_path):
    class Diverging(Toy):
        def loss(self, step):
            if step >= 5:
                return {"loss": torch.tensor(float("nan"), requires_grad=True)}
            return super().loss(step)

    with pytest.raises(TrainingError, match="the loss became nan at step 6"):
        run(fit(Diverging(), replace(SETTINGS, validate_every=0), tmp_path / "d.pt"))
    assert read_checkpoint(tmp_path / "d.pt")["training"]["step"] == 4


def test_resume_refuses_a_file_without_training_state(tmp_path):
    atomic_save({"format": "toy", "state_dict": {}}, tmp_path / "export.pt")
    with pytest.raises(TrainingError, match="export.pt: holds no training state to resume.*--init"):
        run_state(read_checkpoint(tmp_path / "export.pt"), tmp_path / "export.pt")
