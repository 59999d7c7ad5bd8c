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

A loop is a job (:mod:`napari_domaingen.progress`): it yields ``{"stage": "train", "step", "steps", "loss",
"lr", "seconds_per_step", "eta", "fraction", "message"}`` after every step (plus ``"losses"``, ``"skipped"``,
``"checkpoint"``), ``"stage": "validate"`` dicts with ``"val_score"`` (plus the task's details, and ``"best"``
when a new best model was written) and ends with ``"stage": "done"``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from ..errors import TrainingError
from ..io.atomic import atomic_path
from ..models.checkpoints import atomic_save
from ..progress import Cancelled, Progress
from .distributed import Replicas, replicas
from .distributed import rank as process_rank
from .training_log import RunFiles, StepClock, format_seconds, write_history

__all__ = [
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
    "step_seed",
]

#: Settings a resumed run takes from the command/widget instead of from its checkpoint.
RESUME_OVERRIDES = ("device", "checkpoint_every", "validate_every", "patience")


def step_seed(seed: int, step: int, stream: int = 0, rank: int | None = None) -> int:
    """A 31-bit seed for the random draws of ``step`` of a run seeded with ``seed`` (``stream`` separates uses).

    ``rank``: the process of a multi-process run drawing (default: this one's,
    :func:`~napari_domaingen.core.distributed.rank`; 0 in a single process). Rank 0 draws what a single process
    draws; every other rank its own stream (deterministic in seed, step, stream and rank)."""
    seed_ = (int(seed) * 1_000_003 + int(step) * 7_919 + int(stream) * 104_729) % (2**31 - 1)
    rank = process_rank() if rank is None else int(rank)
    if rank == 0:
        return seed_
    return int(np.random.SeedSequence([seed_, rank]).generate_state(1)[0]) % (2**31 - 1)


def checkpoint_due(done: int, steps: int, every: int) -> bool:
    """Whether a run of ``steps`` steps writes its checkpoint after step ``done``: every ``every`` steps (0:
    never in between) and always at the end."""
    return done == steps or bool(every and done % every == 0)


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's global CPU (and CUDA) generators for the block, restoring their previous state afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def lr_factor(step: int, steps: int, warmup: int = 0) -> float:
    """Learning-rate multiplier of step ``step`` (0-based) of ``steps``: ``(step + 1) / (warmup + 1)`` during the
    warm-up, then cosine from 1 to 0 over the remaining steps."""
    warmup = max(0, min(int(warmup), steps - 1))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class LoopSettings:
    """What every training run shares. ``steps``; AdamW ``lr``/``weight_decay``; ``warmup`` steps of linear
    warm-up before the cosine decay; ``grad_clip``: maximal gradient norm (0: no clipping); ``checkpoint_every`` /
    ``validate_every``: steps between checkpoints / validations (0: only at the end); ``patience``: validations
    without improvement before the run stops (0: never); ``seed``: seeds the initialisation and every draw;
    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``, …"""

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 0.0
    checkpoint_every: int = 50
    validate_every: int = 50
    patience: int = 0
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        """``ValueError`` for settings no run can use."""
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")
        if self.warmup < 0 or self.grad_clip < 0 or self.patience < 0:
            raise ValueError("warmup, grad_clip and patience must be at least 0")
        if self.checkpoint_every < 0 or self.validate_every < 0:
            raise ValueError("checkpoint_every and validate_every must be at least 0")


S = TypeVar("S", bound=LoopSettings)


