"""What a training run leaves beside its model and tells people: file names, the CSV history, step timing.

``--out MODEL.pt`` → ``MODEL.best.pt`` (the best model by validation) and ``MODEL.history.csv`` with one row per
step: ``step,loss,lr,seconds[,val_score][,<loss parts>]`` (``seconds``: training time since the run started,
resumes included; ``val_score`` on validated steps only; a skipped step has an empty loss).

>>> RunFiles.of("runs/brain.pt").history.name
'brain.history.csv'
>>> format_seconds(185)
'3 min 05 s'
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..io.atomic import atomic_write_text

__all__ = [
    "RunFiles",
    "StepClock",
    "best_validation",
    "format_seconds",
    "history_rows",
    "read_history",
    "write_history",
]

_FIRST = ("step", "loss", "lr", "seconds", "val_score")


@dataclass(frozen=True)
class RunFiles:
    """The files of a run writing ``model``: ``best`` (``MODEL.best.pt``) and ``history`` (``MODEL.history.csv``)."""

    model: Path
    best: Path
    history: Path

    @classmethod
    def of(cls, model: str | os.PathLike[str]) -> RunFiles:
        model = Path(model)
        stem = model.stem if model.suffix else model.name
        return cls(
            model, model.with_name(f"{stem}.best{model.suffix or '.pt'}"), model.with_name(f"{stem}.history.csv")
        )


def history_rows(history: dict[str, list]) -> list[dict[str, float]]:
    """One dict per step from the column history of a run (``val`` pairs joined as ``val_score``)."""
    steps = history.get("step") or list(range(1, len(history.get("loss", [])) + 1))
    scores = {int(s): float(v) for s, v in history.get("val", [])}
    columns = [k for k, v in history.items() if k not in ("step", "val", "skipped") and len(v) == len(steps)]
    rows = []
    for i, step in enumerate(steps):
        row = {"step": int(step), **{k: float(history[k][i]) for k in columns}}
        if int(step) in scores:
            row["val_score"] = scores[int(step)]
        rows.append(row)
    return rows


def best_validation(history: dict[str, list]) -> tuple[int, float] | None:
    """``(step, score)`` of the best finite validation score of a run's history (the first of equal ones)."""
    scores = [(int(s), float(v)) for s, v in history.get("val", []) if math.isfinite(float(v))]
    return max(scores, key=lambda pair: pair[1]) if scores else None


def _cell(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if not math.isfinite(value) else f"{value:.6g}"


def write_history(path: str | os.PathLike[str], history: dict[str, list]) -> Path:
    """Write the history as CSV (atomically); columns :data:`_FIRST` first, then the loss parts."""
    rows = history_rows(history)
    extra = sorted({k for row in rows for k in row} - set(_FIRST))
    names = list(_FIRST) + extra
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) if k in row else "" for k in names})
    return atomic_write_text(path, text.getvalue())


def read_history(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of a ``MODEL.history.csv`` (empty cells → NaN)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(fh)]


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
