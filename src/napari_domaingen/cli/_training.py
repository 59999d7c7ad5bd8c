"""What the three training commands (train, swap-train, pretrain-extractor) share: the run options, the resume /
fine-tune rules as the user meets them, running the job with Ctrl-C handling, and the closing report.

The rules themselves live in :mod:`napari_domaingen.core.training` (docs/training.md): ``--resume [CKPT]``
continues a run to its own step count or a larger ``--steps`` (bare ``--resume``: the ``--out`` file) and writes
``--out`` (default: CKPT), leaving CKPT untouched when ``--out`` is elsewhere; ``--init CKPT`` fine-tunes.
Under torchrun (``torchrun --nproc-per-node N $(which domaingen) train …``) only rank 0 prints; the others print
nothing but errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.distributed import launch
from ..core.training import FitResult, LoopSettings, format_seconds, run_state
from ..core.training_log import RunFiles, best_validation
from ..io.output_guard import check_outputs, require_input
from ..progress import Progress, run
from ._options import number
from ._report import TrainPrinter, file_state, interrupted

__all__ = ["RunPlan", "add_run_options", "fit_and_report", "plan_run"]


def add_run_options(parser: argparse.ArgumentParser, defaults: LoopSettings, validation: str | None) -> None:
    """``--out``, ``--resume``, ``--init``, ``--steps``, ``--lr``, ``--checkpoint-every``, ``--seed``,
    ``--device``, ``--quiet``; with ``validation`` (what the score is) also ``--validate-every`` and
    ``--patience``."""
    d = defaults
    group = parser.add_argument_group("run")
    group.add_argument(
        "--out",
        metavar="MODEL.pt",
        help="model file to write; MODEL.best.pt (best validation) and MODEL.history.csv are written "
        "beside it (default with --resume CKPT: CKPT)",
    )
    start = group.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="CKPT",
        help="continue this run exactly, with its own settings, to its step count or a larger --steps "
        "(without CKPT: the --out file; a new run if it does not exist yet)",
    )
    start.add_argument("--init", metavar="CKPT", help="fine-tune from this model (a new optimiser and schedule)")
    group.add_argument(
        "--steps", type=int, default=None, help=f"training steps (default: {d.steps}; with --resume: the run's own)"
    )
    number(group, "--lr", d.lr, f"AdamW learning rate, {d.warmup} warm-up steps then cosine to 0")
    number(group, "--checkpoint-every", d.checkpoint_every, "write the model every N steps and at the end", "N")
    if validation:
        number(group, "--validate-every", d.validate_every, f"{validation} every N steps and at the end", "N")
        number(group, "--patience", d.patience, "stop after N validations without a better score (0: never)", "N")
    number(group, "--seed", d.seed, "seeds every random draw")
    group.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def loop_options(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """The :class:`~napari_domaingen.core.training.LoopSettings` values given on the command line."""
    values = {
        "steps": steps,
        "lr": args.lr,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
        "device": args.device,
    }
    for key in ("validate_every", "patience"):
        if hasattr(args, key):
            values[key] = getattr(args, key)
    return values


@dataclass(frozen=True)
class RunPlan:
    """Where a run reads from and writes to: ``out``; ``resume`` / ``init`` checkpoint (or ``None``); ``steps``;
    ``stored``: the content of the resume / init checkpoint (read once, here)."""

    out: Path
    resume: Path | None
    init: str | None
    steps: int
    stored: dict[str, Any] | None = None


def plan_run(
    args: argparse.Namespace,
    default_steps: int,
    read: Callable[[Path], dict[str, Any]],
    fine_tune_note: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> RunPlan:
    """Check ``--out`` / ``--resume`` / ``--init`` (reading the checkpoints with ``read``, which fails clearly for a
    file of another kind) and say what will happen. ``inputs``: the run's data files; the output guard refuses a
    ``--out`` (or its ``.best.pt`` / ``.history.csv``) that would overwrite one of them or the ``--init`` model
    (a resumed checkpoint is meant to be written again). Under torchrun, processes other than rank 0 print nothing
    from here on (errors still reach stderr)."""
    launched = launch()
    if launched is not None and launched.rank != 0:
        sys.stdout = open(os.devnull, "w")
    resume = Path(args.resume) if args.resume else None
    out = Path(args.out) if args.out else resume
    if out is None:
        raise ValueError("--out MODEL.pt is required (with --resume CKPT it defaults to CKPT)")
    for path in [*inputs, args.init]:
        if path:
            require_input(path, "training input")
    files = RunFiles.of(out)
    check_outputs([files.model, files.best, files.history], [*inputs, args.init])
    if args.resume == "":  # bare --resume: the --out file
        if out.exists():
            resume = out
        else:
            print(f"Nothing to resume at {out} yet: starting a new run.")
    stored = None
    if resume is not None:
        stored = read(resume)
        state = run_state(stored, resume)
        where = f"; writing {out}, {resume} stays as it is" if out.resolve() != resume.resolve() else ""
        print(
            f"Resuming {resume} at step {state.step} of {state.steps} with the run's own settings (only --device, "
            f"--checkpoint-every, --validate-every, --patience and a larger --steps apply){where}"
        )
    if args.init:
        stored = read(Path(args.init))
        print(f"Fine-tuning {args.init}: {fine_tune_note}")
    steps = args.steps if args.steps is not None else (1 if resume is not None else default_steps)
    return RunPlan(out, resume, args.init, steps, stored)


def fit_and_report(
    command: str, job: Generator[Progress, None, FitResult], plan: RunPlan, quiet: bool, again: str
) -> FitResult | None:
    """Run a training job, printing its progress; ``None`` after a Ctrl-C (having said what survives)."""
    before = file_state(plan.out)
    try:
        result = run(job, None if quiet else TrainPrinter())
    except KeyboardInterrupt:
        launched = launch()
        if launched is not None and launched.rank != 0:  # rank 0 says what survives
            return None
        print(f"domaingen {command}: {interrupted(plan.out, before, plan.resume, again)}", file=sys.stderr)
        return None
    if result.checkpoint is None and quiet:  # the job's last message said so, unless quiet
        print(f"{plan.resume}: already finished ({result.steps_done} steps); nothing trained, nothing written")
    return result


def closing_lines(result: FitResult) -> list[str]:
    """``steps, final loss, time`` and where the best model and the history are."""
    lines = [
        f"{result.steps_done} steps, final loss {result.final_loss:.4f}; {format_seconds(result.seconds)}"
        + (f"; stopped early: {result.stopped}" if result.stopped else "")
    ]
    if result.skipped_summary:
        lines.append(result.skipped_summary)
    best = best_validation(result.history)
    if result.best is not None and best is not None:
        lines.append(f"best model (validation score {best[1]:.4g} at step {best[0]}): {result.best}")
    if result.history_file is not None and result.history_file.exists():
        lines.append(f"history (step, loss, lr, seconds, val_score): {result.history_file}")
    return lines
