"""What the commands print: progress lines of any job, training progress, what survives a Ctrl-C, errors.

Every command prints through this module, so their output looks the same. Errors: :func:`report_error` turns the
package's own errors (:class:`~napari_domaingen.errors.DomaingenError`) and bad input (``ValueError``,
``OSError``) into one line ``domaingen COMMAND: error: <file>: <problem>`` and exit status 2; a Ctrl-C is one line
``domaingen COMMAND: interrupted: …`` and exit status 130 (:func:`report_interrupted`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..core.training import format_seconds
from ..progress import Progress

__all__ = ["ProgressPrinter", "TrainPrinter", "file_state", "interrupted", "report_error", "report_interrupted"]


class ProgressPrinter:
    """Prints a job's progress dicts: every new stage, and inference/segmentation progress in steps of 10%."""

    _COUNTED = ("inference", "segment", "get")  # stages whose message changes with every window

    def __init__(self) -> None:
        self.last: tuple[str, int] | None = None

    def __call__(self, update: Progress) -> None:
        fraction = float(update.get("fraction", 0.0))
        stage = str(update.get("stage", ""))
        key = (str(update.get("message", "")) if stage not in self._COUNTED else stage, int(fraction * 10))
        if key != self.last:
            self.last = key
            print(f"  [{100 * fraction:3.0f}%] {update.get('message', '')}", flush=True)


class TrainPrinter:
    """Prints a training job: its stage messages, a line per ~10 % of the steps (loss, s/step, ETA), every
    validation (and a new best model) and every checkpoint."""

    def __init__(self) -> None:
        self.decile = -1
        self.message = ""
        self.losses: list[float] = []

    def __call__(self, update: Progress) -> None:
        saved = f"; checkpoint saved: {update['checkpoint']}" if "checkpoint" in update else ""
        if update.get("stage") == "validate":
            best = f"; best so far, saved: {update['best']}" if "best" in update else ""
            print(f"  {update['message']}{best}{saved}", flush=True)
            return
        if "loss" not in update or update.get("stage") != "train":  # preparing, training …, finishing, done
            message = str(update.get("message", ""))
            if message and message != self.message:
                self.message = message
                print(f"  {message}", flush=True)
            return
        step, steps = int(update["step"]), int(update["steps"])
        self.losses.append(float(update["loss"]))
        decile = int(10 * step / steps)
        if decile == self.decile and not saved and step != steps:
            return
        self.decile = decile
        finite = [v for v in self.losses[-max(1, steps // 10) :] if math.isfinite(v)]
        mean = f" (mean of the last {len(finite)}: {sum(finite) / len(finite):.4f})" if len(finite) > 1 else ""
        eta = update.get("eta", math.nan)
        said = f"skipped ({update['skipped']})" if update.get("skipped") else f"loss {update['loss']:.4f}"
        print(
            f"  step {step}/{steps} ({100 * step / steps:3.0f}%): {said}{mean}, "
            f"{update.get('seconds_per_step', math.nan):.2f} s/step, "
            f"ETA {format_seconds(eta) if math.isfinite(eta) else '?'}{saved}",
            flush=True,
        )


def file_state(path: str | Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, ``None`` if absent: tells whether a run replaced it."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _kept_step(path: Path) -> str:
    """`` (step k of n)`` of the training state in checkpoint ``path``, or ``""``."""
    from ..models.checkpoints import read_checkpoint

    try:
        state = read_checkpoint(path)["training"]
        return f" (step {state['step']} of {state['steps']})"
    except (ValueError, OSError, KeyError, TypeError):
        return ""


def interrupted(out: Path, before: tuple[int, int] | None, resume: Path | None, again: str) -> str:
    """What survives a Ctrl-C: the last checkpoint this run wrote, or what was there before. ``again``: how to
    run the same command (e.g. ``"run the same command (same --image/--label) with"``)."""
    if file_state(out) not in (None, before):
        return f"interrupted: the last checkpoint {out}{_kept_step(out)} is intact; to continue, {again} --resume {out}"
    if resume is not None:
        return (
            f"interrupted before this run wrote a checkpoint: {resume} is unchanged; to continue, {again} "
            f"--resume {resume}"
        )
    if before is not None:
        return f"interrupted before the first checkpoint of this run: nothing saved, {out} is unchanged"
    return "interrupted before the first checkpoint: nothing was saved (see --checkpoint-every)"


def report_error(command: str, error: BaseException) -> int:
    """Print ``domaingen COMMAND: error: MESSAGE`` on stderr; returns the exit status (2)."""
    print(f"domaingen {command}: error: {error}", file=sys.stderr)
    return 2


#: exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


def report_interrupted(command: str, what: str = "") -> int:
    """Print ``domaingen COMMAND: interrupted…`` (one line, stderr) after a Ctrl-C; returns 130. ``what``: what
    was done, e.g. ``"3 of 10 cases done"``; every output is written atomically, so none is half-written."""
    done = f"{what}; " if what else "no file is left half-written; "
    print(f"domaingen {command}: interrupted: {done}rerun the same command to go on", file=sys.stderr)
    return INTERRUPTED
