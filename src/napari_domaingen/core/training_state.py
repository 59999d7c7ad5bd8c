"""What a training run is made of between sessions: its settings (:class:`LoopSettings`) and its resumable state
(:class:`RunState`, stored as ``"training"`` in every checkpoint), and the rules that resume one
(:func:`resume_settings`, docs/training.md)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from ..errors import TrainingError

__all__ = [
    "RESUME_OVERRIDES",
    "LoopSettings",
    "RunState",
    "resume_settings",
    "resumed_run",
    "run_state",
    "settings_from_dict",
    "settings_to_dict",
]

#: Settings a resumed run takes from the command/widget instead of from its checkpoint.
RESUME_OVERRIDES = ("device", "checkpoint_every", "validate_every", "patience")


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


def resume_settings(cls: type[S], state: RunState, requested: S, **legacy: Any) -> S:
    """The settings of a resumed run: the stored run's own, except :data:`RESUME_OVERRIDES` taken from
    ``requested`` and ``steps`` = the larger of the stored and the requested count."""
    stored = settings_from_dict(cls, state.settings, **legacy)
    overrides = {k: getattr(requested, k) for k in RESUME_OVERRIDES}
    return replace(stored, steps=max(int(stored.steps), int(requested.steps)), **overrides)


def resumed_run(
    cls: type[S], stored: dict[str, Any], path: str | os.PathLike[str], requested: S, **legacy: Any
) -> tuple[S, RunState]:
    """The settings (:func:`resume_settings`) and :class:`RunState` (:func:`run_state`) of checkpoint ``stored``
    read from ``path``, for a run resumed with ``requested`` settings."""
    state = run_state(stored, path)
    return resume_settings(cls, state, requested, **legacy), state
