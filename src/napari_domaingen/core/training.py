"""The one training loop: every model (MaskGen/ERM, DGM-DR swap, extractor pretraining) trains through :func:`fit`.

A method supplies a :class:`TrainingTask`: its network, the loss of step ``k`` (batch → loss) and, optionally, a
validation score (higher is better) and the model-file content. :func:`fit` owns everything else, the same way
for every model (docs/training.md):

* AdamW, a linear warm-up over ``warmup`` steps then per-step cosine decay to 0 (:func:`lr_factor`), gradient
  clipping (``grad_clip``; 0 = none), steps with non-finite gradients skipped (never applied), a diverging loss
  stopped with :class:`~napari_domaingen.errors.TrainingError`;
* step timing and ETA, ``cancel()`` between steps (:class:`~napari_domaingen.progress.Cancelled`);
* validation every ``validate_every`` steps and at the end; the best-scoring model also written as
  ``MODEL.best.pt``; ``patience`` validations without improvement stop the run;
* atomic checkpoints every ``checkpoint_every`` steps and at the end, holding ``"training"`` (:class:`RunState`);
  the history written beside them as ``MODEL.history.csv`` (``step,loss,lr,seconds[,val_score]`` + the task's
  loss parts);
* resume (:func:`resume_settings`; the run continues bit-exactly: every random draw of step ``k`` comes from
  generators seeded with :func:`step_seed` ``(seed, k)``) and fine-tuning (a new run from a model's weights);
* under torchrun, N processes train one model with DistributedDataParallel (:mod:`.distributed`: each draws its
  own batches, the gradients are averaged, rank 0 alone validates and writes); a single process is unchanged.

The run's settings and resumable state live in :mod:`.training_state`, the per-step seeds, learning rate and
checkpoint schedule in :mod:`.training_schedule`, the task protocol and the result in :mod:`.training_task`, the
history file and step timing in :mod:`.training_log`; this module is the loop, and the one place to import all of
them from.

A loop is a job (:mod:`napari_domaingen.progress`): it yields ``{"stage": "train", "step", "steps", "loss",
"lr", "seconds_per_step", "eta", "fraction", "message"}`` after every step (plus ``"losses"``, ``"skipped"``,
``"checkpoint"``), ``"stage": "validate"`` dicts with ``"val_score"`` (plus the task's details, and ``"best"``
when a new best model was written) and ends with ``"stage": "done"``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TrainingError
from ..io.atomic import atomic_path
from ..models.checkpoints import atomic_save
from ..progress import Cancelled, Progress
from .distributed import Replicas, replicas
from .training_log import RunFiles, StepClock, format_seconds, write_history
from .training_schedule import checkpoint_due, lr_factor, seeded_init, seeded_torch, step_seed
from .training_state import (
    RESUME_OVERRIDES,
    LoopSettings,
    RunState,
    resume_settings,
    resumed_run,
    run_state,
    settings_from_dict,
    settings_to_dict,
)
from .training_task import FitResult, Skip, TrainingTask, Validation

__all__ = [  # the loop, and the names a method needs to plug into it (defined in the modules named above)
    "RESUME_OVERRIDES",
    "FitResult",
    "LoopSettings",
    "RunFiles",
    "RunState",
    "Skip",
    "StepClock",
    "TrainingTask",
    "Validation",
    "checkpoint_due",
    "fit",
    "format_seconds",
    "lr_factor",
    "resume_settings",
    "resumed_run",
    "run_state",
    "seeded_init",
    "seeded_torch",
    "settings_from_dict",
    "settings_to_dict",
    "step_seed",
]

#: consecutive-window rule for skipped steps: this many of the last :data:`_SKIP_WINDOW` steps skipped stops a run
_SKIP_LIMIT, _SKIP_WINDOW = 10, 20


def fit(
    task: TrainingTask,
    settings: LoopSettings,
    out: str | os.PathLike[str],
    state: RunState | None = None,
    resumed_from: str | os.PathLike[str] | None = None,
    cancel: Callable[[], bool] | None = None,
    describe: str = "",
) -> Generator[Progress, None, FitResult]:
    """Train ``task`` to ``settings.steps`` and write ``out`` (see the module docstring).

    ``state``: the stored run to continue (from ``resumed_from``; its file is never written unless it is ``out``).
    A finished run with no more steps to go writes nothing and says so.
    """
    cancel = cancel or (lambda: False)
    steps = int(settings.steps)
    state = state or RunState(step=0, steps=steps, settings=settings_to_dict(settings))
    if state.step >= steps or (state.stopped and steps <= state.steps):
        return (yield from _nothing_to_do(state, resumed_from or out))
    first_step = _restart(state, settings)
    with replicas(task.module) as group:
        if resumed_from is not None and state.best is not None and group.main:
            _copy_best(RunFiles.of(resumed_from).best, RunFiles.of(out).best)
        loop = _Loop(task, settings, RunFiles.of(out), state, group)
        return (yield from _train(loop, first_step, cancel, describe))


def _nothing_to_do(state: RunState, source: str | os.PathLike[str]) -> Generator[Progress, None, FitResult]:
    """The one ``"done"`` update of a finished run asked for no more steps than it has (nothing is written)."""
    how = (
        f"stopped early at step {state.step} ({state.stopped})"
        if state.stopped
        else f"already finished all {state.step} steps"
    )
    message = f"{source}: {how}; nothing to train and nothing written (a larger step count trains it further)"
    yield {
        "stage": "done",
        "fraction": 1.0,
        "step": state.step,
        "steps": state.steps,
        "message": message,
        "nothing_to_do": True,
    }
    return FitResult(None, None, None, state.step, state.steps, 0.0, state.history, state.stopped)


def _restart(state: RunState, settings: LoopSettings) -> int:
    """Prepare ``state`` (new or stored) for a session training to ``settings.steps``; returns its first step.

    A run stopped early (patience) starts counting stale validations afresh; histories from before the ``step``
    and ``seconds`` columns existed get them."""
    first_step, state.steps, state.stale = state.step, int(settings.steps), 0 if state.stopped else state.stale
    state.stopped = ""
    state.settings = settings_to_dict(settings)
    history = state.history = {k: list(v) for k, v in state.history.items()} or {
        "step": [],
        "loss": [],
        "lr": [],
        "seconds": [],
        "val": [],
    }
    count = len(history.get("loss", []))
    history.setdefault("step", list(range(1, count + 1)))
    history.setdefault("seconds", [math.nan] * count)
    history.setdefault("val", [])
    return first_step


def _copy_best(source: Path, target: Path) -> None:
    if source.resolve() != target.resolve() and source.is_file():
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _train(
    loop: _Loop, first_step: int, cancel: Callable[[], bool], describe: str
) -> Generator[Progress, None, FitResult]:
    """The steps of :func:`fit`: train, record, validate, checkpoint, report — one step at a time."""
    state, steps, group = loop.state, loop.steps, loop.group
    yield loop.start(first_step, describe)
    for step in range(first_step, steps):
        if group.size == 1 and cancel():  # several processes agree on it after the step's loss
            raise Cancelled(f"training cancelled at step {step}")
        trained = loop.train_step(step, cancel)
        done = state.step = step + 1
        loop.record(done, trained)
        update = loop.step_update(done, trained)
        if loop.task.validates and checkpoint_due(done, steps, loop.settings.validate_every):
            update = yield from loop.validate(done, update, cancel)
        final = done == steps or bool(state.stopped)
        if final and group.main:
            note = loop.task.finish()
            if note:
                yield {**update, "stage": "finish", "message": note}
        if (final or checkpoint_due(done, steps, loop.settings.checkpoint_every)) and group.main:
            loop.written = loop.save(done)
            update = {**update, "checkpoint": str(loop.written), "checkpoint_step": done}
        yield update
        if state.stopped:
            break
    return (yield from loop.end(first_step))


@dataclass
class _Trained:
    """What one step did: its learning rate, its loss (NaN when skipped) and loss parts, and why it was skipped
    (``""``: it trained)."""

    lr: float
    loss: float
    parts: dict[str, float]
    skipped: str


class _Loop:
    """One session of :func:`fit` on the processes of ``group`` (only its main process writes files): the
    optimiser, the clock and the files, and the pieces of a step."""

    def __init__(
        self, task: TrainingTask, settings: LoopSettings, files: RunFiles, state: RunState, group: Replicas
    ) -> None:
        self.task, self.settings, self.files, self.state, self.group = task, settings, files, state, group
        self.steps, self.history = int(settings.steps), state.history
        self.module = task.module.train()
        self.parameters = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=settings.lr, weight_decay=settings.weight_decay)
        if state.optimizer is not None:
            self.optimizer.load_state_dict(state.optimizer)
        self.step_loss = group.step(self.module, task.loss)  # task.loss itself in a single process
        self.max_norm = settings.grad_clip if settings.grad_clip > 0 else math.inf
        self.clock, self.started, self.offset = StepClock(), time.perf_counter(), float(state.seconds)
        self.written: Path | None = None
        self.best_written: Path | None = files.best if state.best is not None and files.best.is_file() else None

    def elapsed(self) -> float:
        """Training time of the run so far (earlier sessions included), seconds."""
        return self.offset + time.perf_counter() - self.started

    def start(self, first_step: int, describe: str) -> Progress:
        """The first update of the session (records the number of processes it trains with)."""
        group, state = self.group, self.state
        message = f"training {describe}".strip() + (f", {group.describe()}" if group.size > 1 else "")
        if first_step:
            before = state.world_size
            was = f"; trained so far with {before} process{'es' if before > 1 else ''}" if before != group.size else ""
            message += f" (resumed at step {first_step}{was})"
        state.world_size = group.size
        return {
            "stage": "train",
            "fraction": first_step / self.steps,
            "step": first_step,
            "steps": self.steps,
            "history": self.history,
            "message": message,
        }

    def train_step(self, step: int, cancel: Callable[[], bool]) -> _Trained:
        """Step ``step``: its learning rate, the task's loss (seeded per step), the processes' agreement, then one
        clipped AdamW update unless the step is skipped."""
        self.clock.start()
        lr = self.settings.lr * lr_factor(step, self.steps, self.settings.warmup)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        with seeded_torch(step_seed(self.settings.seed, step, stream=9)):  # dropout etc. draw from the global one
            result = self.step_loss(step)
        skipped, parts, value, total = "", {}, math.nan, None
        if isinstance(result, Skip):
            skipped = result.reason
        else:
            total = result["loss"] if isinstance(result, dict) else result
            parts = {k: float(v.detach()) for k, v in result.items() if k != "loss"} if isinstance(result, dict) else {}
            value = float(total.detach())
        agreed = self.group.agree(self.group.size > 1 and cancel(), skipped, value, parts)
        if agreed.cancelled:
            raise Cancelled(f"training cancelled at step {step}")
        skipped, value, parts = agreed.skipped, agreed.loss, agreed.parts
        if not skipped:
            skipped = self._update(total, value, step)
        self.clock.stop()
        return _Trained(lr, math.nan if skipped else value, parts, skipped)

    def _update(self, total: torch.Tensor | None, value: float, step: int) -> str:
        """Backward and optimiser step of a finite loss; returns ``"non-finite gradients"`` when the step had to be
        dropped (never let an overflowing gradient into the weights or the optimizer state), else ``""``."""
        if not math.isfinite(value) or total is None:
            raise TrainingError(
                f"the loss became {value} at step {step + 1}; lower the learning rate "
                "(the last checkpoint written is kept)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()  # several processes: the mean of their gradients
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, max_norm=self.max_norm)
        skipped = ""
        if torch.isfinite(norm):
            self.optimizer.step()
        else:
            skipped = "non-finite gradients"
        self.optimizer.zero_grad(set_to_none=True)
        return skipped

    def record(self, done: int, trained: _Trained) -> None:
        """Append step ``done`` to the history; :class:`TrainingError` when too many recent steps were skipped."""
        history = self.history
        history["step"].append(done)
        for key, item in (
            ("loss", trained.loss),
            ("lr", trained.lr),
            ("seconds", self.elapsed()),
            *trained.parts.items(),
        ):
            history.setdefault(key, [math.nan] * (len(history["step"]) - 1)).append(item)
        if trained.skipped:
            history.setdefault("skipped", []).append([done, trained.skipped])
            recent = [s for s, _ in history["skipped"] if s > done - _SKIP_WINDOW]
            if len(recent) >= _SKIP_LIMIT:
                raise TrainingError(
                    f"{len(recent)} of the last {_SKIP_WINDOW} steps were skipped ({trained.skipped}); lower the "
                    "learning rate or check the data (the last checkpoint written is kept)"
                )

    def step_update(self, done: int, trained: _Trained) -> Progress:
        """The ``"train"`` progress update of step ``done``."""
        left, clock = self.steps - done, self.clock
        said = f"skipped ({trained.skipped})" if trained.skipped else f"loss {trained.loss:.4f}"
        update: Progress = {
            "stage": "train",
            "step": done,
            "steps": self.steps,
            "loss": trained.loss,
            "lr": trained.lr,
            "seconds_per_step": clock.seconds_per_step,
            "eta": clock.eta(left),
            "fraction": done / self.steps,
            "message": f"step {done}/{self.steps}: {said}, {clock.seconds_per_step:.2f} s/step, "
            f"{format_seconds(clock.eta(left))} left",
        }
        if trained.parts:
            update["losses"] = trained.parts
        if trained.skipped:
            update["skipped"] = trained.skipped
        return update

    def validate(self, done: int, update: Progress, cancel: Callable[[], bool]) -> Generator[Progress, None, Progress]:
        """Validate after step ``done`` (rank 0 alone: the weights are the same in every process), write a new best
        model, and decide on early stopping (``patience``); returns the ``"validate"`` update."""
        state = self.state
        if self.group.main:
            yield update
            check = self.task.validate(cancel)
            self.module.train()
            self.history["val"].append([done, check.score])
            update = {
                **update,
                **check.details,
                "stage": "validate",
                "val_score": check.score,
                "message": f"step {done}: {check.message}",
            }
            if math.isfinite(check.score) and (state.best is None or check.score > state.best[1]):
                state.best, state.stale = [done, check.score], 0
                self.best_written = atomic_save(self.task.payload(state), self.files.best)
                update = {**update, "best": str(self.best_written), "best_step": done}
            else:
                state.stale += 1
                patience = self.settings.patience
                if patience and state.stale >= patience and done < self.steps:
                    best = f"best {state.best[1]:.4g} at step {state.best[0]}" if state.best else "no finite score"
                    state.stopped = f"no better validation score in {state.stale} validations; {best}"
        state.stopped = self.group.from_main(state.stopped)
        return update

    def save(self, step: int) -> Path:
        """Write the checkpoint of step ``step`` (with ``"training"``) and the history beside it."""
        weights = [v for v in self.module.state_dict().values() if v.is_floating_point()]
        if not all(bool(torch.isfinite(v).all()) for v in weights):
            raise TrainingError(
                f"the network's weights are no longer finite at step {step}; not saved (the last "
                "checkpoint written is kept): lower the learning rate"
            )
        state = self.state
        state.step, state.optimizer = step, self.optimizer.state_dict()
        state.seconds = self.elapsed()
        path = atomic_save({**self.task.payload(state), "training": state.to_dict()}, self.files.model)
        write_history(self.files.history, self.history)
        return path

    def end(self, first_step: int) -> Generator[Progress, None, FitResult]:
        """The ``"done"`` update and the result of the session."""
        self.module.eval()
        state, written, best = self.state, self.written, self.best_written
        seconds = time.perf_counter() - self.started
        ending = (
            f"stopped early at step {state.step}: {state.stopped}"
            if state.stopped
            else f"trained {state.step - first_step} steps in {format_seconds(seconds)}"
        )
        saved = f"; saved {written}" + (f" (best: {best})" if best else "") if written else ""
        yield {"stage": "done", "fraction": 1.0, "step": state.step, "steps": self.steps, "message": ending + saved}
        history_file = self.files.history if self.group.main else None
        return FitResult(written, best, history_file, state.step, self.steps, seconds, self.history, state.stopped)
