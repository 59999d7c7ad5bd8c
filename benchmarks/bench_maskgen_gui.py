"""GUI responsiveness while the "MaskGen — train" dock widget trains: the longest Qt event-loop stall.

A real napari viewer (shown; run under a virtual display) holds a 96³ crop of the TCGA-DU-7294 T1 around its
tumour and the tumour labels (also used as the validation pair). The widget trains MaskGen with the 'cpu' UNet
preset, crop 64³, batch 2, augmentation on, 10 steps, validation every 5, on the anatomix reference fixture
weights (saved as a state-dict ``.pth``, as the tests do). A ``QTimer`` fires every 5 ms on the GUI thread; the
gaps between its callbacks while training runs are the stalls a user would feel (target: longest ≤ 100 ms).

    xvfb-run -a python benchmarks/bench_maskgen_gui.py [--steps 10] [--crop 64] [--redraw-ms 250]
        [--napari-activity] [--no-warm-up]

Also printed: the stalls while the widget opens (it imports the training's libraries in the background then),
the time spent in plot draws and progress handlers on the GUI thread, and the worker's last reported stage at the
five longest gaps. ``--napari-activity`` shows the job in napari's activity dock (animated status-bar indicator)
instead of the dock's own progress bar; ``--no-warm-up`` leaves the imports to the training run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, reference_weights, require

CASE = SHARED / "data" / "mri" / "tcga-du-7294"
IMAGE = CASE / "TCGA-DU-7294_t1_bet.nii.gz"
LABELS = CASE / "tcga-du-7294_seg-fusion-simple.nii.gz"
TICK_MS = 5


def tumour_crop(size: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """(image, labels, spacing) of a ``size``³ crop centred on the tumour (shifted to stay inside the volume)."""
    from napari_domaingen.io.nifti import read_nifti

    image, labels = read_nifti(require(IMAGE)), read_nifti(require(LABELS), as_label=True)
    centre = [int(np.mean(axis)) for axis in np.nonzero(labels.data)]
    starts = [min(max(c - size // 2, 0), n - size) for c, n in zip(centre, labels.data.shape)]
    region = tuple(slice(s, s + size) for s in starts)
    return image.data[region].astype(np.float32), labels.data[region].astype(np.uint8), image.spacing


def fixture_weights(folder: Path) -> Path:
    """The reference fixture's state dict (random anatomix weights, real key layout) as a ``.pth``."""
    return reference_weights(folder / "anatomix.pth")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--size", type=int, default=96, help="edge of the image crop (voxels)")
    parser.add_argument("--redraw-ms", type=int, default=None, help="plot redraw throttle (default: the widget's)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--napari-activity", action="store_true", help="progress in napari's activity dock")
    parser.add_argument("--no-warm-up", action="store_true", help="no background imports when the widget opens")
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_domaingen._widgets import maskgen_train
    from napari_domaingen._widgets.maskgen_train import MaskGenTrainWidget

    image, labels, spacing = tumour_crop(args.size)
    tmp = Path(tempfile.mkdtemp(prefix="bench-maskgen-gui-"))
    weights = fixture_weights(tmp)

    viewer = napari.Viewer(show=True)
    src = viewer.add_image(image, name="t1", scale=spacing)
    lab = viewer.add_labels(labels, name="tumour", scale=spacing)
    for _ in range(20):  # let the window settle
        napari.qt.get_qapp().processEvents()
        time.sleep(0.01)
    if args.no_warm_up:
        done = threading.Thread(target=lambda: None)
        done.start()
        maskgen_train._warm_up.append(done)

    # ---- the probe: a 5 ms timer on the GUI thread
    ticks: list[tuple[float, str]] = []
    stage = ["widget opens"]
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append((time.perf_counter(), stage[0])))
    timer.start()
    built = time.perf_counter()
    widget = MaskGenTrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="MaskGen — train")
    built = time.perf_counter() - built
    warm_up = maskgen_train.warm_up_imports()
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(20)
    poll.timeout.connect(lambda: None if warm_up.is_alive() else loop.quit())
    poll.start()
    loop.exec()
    poll.stop()
    opening = np.diff([t for t, _ in ticks]) * 1000 if len(ticks) > 1 else np.array([0.0])
    ticks.clear()
    widget.runner.activity = args.napari_activity
    if args.redraw_ms is not None:
        widget.plot.interval_ms = args.redraw_ms
    widget._weights_file.value = weights
    widget._preset.value = "cpu"
    widget._crop.value = args.crop
    widget._steps.value = args.steps
    widget._batch.value = 2
    widget._device.value = "cpu"
    widget._augment.value = not args.no_augment
    widget._checkpoint_every.value = 5
    widget._validate_every.value = 5
    widget._val_image.value, widget._val_labels.value = src, lab
    widget._output.value = tmp / "maskgen.pt"
    settle = QEventLoop()  # as a user would: the plot's axes follow the steps box before Start is clicked
    QTimer.singleShot(1000, settle.quit)
    settle.exec()

    # ---- GUI-thread costs we control: plot redraws (the Agg draw runs at the next paint) and progress handlers
    gui_costs: dict[str, list[float]] = {"full plot draw": [], "plot update": [], "progress handler": []}
    canvas = widget.plot.canvas
    original_draw, original_redraw, original_progress = canvas.draw, widget.plot.redraw, widget._on_progress

    calls: list[tuple[float, float, str]] = []  # (start, end, what) of the GUI-thread work we do

    def timed_draw() -> None:
        start = time.perf_counter()
        original_draw()
        calls.append((start, time.perf_counter(), "full plot draw"))
        gui_costs["full plot draw"].append(calls[-1][1] - start)

    def timed_redraw() -> None:  # the lines over the saved background; Qt paints them with the next repaint
        start = time.perf_counter()
        original_redraw()
        calls.append((start, time.perf_counter(), "plot update"))
        gui_costs["plot update"].append(calls[-1][1] - start)

    def timed_progress(update: dict) -> None:
        start = time.perf_counter()
        original_progress(update)
        calls.append((start, time.perf_counter(), f"progress handler ({update.get('stage')})"))
        gui_costs["progress handler"].append(calls[-1][1] - start)
        stage[0] = f"{update.get('stage')} {update.get('step', '')}".strip()

    canvas.draw = timed_draw  # type: ignore[method-assign]
    widget.plot.redraw = timed_redraw  # type: ignore[method-assign]
    widget.runner.on_yield = timed_progress
    stage[0] = "prepare"

    loop = QEventLoop()
    start = time.perf_counter()
    widget._start.native.click()
    widget.worker.finished.connect(loop.quit)
    loop.exec()
    timer.stop()
    seconds = time.perf_counter() - start
    napari.qt.get_qapp().processEvents()

    result = widget.last_result
    if result is None:
        sys.exit(f"training did not finish: {widget._status.value}")
    times = [t for t, _ in ticks]
    gaps = np.diff(times) * 1000 if len(times) > 1 else np.array([])
    order = np.argsort(gaps)[::-1][:5]
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(
        f"MaskGen — train responsiveness: {args.steps} steps, crop {args.crop}³, batch 2, 'cpu' preset, "
        f"augment {'off' if args.no_augment else 'on'}, image {args.size}³, plot throttle "
        f"{widget.plot.interval_ms} ms, progress in {'napari activity dock' if args.napari_activity else 'dock'}"
        f", warm-up {'off' if args.no_warm_up else 'on'}; load average {' '.join(load)}"
    )
    print(
        f"widget opening: built and docked in {1000 * built:.0f} ms (GUI thread); then, while it imports in the "
        f"background: longest stall {opening.max():.1f} ms, gaps > 100 ms: {int((opening > 100).sum())}"
    )
    print(
        f"training wall time {seconds:.1f} s ({result.seconds / args.steps:.2f} s/step incl. preparation and "
        f"validation), final loss {result.final_loss:.3f}, plot updates {widget.plot.redraws} "
        f"({widget.plot.full_draws} full draws)"
    )
    print(f"timer ticks {len(ticks)} (every {TICK_MS} ms requested)")
    print(
        f"longest stall {gaps.max():.1f} ms | p99 {percentile(list(gaps), 99):.1f} ms | "
        f"p50 {percentile(list(gaps), 50):.1f} ms | gaps > 100 ms: {int((gaps > 100).sum())} | "
        f"> 50 ms: {int((gaps > 50).sum())}"
    )
    for name, values in gui_costs.items():
        if values:
            print(
                f"GUI-thread {name}: {len(values)} calls, max {1000 * max(values):.1f} ms, "
                f"mean {1000 * float(np.mean(values)):.1f} ms"
            )
    print("five longest gaps (ms, worker's last reported stage; our GUI-thread work inside the gap, ms):")
    for i in order:
        begin, end = ticks[i][0], ticks[i + 1][0]
        inside = [f"{what} {1000 * (b - a):.0f}" for a, b, what in calls if a < end and b > begin]
        print(f"  {gaps[i]:.0f} ms ({ticks[i + 1][1]}): {', '.join(inside) or 'none'}")
    status = "OK" if gaps.max() <= 100 else "ABOVE TARGET"
    print(f"target longest stall ≤ 100 ms: {status}")
    viewer.close()


if __name__ == "__main__":
    main()