def settings_to_dict(settings: LoopSettings) -> dict[str, Any]:
    """Plain values only (tuples → lists), as stored in checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def settings_from_dict(cls: type[S], data: dict[str, Any], **legacy: Any) -> S:
    """``cls`` from stored values; unknown keys are dropped, list values become tuples, ``legacy`` fills fields that
    older files do not have."""
    known = {f.name: f for f in fields(cls)}
    values = {**legacy, **{k: v for k, v in data.items() if k in known}}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass
class RunState:
    """The resumable state of a run, stored as ``"training"`` in its checkpoints. ``step`` done of ``steps``;
    ``history``: columns ``step, loss, lr, seconds`` (+ loss parts) and ``val`` (``[[step, score], ...]``);
    ``best``: ``[step, score]`` of the best validation; ``stale``: validations since it; ``seconds``: training
    time so far; ``stopped``: why the run ended early (``""`` if it did not); ``world_size``: the number of
    processes its last session trained with (torchrun; 1: a single process)."""

    step: int
    steps: int
    settings: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    history: dict[str, list] = field(default_factory=dict)
    best: list | None = None
    stale: int = 0
    seconds: float = 0.0
    stopped: str = ""
    world_size: int = 1

    @property
    def finished(self) -> bool:
        return self.step >= self.steps or bool(self.stopped)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_state(stored: dict[str, Any], path: str | os.PathLike[str]) -> RunState:
    """The :class:`RunState` of a loaded checkpoint, or :class:`TrainingError` when it has none (a final export such
    as ``MODEL.best.pt`` or a shipped model: fine-tune it instead)."""
    state = stored.get("training") if isinstance(stored, dict) else None
    if not isinstance(state, dict) or "step" not in state:
        raise TrainingError(
            f"{path}: holds no training state to resume (a final export such as MODEL.best.pt or a "
            "shipped model); fine-tune from it instead (--init)"
        )
    known = {f.name for f in fields(RunState)}
    return RunState(**{k: v for k, v in state.items() if k in known})


def resumed_run(
    cls: type[S], stored: dict[str, Any], path: str | os.PathLike[str], requested: S, **legacy: Any
) -> tuple[S, RunState]:
    """The settings (:func:`resume_settings`) and :class:`RunState` (:func:`run_state`) of checkpoint ``stored``
    read from ``path``, for a run resumed with ``requested`` settings."""
    state = run_state(stored, path)
    return resume_settings(cls, state, requested, **legacy), state


def seeded_init(seed: int) -> contextlib.AbstractContextManager[None]:
    """The block where a run seeded with ``seed`` builds its network (same weights for the same seed, on every
    process)."""
    return seeded_torch(step_seed(seed, -1, rank=0))


def resume_settings(cls: type[S], state: RunState, requested: S, **legacy: Any) -> S:
    """The settings of a resumed run: the stored run's own, except :data:`RESUME_OVERRIDES` taken from
    ``requested`` and ``steps`` = the larger of the stored and the requested count."""
    stored = settings_from_dict(cls, state.settings, **legacy)
    overrides = {k: getattr(requested, k) for k in RESUME_OVERRIDES}
    return replace(stored, steps=max(int(stored.steps), int(requested.steps)), **overrides)


@dataclass
class Validation:
    """A validation result: ``score`` (higher is better; NaN: unknown), a one-line ``message`` and ``details``
    merged into the progress dict (e.g. ``{"val_dice": …}``)."""

    score: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skip:
    """Returned by :meth:`TrainingTask.loss` for a step that cannot train (e.g. a constant input); ``reason``."""

    reason: str


class TrainingTask(Protocol):
    """What a method gives :func:`fit`. ``module``: the network trained (its parameters with ``requires_grad``
    are optimised); ``validates``: whether :meth:`validate` has data."""

    module: torch.nn.Module
    validates: bool

    def loss(self, step: int) -> torch.Tensor | dict[str, torch.Tensor] | Skip:
        """The loss of step ``step`` (a scalar, or ``{"loss": total, part: value, ...}``), or :class:`Skip`."""

    def validate(self, cancel: Callable[[], bool]) -> Validation:
        """Score the current network (it is put back in train mode afterwards)."""

    def payload(self, state: RunState) -> dict[str, Any]:
        """The model file's content without ``"training"`` (format tag, weights, spec/config, card)."""

    def finish(self) -> str:
        """Work after the last step, before the final checkpoint; returns a message (``""``: nothing done)."""


