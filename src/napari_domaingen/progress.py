"""The job protocol shared by every long-running job: typed progress updates, cancellation, and a driver.

A job is a generator that yields :class:`Progress` updates (``stage``: short name, ``fraction``: 0…1 overall,
``message``: one line for people, plus the optional fields below) and returns its result. It checks a
``cancel()`` callable and raises :class:`Cancelled` when asked to stop. napari widgets run jobs in
``thread_worker`` (through ``_widgets/_jobs.JobRunner``); scripts and the CLI use :func:`run`.

It lives beside :mod:`napari_domaingen.errors` because every layer (``io``, ``core``, ``cli``, ``_widgets``) uses
it and none of them may depend on a layer above it.

>>> def job():
...     yield Progress(stage="work", fraction=0.5, message="half way")
...     return 42
>>> run(job())
42
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypedDict, TypeVar

__all__ = ["Cancelled", "Progress", "in_background", "rescaled", "run"]

T = TypeVar("T")


class Progress(TypedDict, total=False):
    """One progress update of a job. Every job sets ``stage``, ``fraction`` and ``message``; the other fields
    belong to the jobs named beside them, and readers use ``.get`` for them."""

    stage: str  #: short name of what runs now ("inference", "train", "validate", "batch", …)
    fraction: float  #: 0…1 of the whole job
    message: str  #: one line for people
    # training (core.training.fit)
    step: int
    steps: int
    loss: float
    skipped: str
    seconds_per_step: float
    eta: float | None  #: seconds left (also batch), None when unknown
    lr: float
    losses: dict[str, float]  #: the loss's parts, when it has several
    val_score: float  #: stage "validate" (with the method's own details, e.g. ``val_dice``)
    checkpoint: str  #: path of a checkpoint just written
    checkpoint_step: int
    best: str  #: path of a new best model just written
    best_step: int
    # batch (core.batch.run_batch)
    row: dict[str, Any]  #: the finished case's results.csv row
    done: int
    failed: int
    total: int


class Cancelled(Exception):
    """The user cancelled a job; whatever it had committed (e.g. the last checkpoint) stays intact."""


def run(job: Generator[Progress, None, T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Drive a job to completion, passing every progress dict to ``on_progress``; return its result."""
    while True:
        try:
            update = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(update)


def rescaled(
    job: Generator[Progress, None, T], start: float, share: float, prefix: str = ""
) -> Generator[Progress, None, T]:
    """A job run as part of a larger one: its fractions mapped to ``[start, start + share]``, messages prefixed.

    Use as ``result = yield from rescaled(job, 0.0, 0.5)``.
    """
    while True:
        try:
            update = next(job)
        except StopIteration as stop:
            return stop.value
        fraction = start + share * float(update.get("fraction", 0.0))
        yield {**update, "fraction": fraction, "message": prefix + str(update.get("message", ""))}


def in_background(
    work: Callable[[], T],
    report: Callable[[], Progress],
    on_abort: Callable[[], None],
    name: str = "domaingen-work",
    interval: float = 0.25,
) -> Generator[Progress, None, T]:
    """Run the blocking ``work()`` in a helper thread and yield ``report()`` every ``interval`` s until it returns.

    Use as ``result = yield from in_background(...)``. If the job is abandoned (closed, cancelled, or ``work``
    raises), ``on_abort()`` is called so that ``work`` can stop early (e.g. a flag its hooks check), and the
    helper thread is joined before this returns or raises. The calling thread lets go of its OpenMP worker threads
    while it waits (:func:`~napari_domaingen.cpu_runtime.release_cpu_threads`).
    """
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    from .cpu_runtime import release_cpu_threads

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    future = pool.submit(work)
    release_cpu_threads()  # this thread only waits now: its OpenMP workers would slow the helper's (cpu_runtime)
    try:
        while True:
            try:
                return future.result(timeout=interval)
            except FutureTimeout:
                yield report()
    except BaseException:
        on_abort()
        raise
    finally:
        pool.shutdown(wait=True)
