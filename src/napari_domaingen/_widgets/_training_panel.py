"""The training panel every dock widget that trains a model shares (*MaskGen — train*, the swap widget's
fine-tune panel): Start / Cancel, a progress bar, a status line, a checkpoint line and the loss / validation plot.

A thin sub-widget: the owner collects its own parameters, builds the job (a generator of progress dicts ending in
a :class:`~napari_domaingen.core.training.FitResult`: every model trains through the one loop,
:func:`napari_domaingen.core.training.fit`) and hands it to :meth:`TrainingPanel.run`. The panel runs it through
the widgets' one :class:`~._jobs.JobRunner` and turns the progress dicts into what the user sees:

* ``"train"`` dicts: the loss per step; the first one carries the run's ``"history"`` (a resumed run's steps so
  far and its validation scores, as in ``MODEL.history.csv``), which resets the plot;
* ``"validate"`` dicts: the validation score (``"val_score"``) on the plot's second axis; ``"best"``: the best
  model file (``MODEL.best.pt``) written at that step;
* ``"checkpoint"``: the checkpoint line (and what Cancel keeps);
* ``"done"`` with ``"nothing_to_do"``: a finished run resumed without more steps wrote nothing; the status says
  so (never "saved").

The result's status line names the model file, the best model (with its score) and an early stop
(``result.stopped``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..core.training import FitResult, format_seconds
from ..core.training_log import best_validation
from ..progress import Progress
from ._jobs import JobFactory, JobRunner, cancelled_training_message, set_status, show_fraction, show_problem
from ._layout import wrap_text
from ._loss_plot import DEFAULT_LOSS_TOP, LossPlot

__all__ = ["TrainingPanel", "result_summary"]

STATUS_LINES = 3  # room reserved per status line: texts changing every step do not re-layout the window


def result_summary(result: FitResult, score_label: str) -> str:
    """The status line of a finished run that wrote its model: steps, time, loss, where the model and the best
    model are, and why it stopped early if it did."""
    if result.stopped:
        text = f"stopped early at step {result.steps_done}/{result.steps}: {result.stopped}"
    else:
        text = f"done: {result.steps_done} steps in {format_seconds(result.seconds)}"
    text += f", final loss {result.final_loss:.4f}; model saved to {result.checkpoint}"
    if result.skipped_summary:
        text += f" ({result.skipped_summary})"
    best = best_validation(result.history)
    if result.best is not None:
        scored = f" ({score_label} {best[1]:.4g} at step {best[0]})" if best else ""
        text += f"; best model{scored}: {result.best}"
    if result.history_file is not None:
        text += f"; history: {Path(result.history_file).name}"
    return text


class TrainingPanel(QWidget):
    """Start / Cancel, progress bar, status and checkpoint lines and the loss / validation plot of a training run.

    ``on_start()``: the owner's Start (it calls :meth:`run`); ``keep_hint``: what to do with the checkpoint a
    cancelled run kept; ``on_result(result) -> str``: the owner's use of a run that wrote its model (returns a
    note appended to the status); ``on_progress(update)``: the owner's extra use of each progress dict;
    ``on_saved(model, best)``: called whenever the run wrote its model or a new best model; ``lines``: the owner's
    own status lines, shown below the panel's.
    """

    def __init__(
        self,
        on_start: Callable[[], None],
        keep_hint: str,
        start_text: str = "Start",
        loss_label: str = "loss (Dice + CE)",
        score_label: str = "validation Dice",
        score_range: tuple[float, float] | None = (0.0, 1.0),
        loss_top: float | None = DEFAULT_LOSS_TOP,
        on_result: Callable[[FitResult], str] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_saved: Callable[[Path, Path | None], None] | None = None,
        lines: tuple[Label, ...] = (),
    ) -> None:
        super().__init__()
        self.keep_hint, self.score_label = keep_hint, score_label
        self._on_result_hook, self._on_progress_hook, self._on_saved = on_result, on_progress, on_saved
        self.result: FitResult | None = None
        self.last_checkpoint: Path | None = None
        self.best_checkpoint: Path | None = None
        #: the running job: ``out``, ``step``, ``steps``, ``kept_step`` (last checkpoint), ``best_step``, ``done``
        self.info: dict[str, Any] = {}

        self.start_button = PushButton(text=start_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000)
        self.status = Label(value="")
        self.checkpoint_line = Label(value="")
        for label in (self.status, self.checkpoint_line, *lines):
            wrap_text(label.native)
            label.native.setMinimumHeight(STATUS_LINES * label.native.fontMetrics().lineSpacing())
        self.plot = LossPlot(loss_label=loss_label, score_label=score_label, score_range=score_range, loss_top=loss_top)
        self.controls = Container(
            widgets=[
                Container(widgets=[self.start_button, self.cancel_button], layout="horizontal", labels=False),
                self.progress,
                self.status,
                self.checkpoint_line,
                *lines,
            ],
            labels=False,
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.controls.native)
        layout.addWidget(self.plot)

        # the progress bar is the dock's own: napari's activity indicator would repaint the window ~33×/s for hours
        self.runner = JobRunner(
            self._show_status, self._set_busy, self._on_result, on_yield=self.on_progress, activity=False
        )
        self.start_button.changed.connect(lambda _value=None: on_start())
        self.cancel_button.changed.connect(self.cancel)

    # ------------------------------------------------------------------------------------------- owner's side

    @property
    def is_running(self) -> bool:
        return self.runner.is_running

    @property
    def worker(self) -> Any:
        """The worker of the last run (for tests and scripts)."""
        return self.runner.worker

    def follow_steps(self, steps: Any) -> None:
        """Let the plot's step axis follow the owner's ``steps`` box (set before Start: no redraw at the start)."""
        steps.changed.connect(lambda value: self.plot.prepare(int(value)))
        self.plot.prepare(int(steps.value))

    def set_status(self, text: str) -> None:
        set_status(self.status, text)

    def show_problem(self, message: str) -> None:
        """A problem found before starting: in the status line and as a napari notification."""
        show_problem(self.status, message)

    def run(self, make_job: JobFactory, description: str, out: Path, steps: int) -> None:
        """Start a training job writing ``out`` over ``steps`` steps (a no-op while one runs)."""
        if self.runner.is_running:
            return
        self.info.clear()  # in place: owners may hold the dict
        self.info.update(out=out, step=0, steps=int(steps), kept_step=None)
        self.result, self.best_checkpoint = None, None
        self.plot.prepare(int(steps))
        self.progress.value = 0
        set_status(self.checkpoint_line, "")
        self.runner.start(make_job, description)

    def cancel(self, _value: Any = None) -> None:
        """Stop training between steps; the last checkpoint written stays intact."""
        self.runner.cancel()

    # ------------------------------------------------------------------------------------------- the run

    def _set_busy(self, busy: bool) -> None:
        self.start_button.enabled = not busy
        self.cancel_button.enabled = busy

    def _show_status(self, text: str) -> None:
        info = self.info
        if text == "cancelled" and info:
            text = cancelled_training_message(
                info.get("step", 0), info.get("steps"), info.get("kept_step"), info.get("out"), self.keep_hint
            )
            best, step = self.best_checkpoint, info.get("best_step")
            if best is not None and info.get("kept_step") is None:
                text = (
                    f"cancelled after step {info.get('step', 0)}, before the first checkpoint; only the best "
                    f"model so far (step {step}) was written: {best}"
                )
            elif best is not None:
                text += f"; best model so far (step {step}): {best}"
        set_status(self.status, text)

    def on_progress(self, update: Progress) -> None:
        """A progress dict of the running job → progress bar, plot, checkpoint line (then the owner's hook)."""
        show_fraction(self.progress, update)
        info = self.info
        if "steps" in update:
            info["steps"] = int(update["steps"])
        if "history" in update:  # the run's history so far: empty for a new run, a resumed run's steps
            self.plot.reset(update["history"], info["steps"])
        if "loss" in update:
            info["step"] = int(update["step"])
            self.plot.add_loss(int(update["step"]), float(update["loss"]))
        if "val_score" in update:
            self.plot.add_score(int(update["step"]), float(update["val_score"]))
        if "best" in update:
            self.best_checkpoint = Path(update["best"])
            info["best_step"] = int(update.get("best_step", update.get("step", 0)))
        if "checkpoint" in update:
            self.last_checkpoint = Path(update["checkpoint"])
            info["kept_step"] = int(update.get("checkpoint_step", update.get("step", 0)))
        if "checkpoint" in update or "best" in update:
            self._show_files()
        if update.get("stage") == "done":
            info["done"] = str(update.get("message", ""))
        if self._on_progress_hook is not None:
            self._on_progress_hook(update)

    def _show_files(self) -> None:
        info = self.info
        parts = []
        if info.get("kept_step") is not None:
            parts.append(f"checkpoint of step {info['kept_step']}/{info.get('steps')}: {info.get('out')}")
            if self._on_saved is not None and self.last_checkpoint is not None:
                self._on_saved(self.last_checkpoint, self.best_checkpoint)
        if self.best_checkpoint is not None:
            parts.append(f"best model (step {info.get('best_step')}): {self.best_checkpoint}")
        set_status(self.checkpoint_line, "; ".join(parts))

    def _on_result(self, result: FitResult) -> None:
        self.result = result
        self.plot.redraw()
        if result.checkpoint is None:  # a finished run resumed without more steps: nothing was written
            self.plot.reset(result.history, result.steps)  # what the stored run did
            set_status(self.status, self.info.get("done") or "nothing to train: nothing was written")
            return
        self.last_checkpoint = Path(result.checkpoint)
        self.best_checkpoint = Path(result.best) if result.best is not None else None
        best = best_validation(result.history)
        if best is not None and result.best is not None:
            self.info["best_step"] = best[0]
        self.info["kept_step"] = result.steps_done
        self._show_files()
        note = self._on_result_hook(result) if self._on_result_hook is not None else ""
        set_status(self.status, result_summary(result, self.score_label) + note)