@dataclass
class FitResult:
    """``checkpoint``: the model file (``None`` if this run wrote nothing); ``best``: the best model file, if any;
    ``steps_done`` of ``steps``; ``seconds`` of this session; ``history`` (see :class:`RunState`); ``stopped``:
    why it ended early."""

    checkpoint: Path | None
    best: Path | None
    history_file: Path | None
    steps_done: int
    steps: int
    seconds: float
    history: dict[str, list]
    stopped: str = ""

    @property
    def final_loss(self) -> float:
        finite = [v for v in self.history.get("loss", [])[-10:] if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.nan


def _copy_best(source: Path, target: Path) -> None:
    if source.resolve() != target.resolve() and source.is_file():
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


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
    files = RunFiles.of(out)
    steps = int(settings.steps)
    state = state or RunState(step=0, steps=steps, settings=settings_to_dict(settings))
    if state.step >= steps or (state.stopped and steps <= state.steps):
        how = (
            f"stopped early at step {state.step} ({state.stopped})"
            if state.stopped
            else f"already finished all {state.step} steps"
        )
        message = (
            f"{resumed_from or out}: {how}; nothing to train and nothing written (a larger step count "
            "trains it further)"
        )
        yield {
            "stage": "done",
            "fraction": 1.0,
            "step": state.step,
            "steps": state.steps,
            "message": message,
            "nothing_to_do": True,
        }
        return FitResult(None, None, None, state.step, state.steps, 0.0, state.history, state.stopped)
    first_step, state.steps, state.stale = state.step, steps, 0 if state.stopped else state.stale
    state.stopped = ""
    state.settings = settings_to_dict(settings)
    history = state.history = {k: list(v) for k, v in state.history.items()} or {
        "step": [],
        "loss": [],
        "lr": [],
        "seconds": [],
        "val": [],
    }
    count = len(history.get("loss", []))  # files from before the step and seconds columns existed
    history.setdefault("step", list(range(1, count + 1)))
    history.setdefault("seconds", [math.nan] * count)
    history.setdefault("val", [])
    with replicas(task.module) as group:
        return (yield from _train(task, settings, files, state, first_step, resumed_from, cancel, describe, group))


def _train(
    task: TrainingTask,
    settings: LoopSettings,
    files: RunFiles,
    state: RunState,
    first_step: int,
    resumed_from: str | os.PathLike[str] | None,
    cancel: Callable[[], bool],
    describe: str,
    group: Replicas,
) -> Generator[Progress, None, FitResult]:
    """The steps of :func:`fit` on the processes of ``group`` (only its main process writes files)."""
    steps, history = int(settings.steps), state.history
    if resumed_from is not None and state.best is not None and group.main:
        _copy_best(RunFiles.of(resumed_from).best, files.best)

    module = task.module.train()
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    step_loss = group.step(module, task.loss)  # task.loss itself in a single process
    max_norm = settings.grad_clip if settings.grad_clip > 0 else math.inf
    clock, started, offset = StepClock(), time.perf_counter(), float(state.seconds)
    written: Path | None = None
    best_written: Path | None = files.best if state.best is not None and files.best.is_file() else None

    def save(step: int) -> Path:
        weights = [v for v in module.state_dict().values() if v.is_floating_point()]
        if not all(bool(torch.isfinite(v).all()) for v in weights):
            raise TrainingError(
                f"the network's weights are no longer finite at step {step}; not saved (the last "
                "checkpoint written is kept): lower the learning rate"
            )
        state.step, state.optimizer = step, optimizer.state_dict()
        state.seconds = offset + time.perf_counter() - started
        path = atomic_save({**task.payload(state), "training": state.to_dict()}, files.model)
        write_history(files.history, history)
        return path

    message = f"training {describe}".strip() + (f", {group.describe()}" if group.size > 1 else "")
    if first_step:
        before = state.world_size
        was = f"; trained so far with {before} process{'es' if before > 1 else ''}" if before != group.size else ""
        message += f" (resumed at step {first_step}{was})"
    state.world_size = group.size
    yield {
        "stage": "train",
        "fraction": first_step / steps,
        "step": first_step,
        "steps": steps,
        "history": history,
        "message": message,
    }
    for step in range(first_step, steps):
        if group.size == 1 and cancel():  # several processes agree on it after the step's loss
            raise Cancelled(f"training cancelled at step {step}")
        clock.start()
        lr = settings.lr * lr_factor(step, steps, settings.warmup)
        for group_ in optimizer.param_groups:
            group_["lr"] = lr
        with seeded_torch(step_seed(settings.seed, step, stream=9)):  # dropout etc. draw from the global generator
            result = step_loss(step)
        skipped, parts, value = "", {}, math.nan
        if isinstance(result, Skip):
            skipped = result.reason
        else:
            total = result["loss"] if isinstance(result, dict) else result
            parts = {k: float(v.detach()) for k, v in result.items() if k != "loss"} if isinstance(result, dict) else {}
            value = float(total.detach())
        agreed = group.agree(group.size > 1 and cancel(), skipped, value, parts)
        if agreed.cancelled:
            raise Cancelled(f"training cancelled at step {step}")
        skipped, value, parts = agreed.skipped, agreed.loss, agreed.parts
        if not skipped:
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at step {step + 1}; lower the learning rate "
                    "(the last checkpoint written is kept)"
                )
            optimizer.zero_grad(set_to_none=True)
            total.backward()  # several processes: the mean of their gradients
            norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=max_norm)
            if torch.isfinite(norm):
                optimizer.step()
            else:  # never let an overflowing gradient into the weights or the optimizer state
                skipped = "non-finite gradients"
            optimizer.zero_grad(set_to_none=True)
        clock.stop()
        done = state.step = step + 1
        value = math.nan if skipped else value
        elapsed = offset + time.perf_counter() - started
        history["step"].append(done)
        for key, item in (("loss", value), ("lr", lr), ("seconds", elapsed), *parts.items()):
            history.setdefault(key, [math.nan] * (len(history["step"]) - 1)).append(item)
        if skipped:
            history.setdefault("skipped", []).append([done, skipped])
            recent = [s for s, _ in history["skipped"] if s > done - 20]
            if len(recent) >= 10:
                raise TrainingError(
                    f"{len(recent)} of the last 20 steps were skipped ({skipped}); lower the learning "
                    "rate or check the data (the last checkpoint written is kept)"
                )
        left = steps - done
        said = f"skipped ({skipped})" if skipped else f"loss {value:.4f}"
        update: Progress = {
            "stage": "train",
            "step": done,
            "steps": steps,
            "loss": value,
            "lr": lr,
            "seconds_per_step": clock.seconds_per_step,
            "eta": clock.eta(left),
            "fraction": done / steps,
            "message": f"step {done}/{steps}: {said}, {clock.seconds_per_step:.2f} s/step, "
            f"{format_seconds(clock.eta(left))} left",
        }
        if parts:
            update["losses"] = parts
        if skipped:
            update["skipped"] = skipped
        if task.validates and checkpoint_due(done, steps, settings.validate_every):
            if group.main:  # the weights are the same in every process: rank 0 alone validates
                yield update
                check = task.validate(cancel)
                module.train()
                history["val"].append([done, check.score])
                update = {
                    **update,
                    **check.details,
                    "stage": "validate",
                    "val_score": check.score,
                    "message": f"step {done}: {check.message}",
                }
                if math.isfinite(check.score) and (state.best is None or check.score > state.best[1]):
                    state.best, state.stale = [done, check.score], 0
                    best_written = atomic_save(task.payload(state), files.best)
                    update = {**update, "best": str(best_written), "best_step": done}
                else:
                    state.stale += 1
                    if settings.patience and state.stale >= settings.patience and done < steps:
                        best = f"best {state.best[1]:.4g} at step {state.best[0]}" if state.best else "no finite score"
                        state.stopped = f"no better validation score in {state.stale} validations; {best}"
            state.stopped = group.from_main(state.stopped)
        final = done == steps or bool(state.stopped)
        if final and group.main:
            note = task.finish()
            if note:
                yield {**update, "stage": "finish", "message": note}
        if (final or checkpoint_due(done, steps, settings.checkpoint_every)) and group.main:
            written = save(done)
            update = {**update, "checkpoint": str(written), "checkpoint_step": done}
        yield update
        if state.stopped:
            break
    module.eval()
    seconds = time.perf_counter() - started
    trained = state.step - first_step
    ending = (
        f"stopped early at step {state.step}: {state.stopped}"
        if state.stopped
        else f"trained {trained} steps in {format_seconds(seconds)}"
    )
    saved = f"; saved {written}" + (f" (best: {best_written})" if best_written else "") if written else ""
    yield {"stage": "done", "fraction": 1.0, "step": state.step, "steps": steps, "message": ending + saved}
    history_file = files.history if group.main else None
    return FitResult(written, best_written, history_file, state.step, steps, seconds, history, state.stopped)


__all__ += ["settings_from_dict", "settings_to_dict"]
