"""Run a core generator job from a dock widget: ``thread_worker``, napari progress bar, Run/Cancel, status line.

Every widget that starts long work uses one :class:`JobRunner`; the widget only builds the job (a generator of
progress dicts, see :mod:`napari_domaingen.progress`) and says what to do with its result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import Label, ProgressBar, PushButton

from ..cpu_runtime import release_cpu_threads
from ..progress import Cancelled, Progress
from ._layout import show_all_lines

JobFactory = Callable[[Callable[[], bool]], Generator[Progress, None, Any]]


@dataclass
class JobOutcome:
    """What a worker hands back: the job's return value, or why there is none."""

    value: Any = None
    error: Exception | None = None
    cancelled: bool = False


def _guarded(job: Generator[Progress, None, Any], cancel: Callable[[], bool]) -> Generator[Progress, None, JobOutcome]:
    """The job, with errors and cancellation *returned*: a ``RuntimeError`` raised inside a napari generator
    worker ends it without ``errored`` or ``finished``, which would leave the widget stuck."""
    try:
        value = yield from job
    except Cancelled:
        return JobOutcome(cancelled=True)
    except Exception as exc:  # shown to the user by the runner
        return JobOutcome(error=exc)
    if cancel():
        return JobOutcome(cancelled=True)
    return JobOutcome(value=value)


#: a job's updates reach the GUI thread at most this often (seconds); the ones in between travel with the next.
#: Each one repaints the dock, and with it the whole main window (napari's OpenGL canvas makes Qt compose the
#: window anew): about 25 ms of CPU where OpenGL is rendered in software, so fewer is faster
COALESCE_SECONDS = 0.5
#: the key of a forwarded update that lists every update since the previous one (itself last)
BATCH_KEY = "coalesced"


def coalesced(job: Generator[Progress, None, Any]) -> Generator[Progress, None, Any]:
    """``job`` with its progress coalesced: at most one update per :data:`COALESCE_SECONDS` reaches the GUI thread
    (the latest, listing all since the previous under :data:`BATCH_KEY`, so a loss plot misses no step), whatever
    the job yields; stage changes go at once. Returns the job's value."""
    pending: list[Progress] = []
    last, stage = 0.0, None
    while True:
        try:
            update = next(job)
        except StopIteration as stop:
            if pending:
                yield {**pending[-1], BATCH_KEY: pending}  # type: ignore[typeddict-unknown-key]
            return stop.value
        pending.append(update)
        now = time.monotonic()
        if now - last >= COALESCE_SECONDS or update.get("stage") != stage:
            yield {**update, BATCH_KEY: pending}  # type: ignore[typeddict-unknown-key]
            pending, last, stage = [], now, update.get("stage")


def show_fraction(bar: ProgressBar, update: Progress) -> None:
    """Move a progress bar to the ``fraction`` of a progress dict (clamped to [0, 1]; no fraction: unchanged)."""
    if "fraction" in update:
        bar.value = round(bar.max * min(1.0, max(0.0, float(update["fraction"]))))


#: messages of the error notifications the widgets raised (newest last), to close them after a later success
_ERRORS_SHOWN: list[str] = []
_MAX_REMEMBERED = 50


def pause_activity_indicators() -> list[Any]:
    """Hold napari's animated "in progress" indicator (a ``QMovie`` in the status bar) on its current frame, and
    return the movies held. Each of its ~33 frames a second repaints the whole main window, which where OpenGL is
    rendered in software (measured under Xvfb) took both CPU cores' worth of time from the job: a brain segmentation
    ran 2.6 × longer in the dock than headless. The activity dock's progress bars stay live."""
    from napari.resources import LOADING_GIF_PATH
    from qtpy.QtGui import QMovie
    from qtpy.QtWidgets import QApplication, QLabel

    held = []
    for window in QApplication.topLevelWidgets():
        for label in window.findChildren(QLabel):
            movie = label.movie()
            if movie is not None and movie.fileName() == LOADING_GIF_PATH:
                if movie.state() == QMovie.MovieState.Running:
                    movie.setPaused(True)
                    held.append(movie)
    return held


def resume_activity_indicators(movies: list[Any]) -> None:
    """Let the indicators :func:`pause_activity_indicators` held run again, where napari still shows them (it stops
    them itself when no progress is left)."""
    from qtpy.QtGui import QMovie

    for movie in movies:
        try:
            if movie.state() == QMovie.MovieState.Paused:
                movie.setPaused(False)
        except RuntimeError:  # the window is gone
            pass


def notify_error(message: str) -> None:
    """A napari error notification (the pop-up at the canvas corner) for ``message``."""
    from napari.utils.notifications import show_error

    _ERRORS_SHOWN.append(message)
    del _ERRORS_SHOWN[:-_MAX_REMEMBERED]
    show_error(message)


