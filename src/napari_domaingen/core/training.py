"""Conventions shared by every training loop: per-step seeds, the cosine schedule, step timing and ETA.

A training loop is a job (see :mod:`napari_domaingen.core.progress`): a generator over steps that yields
``{"stage": "train", "step", "steps", "loss", "lr", "seconds_per_step", "eta", "fraction", "message"}`` and checks
its cancel flag between steps. Checkpoints are written with
:func:`napari_domaingen.models.checkpoints.atomic_save` every N steps and at the end; a cancelled run keeps the
last one intact.

Reproducibility: every random draw of step ``k`` comes from generators seeded with :func:`step_seed` ``(seed, k)``,
so a run resumed from a checkpoint at step ``k`` draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterator

import torch

__all__ = ["StepClock", "checkpoint_due", "cosine_scheduler", "format_seconds", "seeded_torch", "step_seed"]


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A 31-bit seed for the random draws of ``step`` of a run seeded with ``seed`` (``stream`` separates uses)."""
    value = (int(seed) * 1_000_003 + int(step) * 7_919 + int(stream) * 104_729) % (2**31 - 1)
    return value


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


def cosine_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step cosine decay from the optimizer's lr to 0 over ``total_steps`` (call ``.step()`` after every step);
    with ``warmup_steps``, the lr first rises linearly from ``lr / warmup_steps`` to ``lr`` over that many steps."""
    total = max(1, int(total_steps))
    if warmup_steps <= 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
    warmup = int(warmup_steps)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def format_seconds(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StepClock:
    """Wall time per training step (median of the last ``window`` steps) and the time left."""

    def __init__(self, window: int = 10) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self._start: float | None = None

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> float:
        """End the step started by :meth:`start`; returns its duration in seconds."""
        if self._start is None:
            return 0.0
        elapsed = time.perf_counter() - self._start
        self._times.append(elapsed)
        self._start = None
        return elapsed

    @property
    def seconds_per_step(self) -> float:
        if not self._times:
            return math.nan
        ordered = sorted(self._times)
        return ordered[len(ordered) // 2]

    def eta(self, steps_left: int) -> float:
        """Seconds until ``steps_left`` more steps are done (NaN before the first step)."""
        return self.seconds_per_step * max(0, steps_left)
