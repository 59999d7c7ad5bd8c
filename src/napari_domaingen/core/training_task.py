"""What a method gives the one training loop (:class:`TrainingTask`: its network, the loss of a step, its
validation) and what the loop gives back (:class:`FitResult`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .training_state import RunState

__all__ = ["FitResult", "Skip", "TrainingTask", "Validation"]


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
    """What a method gives :func:`~napari_domaingen.core.training.fit`. ``module``: the network trained (its
    parameters with ``requires_grad`` are optimised); ``validates``: whether :meth:`validate` has data."""

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

    @property
    def skipped_summary(self) -> str:
        """How many steps of the run were skipped and why, e.g. ``"4 of 12 steps skipped: the crops carry no
        signal (constant input) (4)"``; empty when none was."""
        reasons = [str(reason) for _, reason in self.history.get("skipped", [])]
        if not reasons:
            return ""
        counts = {reason: reasons.count(reason) for reason in dict.fromkeys(reasons)}
        why = "; ".join(f"{reason} ({count})" for reason, count in counts.items())
        return f"{len(reasons)} of {self.steps_done} steps skipped: {why}"