def clear_error_notifications() -> int:
    """Close the error pop-ups raised by :func:`notify_error` that are still on screen (a later run succeeded,
    so they no longer describe the state); returns how many were closed. Other plugins' pop-ups stay."""
    if not _ERRORS_SHOWN:
        return 0
    from qtpy.QtWidgets import QApplication

    shown = set(_ERRORS_SHOWN)
    closed = 0
    for widget in QApplication.allWidgets():
        if type(widget).__name__ != "NapariQtNotification" or not widget.isVisible():
            continue
        text = getattr(getattr(widget, "message", None), "text", lambda: None)()
        if text in shown:
            widget.close()
            closed += 1
    _ERRORS_SHOWN.clear()
    return closed


def show_problem(status: Label, message: str) -> None:
    """Put ``message`` in the status line and in a napari error notification."""
    set_status(status, message)
    notify_error(message)


def cancelled_training_message(step: int, steps: Any, kept_step: int | None, out: Any, hint: str) -> str:
    """The status line of a cancelled training run: which checkpoint survived (``hint``: what to do with it)."""
    if kept_step is not None:
        return f"cancelled after step {step}/{steps}; kept the checkpoint of step {kept_step}: {out} ({hint})"
    return f"cancelled after step {step}, before the first checkpoint: nothing was written"


def set_status(status: Label, text: str) -> None:
    """Show ``text`` in a status line (all of it: wrapped texts get the lines they need) and as its tooltip."""
    status.value = text
    status.tooltip = text
    show_all_lines(status.native)


def label_status(status: Label) -> Callable[[str], None]:
    """A status callback writing to a magicgui ``Label``."""
    return lambda text: set_status(status, text)


def button_busy(run_button: PushButton, cancel_button: PushButton) -> Callable[[bool], None]:
    """A busy callback for a Run/Cancel pair of magicgui buttons."""

    def busy(value: bool) -> None:
        run_button.enabled = not value
        cancel_button.enabled = value

    return busy


