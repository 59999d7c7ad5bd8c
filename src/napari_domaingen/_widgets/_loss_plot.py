"""A live training plot for dock widgets: loss per step and a validation score (0…1) on a second axis.

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
    """Training loss per step and validation Dice (right axis, 0…1), updated at most every ``interval_ms``.

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
    ) -> None:
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_dice: list[float] = []
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
        self.dice_ax = self.ax.twinx()
        self.dice_ax.set_ylim(0.0, 1.0)
        self.dice_ax.set_ylabel(score_label, fontsize=8, color="C1")
        self.dice_ax.tick_params(labelsize=7)
        (self.loss_line,) = self.ax.plot([], [], color="C0", linewidth=1.0, animated=True)
        (self.dice_line,) = self.dice_ax.plot([], [], color="C1", marker="o", markersize=3, linewidth=1.0,
                                              animated=True)
        self._set_limits(1, DEFAULT_LOSS_TOP)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self.redraw())
        self._last_redraw = -math.inf
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

    def prepare(self, total_steps: int, loss_top: float = DEFAULT_LOSS_TOP) -> None:
        """Empty the plot for a run of ``total_steps`` whose loss starts below ``loss_top``; the axes (and the
        costly full redraw) change only when these differ from the current ones."""
        self.reset({}, total_steps, loss_top)

    def reset(self, history: dict[str, list] | None, total_steps: int, loss_top: float = DEFAULT_LOSS_TOP) -> None:
        """Show ``history`` (``{"loss": [...], "val": [[step, dice], ...]}``, e.g. of a resumed run; empty for a new
        one) on axes for a run of ``total_steps``."""
        history = history or {}
        losses = [float(v) for v in history.get("loss", [])]
        self.steps, self.losses = list(range(1, len(losses) + 1)), losses
        val = [(int(s), float(d)) for s, d in history.get("val", []) if math.isfinite(float(d))]
        self.val_steps, self.val_dice = [s for s, _ in val], [d for _, d in val]
        self.total_steps = max(int(total_steps), len(losses), 1)
        top = max([DEFAULT_LOSS_TOP, loss_top, *(v for v in losses if math.isfinite(v))])
        if (self.total_steps, top) != self._limits:
            self._set_limits(self.total_steps, top)
        self.schedule()

    def set_loss_top(self, top: float) -> None:
        """Set the loss axis to ``[0, top]`` for the current run, e.g. from the first loss of a run whose losses lie
        far below the default top (an axis that a loss later climbs above still grows)."""
        if (self.total_steps, float(top)) != self._limits:
            self._set_limits(self.total_steps, float(top))
            self.schedule()

    def add_loss(self, step: int, loss: float) -> None:
        if not self.steps or step > self.steps[-1]:
            self.steps.append(int(step))
            self.losses.append(float(loss))
            self.schedule()

    def add_dice(self, step: int, dice: float) -> None:
        if math.isfinite(dice) and (not self.val_steps or step > self.val_steps[-1]):
            self.val_steps.append(int(step))
            self.val_dice.append(float(dice))
            self.schedule()

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
        self.dice_ax.draw_artist(self.dice_line)

    def redraw(self) -> None:
        """Put the data in the lines and show them: blit over the background, or a full draw when an axis grows."""
        self._timer.stop()
        self._last_redraw = time.perf_counter()
        self.loss_line.set_data(self.steps, self.losses)
        self.dice_line.set_data(self.val_steps, self.val_dice)
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
        self.dice_ax.draw_artist(self.dice_line)
        self.canvas.update()  # paints the Agg buffer at the next repaint, together with the rest of the window
