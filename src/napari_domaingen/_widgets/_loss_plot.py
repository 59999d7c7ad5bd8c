"""A live training plot for dock widgets: loss per step and a validation score on a second axis.

Built to stay cheap on the GUI thread during long runs (see ``benchmarks/bench_maskgen_gui.py``): redraws are
throttled to one per :data:`REDRAW_INTERVAL_MS` and blit the lines over a saved background.
"""

from __future__ import annotations

import math
import time
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["DEFAULT_LOSS_TOP", "REDRAW_INTERVAL_MS", "LossPlot"]

REDRAW_INTERVAL_MS = 250  # at most ~4 plot redraws per second while training
DEFAULT_LOSS_TOP = 3.0  # Dice + CE of an untrained model with up to ~7 classes stays below this (about 1 + ln K)


class LossPlot(QWidget):
    """Training loss per step and a validation score (right axis), updated at most every ``interval_ms``.

    ``score_label`` names the score (e.g. "validation Dice"); ``score_range``: its fixed axis range (``None``: the
    axis follows the scores, and is hidden until the first one). ``loss_top``: the loss axis' top before any loss
    is known (``None``: set from the first loss, for losses far below an untrained segmentation model's).

    Cheap updates: the x axis spans the whole run (set before it starts, see :meth:`prepare`) and the loss axis
    starts above an untrained model's loss, so updates redraw just the two lines over a saved background
    (blitting, a few ms) and ask Qt to repaint the canvas with the rest of the window. The whole figure (30 ms on
    an idle CPU, over 100 ms on a busy one) is redrawn only when an axis changes: when the planned number of steps
    changes, or if the loss climbs above the axis. The canvas has a fixed height, so status lines growing around
    it do not resize (and fully redraw) it.
    """

    def __init__(
        self,
        interval_ms: int = REDRAW_INTERVAL_MS,
        loss_label: str = "loss (Dice + CE)",
        score_label: str = "validation Dice",
        score_range: tuple[float, float] | None = (0.0, 1.0),
        loss_top: float | None = DEFAULT_LOSS_TOP,
    ) -> None:
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_scores: list[float] = []
        self.score_range = score_range
        self.loss_top = loss_top
        self.total_steps = 1
        self.redraws = 0  # updates shown (blits and full draws)
        self.full_draws = 0
        self._background: Any = None
        self._limits: tuple[int, float] = (0, 0.0)
        figure = Figure(figsize=(4.0, 2.4))
        figure.subplots_adjust(left=0.16, right=0.84, bottom=0.2, top=0.95)  # fixed: no layout pass per draw
        self.figure = figure
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.setFixedHeight(180)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.ax = figure.add_subplot()
        self.ax.set_xlabel("step", fontsize=8)
        self.ax.set_ylabel(loss_label, fontsize=8, color="C0")
        self.ax.tick_params(labelsize=7)
        self.score_ax = self.ax.twinx()
        self.score_ax.set_ylim(*(score_range or (0.0, 1.0)))
        self.score_ax.set_visible(score_range is not None)
        self.score_ax.set_ylabel(score_label, fontsize=8, color="C1")
        self.score_ax.tick_params(labelsize=7)
        (self.loss_line,) = self.ax.plot([], [], color="C0", linewidth=1.0, animated=True)
        (self.score_line,) = self.score_ax.plot(
            [], [], color="C1", marker="o", markersize=3, linewidth=1.0, animated=True
        )
        self._set_limits(1, loss_top or 1.0)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self.redraw())
        self._last_redraw = -math.inf
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

    def prepare(self, total_steps: int) -> None:
        """Empty the plot for a run of ``total_steps``; the axes (and the costly full redraw) change only when they
        differ from the current ones."""
        self.reset({}, total_steps)

    def reset(self, history: dict[str, list] | None, total_steps: int) -> None:
        """Show ``history`` (a run's columns ``"step"``, ``"loss"`` and ``"val"``: ``[[step, score], ...]``, as in
        ``MODEL.history.csv``; empty for a new run) on axes for a run of ``total_steps``."""
        history = history or {}
        losses = [float(v) for v in list(history.get("loss", []))]
        steps = [int(s) for s in list(history.get("step", []))] or list(range(1, len(losses) + 1))
        count = min(len(steps), len(losses))  # the worker may be appending to the lists
        val = [(int(s), float(v)) for s, v in list(history.get("val", [])) if math.isfinite(float(v))]
        data = (steps[:count], losses[:count], [s for s, _ in val], [v for _, v in val])
        changed = data != (self.steps, self.losses, self.val_steps, self.val_scores)
        self.steps, self.losses, self.val_steps, self.val_scores = data
        self.total_steps = max(int(total_steps), self.steps[-1] if self.steps else 1, 1)
        finite = [v for v in self.losses if math.isfinite(v)]
        if self.loss_top is None:
            top = 1.25 * max(finite) if finite else 1.0
        else:
            top = max([self.loss_top, *finite])
        if (self.total_steps, top) != self._limits:
            self._set_limits(self.total_steps, top)
            changed = True
        self._fit_scores()
        if changed or self._background is None:
            self.schedule()

    def set_loss_top(self, top: float) -> None:
        """Set the loss axis to ``[0, top]`` for the current run, e.g. from the first loss of a run whose losses lie
        far below the default top (an axis that a loss later climbs above still grows)."""
        if (self.total_steps, float(top)) != self._limits:
            self._set_limits(self.total_steps, float(top))
            self.schedule()

    def add_loss(self, step: int, loss: float) -> None:
        if not self.steps and self.loss_top is None and math.isfinite(loss):
            self.set_loss_top(1.25 * float(loss))  # the axis still grows if the loss climbs above it
        if not self.steps or step > self.steps[-1]:
            self.steps.append(int(step))
            self.losses.append(float(loss))
            self.schedule()

    def add_score(self, step: int, score: float) -> None:
        if math.isfinite(score) and (not self.val_steps or step > self.val_steps[-1]):
            self.val_steps.append(int(step))
            self.val_scores.append(float(score))
            self._fit_scores()
            self.schedule()

    def _fit_scores(self) -> None:
        """A score axis without a fixed range: shown once there are scores, widened when one falls outside it."""
        if self.score_range is not None:
            return
        visible = bool(self.val_scores)
        low, high = self.score_ax.get_ylim()
        if visible and (min(self.val_scores) < low or max(self.val_scores) > high or not self.score_ax.get_visible()):
            pad = max(1.0, 0.1 * (max(self.val_scores) - min(self.val_scores)))
            self.score_ax.set_ylim(min(self.val_scores) - pad, max(self.val_scores) + pad)
            self._background = None
        if visible != self.score_ax.get_visible():
            self.score_ax.set_visible(visible)
            self._background = None

    def schedule(self) -> None:
        """Redraw now if the last redraw is one interval old (so it is painted with the status lines of the same
        update), else when the interval is over: updates arriving within one interval share a redraw."""
        if self._timer.isActive():
            return
        wait_ms = self.interval_ms - 1000 * (time.perf_counter() - self._last_redraw)
        if wait_ms <= 0:
            self.redraw()
        else:
            self._timer.start(int(wait_ms) + 1)

    def _set_limits(self, steps: int, top: float) -> None:
        self._limits = (steps, top)
        self.ax.set_xlim(0, steps * 1.02)
        self.ax.set_ylim(0.0, (top if math.isfinite(top) and top > 0 else 1.0) * 1.1)
        self._background = None

    def _on_draw(self, _event: Any = None) -> None:
        """After a full draw: keep the background without the lines, then draw the lines on it."""
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.ax.draw_artist(self.loss_line)
        self.score_ax.draw_artist(self.score_line)

    def redraw(self) -> None:
        """Put the data in the lines and show them: blit over the background, or a full draw when an axis grows."""
        self._timer.stop()
        self._last_redraw = time.perf_counter()
        self.loss_line.set_data(self.steps, self.losses)
        self.score_line.set_data(self.val_steps, self.val_scores)
        self.redraws += 1
        finite = [v for v in self.losses if math.isfinite(v)]
        if (self.steps and self.steps[-1] > self.total_steps) or (finite and max(finite) > self.ax.get_ylim()[1]):
            self.total_steps = max(self.total_steps, self.steps[-1] if self.steps else 1)
            self._set_limits(self.total_steps, max([self._limits[1], *finite]) * 1.2)
        if self._background is None:
            self.full_draws += 1
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self.ax.draw_artist(self.loss_line)
        self.score_ax.draw_artist(self.score_line)
        self.canvas.update()  # paints the Agg buffer at the next repaint, together with the rest of the window