class JobRunner:
    """One job at a time for a widget: starts it in a ``thread_worker`` and turns its yields into progress.

    ``set_status(text)`` shows one line to the user; ``set_busy(flag)`` (en/dis)ables the widget's buttons;
    ``on_result(value)`` runs on the GUI thread when the job returns normally (``start`` can name another one);
    ``on_yield(update)``, if given, receives every progress dict of the running job on the GUI thread (e.g. for a
    loss plot), before the progress bar is updated. ``activity=False`` keeps the job out of napari's activity dock
    (no progress bar there, no animated "in progress" indicator in the status bar) for long jobs whose widget shows
    its own progress: that indicator repaints the main window ~33×/s, which where OpenGL is rendered in software
    (measured under Xvfb) kept the GUI thread busy (median event-loop latency 15 ms instead of 5) and made CPU
    training about half as fast (``benchmarks/bench_maskgen_gui.py --napari-activity``).
    Cancel (the widget's button calling :meth:`cancel`, or napari's activity dock) sets the job's cancel flag,
    quits the worker and closes the suspended job off the GUI thread.
    """

    def __init__(
        self,
        set_status: Callable[[str], None],
        set_busy: Callable[[bool], None],
        on_result: Callable[[Any], None] | None = None,
        on_yield: Callable[[Progress], None] | None = None,
        activity: bool = True,
    ) -> None:
        self.set_status = set_status
        self.set_busy = set_busy
        self.on_result = on_result
        self.on_yield = on_yield
        self.activity = activity
        self.worker: Any = None
        self.outcome: JobOutcome | None = None
        self.abandoned = ""  # why the running job's result is not wanted any more (its dock or an input closed)
        self._inputs: list[Any] = []
        self._cancel = threading.Event()
        self._pbar: Any = None
        self._paused: list[Any] = []
        self._job: Generator[Progress, None, JobOutcome] | None = None
        self._current_result: Callable[[Any], None] | None = None
        set_busy(False)

    @property
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def bind(self, owner: Any, viewer: Any) -> None:
        """Tie jobs to the dock ``owner`` (a QWidget) and the layers of ``viewer``: closing the dock, or removing a
        layer the running job reads (:meth:`start`'s ``inputs``), cancels the job and drops its result, so no
        layer appears for a dock or an image that is gone."""
        from qtpy.QtCore import QEvent, QObject

        runner = self

        class _Closed(QObject):
            def eventFilter(self, watched: Any, event: Any) -> bool:
                if event.type() == QEvent.Type.ParentChange and watched.parent() is None:
                    runner.abandon("its dock was closed")  # napari's close button takes the widget out of the window
                return False

        self._close_filter = _Closed(owner)
        owner.installEventFilter(self._close_filter)
        viewer.layers.events.removed.connect(self._on_layer_removed)

    def _on_layer_removed(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if self.is_running and any(layer is other for other in self._inputs):
            self.abandon(f"'{layer.name}' was closed")

    def abandon(self, reason: str) -> None:
        """Cancel the running job and drop whatever it returns (``reason`` goes into the status line)."""
        if not self.is_running:
            return
        self.abandoned = reason
        self.cancel()
        self.set_status(f"cancelled: {reason}")

    def start(
        self,
        make_job: JobFactory,
        description: str,
        on_result: Callable[[Any], None] | None = None,
        inputs: Sequence[Any] = (),
    ) -> None:
        """Build the job with this run's cancel flag and start it (a no-op while a job runs); ``inputs``: the layers
        it reads (see :meth:`bind`)."""
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        if self.is_running:
            return
        self._cancel.clear()
        self.outcome = None
        self.abandoned = ""
        self._inputs = list(inputs)
        self._current_result = on_result or self.on_result
        cancelled = self._cancel.is_set
        self._job = job = _guarded(make_job(cancelled), cancelled)
        self._pbar = progress(total=100, desc=description) if self.activity else None
        self._paused = pause_activity_indicators() if self.activity else []
        self.set_busy(True)
        self.set_status(f"{description} …")

        def drive() -> Generator[Progress, None, JobOutcome]:
            try:
                return (yield from coalesced(job))
            finally:  # an idle pool thread keeping OpenMP workers would slow the next job's thread (cpu_runtime)
                release_cpu_threads()

        self.worker = thread_worker(
            drive,
            connect={
                "yielded": self._on_yielded,
                "returned": self._on_returned,
                "errored": self._on_errored,
                "aborted": self._on_aborted,
                "finished": self._on_finished,
            },
            start_thread=False,
        )()
        release_cpu_threads()  # the GUI thread computes nothing while the job runs
        self.worker.start()

    def cancel(self, _value: Any = None) -> None:
        """Ask the running job to stop (core jobs stop at their next network module or window)."""
        self._cancel.set()
        if self.worker is not None:
            self.worker.quit()
        self.set_status("cancelling …")

    def fail(self, exc: Exception) -> None:
        """Show an error in the status line and as a napari notification."""
        message = f"error: {str(exc) or type(exc).__name__}"
        self.set_status(message)
        notify_error(message)

    def _on_yielded(self, update: Progress) -> None:
        if self.outcome is not None:  # a late progress signal after the result: nothing to say
            return
        percent = round(100 * float(update.get("fraction", 0.0)))
        message = str(update.get("message", ""))
        if not self._cancel.is_set():
            self.set_status(message)
        if self.on_yield is not None:
            for each in update.get(BATCH_KEY, [update]):  # type: ignore[attr-defined]
                self.on_yield(each)
        # last: updating napari's progress bar processes pending events, which may deliver the result (and close
        # the bar) right here, inside this call
        pbar = self._pbar
        if pbar is not None:
            pbar.set_description(message)
            if percent > pbar.n:
                pbar.update(percent - pbar.n)

    def _on_returned(self, outcome: JobOutcome) -> None:
        if self.abandoned:  # finished before the cancel reached it: the result is not wanted
            outcome = JobOutcome(cancelled=True)
        self.outcome = outcome
        if outcome.cancelled:
            self.set_status(self._cancelled_text())
        elif outcome.error is not None:
            self.fail(outcome.error)
        else:
            clear_error_notifications()  # earlier failures no longer describe the state
            if self._current_result is not None:
                self._current_result(outcome.value)

    def _on_errored(self, exc: Exception) -> None:  # only for failures outside the guarded job
        self.outcome = JobOutcome(error=exc)
        self.fail(exc)

    def _on_aborted(self) -> None:
        # worker.quit() leaves the job suspended at a yield: stop its work and close it off the GUI thread, so its
        # inference thread ends now, not at garbage collection
        self._cancel.set()
        job, self._job = self._job, None
        if job is not None:
            threading.Thread(target=job.close, name="domaingen-job-close", daemon=True).start()
        self.outcome = JobOutcome(cancelled=True)
        self.set_status(self._cancelled_text())

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        resume_activity_indicators(self._paused)  # if other jobs' progress still shows them
        self._paused = []
        self._job = None
        self.set_busy(False)
        if self.outcome is None:  # cancelled before anything came back
            self.set_status(self._cancelled_text() if self._cancel.is_set() else "stopped")

    def _cancelled_text(self) -> str:
        return f"cancelled: {self.abandoned}" if self.abandoned else "cancelled"
