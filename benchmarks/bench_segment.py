"""Where the time of a whole-brain segmentation goes: window modes, precision, headless and through the dock.

Models: ERM and MaskGen with the ``cpu`` UNet preset (crop 64³, batch 2), trained ``--steps`` steps (learning rate
``--lr``) to segment grey and white matter on the MNI152 2009a T1 (the plugin's sample; labels: the template's
grey / white matter probability maps above one half), MaskGen on the anatomix reference fixture (the real
architecture with random weights, so its cost is the real model's). They are trained once and kept in ``--work``.
(A few hundred steps on the one TCGA tumour case left the models predicting almost no tumour — 95 and 158 voxels of
9281 and 14907 after 500 steps — so an agreement measured on them would compare two nearly empty label maps.)
Timed volume: the BraTS-GLI-00001 FLAIR, 240 × 240 × 155 at 1 mm, which no model saw.

Headless, in this process (models cached, the feature cache emptied before every run), the job the dock runs
(segmentation and per-class statistics, no probability maps):
* the default: the training-crop window (64³, overlap 0.5) in bf16 autocast, ``--rounds`` runs, median;
* the same in fp32, the default before issue 28, once (it is slow);
* ERM only: the whole-volume window in bf16, ``--rounds`` runs (MaskGen refuses it: its features are normalised
  per training crop).
Agreement (unless ``--no-agreement``): Dice per class of the default labels, and of ERM's whole-volume labels,
against the fp32 training-crop labels, and |Δ| of the class probabilities, on the training T1 and on a T1 no model
saw (the TCGA-DU-7294 patient: another site and scanner).

``--gui``: the default segmentation through the *MaskGen — segment* dock of a shown napari viewer (napari's
activity dock live, as shipped), timed from Run to the labels layer, ``--rounds`` runs, each right after the same job
headless in the same process (dock / headless is the ratio of the two medians: pairing the runs keeps this shared
machine's drift, which moved the same job by 20 % between minutes, out of the ratio), the viewer left to settle for
1 s after each run (the labels layer removed and the canvas redrawn, as a user's viewer is when they press Run); a
50 ms ``QTimer`` on the GUI thread measures the longest event-loop gap while the dock runs. Needs a display:
``xvfb-run -a``.

    xvfb-run -a python benchmarks/bench_segment.py [--steps 300] [--lr 1e-3] [--rounds 3] [--work DIR] [--gui]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, peak_rss_gb, reference_weights, require

TCGA = SHARED / "data" / "mri" / "tcga-du-7294"
FLAIR = SHARED / "data" / "mri" / "brats23-gli-00001-000" / "BraTS-GLI-00001-000-t2f.nii.gz"
MNI = SHARED / "data" / "mri" / "nilearn-mni152-2009a"
#: the volumes of the agreement: the training T1 and a T1 no model saw
AGREEMENT = {
    "MNI152 T1 (training volume)": MNI / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "TCGA-DU-7294 T1 (unseen)": TCGA / "TCGA-DU-7294_t1_bet.nii.gz",
}


def train_models(work: Path, steps: int, lr: float) -> dict[str, Path]:
    """ERM and MaskGen checkpoints in ``work`` (trained here unless they are there already)."""
    from napari_domaingen.core.maskgen_training import TrainSettings, train
    from napari_domaingen.core.segmentation_data import labelled_volume
    from napari_domaingen.io.nifti import read_nifti
    from napari_domaingen.progress import run

    work.mkdir(parents=True, exist_ok=True)
    weights = work / "anatomix.pth"
    if not weights.is_file():
        reference_weights(weights)
    models = {"ERM": work / f"erm-{steps}-{lr:g}.pt", "MaskGen": work / f"maskgen-{steps}-{lr:g}.pt"}
    image = read_nifti(require(MNI / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    grey = read_nifti(require(MNI / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")).data
    white = read_nifti(require(MNI / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")).data
    labels = np.where(np.maximum(grey, white) > 127, np.where(grey >= white, 1, 2), 0).astype(np.uint8)
    volume = labelled_volume(image.data, labels, "mni152", spacing=image.spacing)
    for method, path in models.items():
        if path.is_file():
            continue
        settings = TrainSettings(
            use_features=method == "MaskGen",
            weights=str(weights),
            preset="cpu",
            crop=64,
            steps=steps,
            lr=lr,
            batch_size=2,
            checkpoint_every=0,
            validate_every=0,
            device="cpu",
            class_names=("background", "grey matter", "white matter"),
        )
        start = time.perf_counter()
        run(train([volume], path, settings))
        print(f"trained {method} for {steps} steps in {time.perf_counter() - start:.0f} s: {path}", flush=True)
    return models


def segment_once(image: np.ndarray, model: Path, window: str, precision: str, probabilities: bool = False):
    """Seconds and result of one headless segmentation plus the per-class statistics, the same job the dock runs
    (``core.segment.segment_with_statistics``), with an empty feature cache."""
    from napari_domaingen.core.features import FEATURE_CACHE
    from napari_domaingen.core.segment import SegmentSettings, segment_with_statistics
    from napari_domaingen.progress import run

    FEATURE_CACHE.clear()
    settings = SegmentSettings(window=window, precision=precision, device="cpu", probabilities=probabilities)
    start = time.perf_counter()
    result, _rows = run(segment_with_statistics(image, model, settings, np.eye(4)))
    return time.perf_counter() - start, result


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def headless(image: np.ndarray, models: dict[str, Path], rounds: int) -> dict[str, dict]:
    """Seconds per setting: the default (training crop, bf16) ``rounds`` times, fp32 (the earlier default) once,
    the whole-volume window (ERM only) ``rounds`` times."""
    table: dict[str, dict] = {}
    for method, model in models.items():
        row: dict = {}
        segment_once(image, model, "crop", "bf16")  # warm-up: imports, model load, oneDNN kernels
        settings = [("crop", "bf16", rounds), ("crop", "fp32", 1)]
        settings += [("whole", "bf16", rounds)] if method == "ERM" else []
        for window, precision, runs in settings:
            times = []
            for _ in range(runs):
                seconds, result = segment_once(image, model, window, precision)
                times.append(seconds)
            row[f"{window} {precision}"] = statistics.median(times)
            row[f"{window} {precision} runs"] = times
            row[f"{window} plan"] = result.window
        table[method] = row
        print(method, row, flush=True)
    return table


def agreement(volumes: dict[str, np.ndarray], models: dict[str, Path]) -> list[dict]:
    """Per model and volume: Dice per class of the default labels (training crop, bf16) and, for ERM, of the
    whole-volume labels (bf16), against the fp32 training-crop labels (the MaskGen code's inference); voxels per
    class; |Δ| of the class probabilities (max and 99.9th percentile)."""
    rows = []
    for method, model in models.items():
        for name, image in volumes.items():
            _, reference = segment_once(image, model, "crop", "fp32", probabilities=True)
            classes = list(zip(reference.spec.label_values[1:], reference.spec.class_names[1:]))
            for window in ("crop", "whole") if method == "ERM" else ("crop",):
                _, other = segment_once(image, model, window, "bf16", probabilities=True)
                difference = np.abs(other.probabilities - reference.probabilities)
                row = {
                    "method": method,
                    "volume": name,
                    "compared": f"{window} bf16",
                    "dice": {label: dice(other.labels == v, reference.labels == v) for v, label in classes},
                    "voxels": {label: int((reference.labels == v).sum()) for v, label in classes},
                    "max |Δp|": float(difference.max()),
                    "p99.9 |Δp|": float(np.percentile(difference, 99.9)),
                }
                rows.append(row)
                print(row, flush=True)
    return rows


def through_the_dock(image: np.ndarray, spacing, models: dict[str, Path], rounds: int) -> dict[str, dict]:
    """Run → labels layer through the *MaskGen — segment* dock of a shown viewer, and the longest event-loop gap."""
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    layer = viewer.add_image(image, name="flair", scale=spacing)
    _, widget = viewer.window.add_plugin_dock_widget("napari-domaingen", "MaskGen — segment")
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    loop = QEventLoop()
    viewer.layers.events.inserted.connect(lambda _event: loop.quit())
    failed = QTimer()  # a failed run inserts no layer: leave the loop too
    failed.setInterval(200)
    failed.timeout.connect(lambda: loop.quit() if getattr(widget.runner.outcome, "error", None) is not None else None)
    failed.start()
    out: dict[str, dict] = {}
    for method, model in models.items():
        widget._model.value = model
        widget._device.value = "cpu"
        widget._image.value = layer
        times, gaps, alone = [], [], []
        for index in range(rounds + 1):  # the first run warms up
            from napari_domaingen.core.features import FEATURE_CACHE

            if index:  # the same job headless right before, in this process: the pair shares the machine's state
                alone.append(segment_once(image, model, "crop", "auto")[0])
            FEATURE_CACHE.clear()
            before = len(viewer.layers)
            ticks.clear()
            start = time.perf_counter()
            widget._run.native.click()
            loop.exec_()  # the real event loop, as napari runs it, until the labels layer is inserted
            if widget.runner.outcome is not None and widget.runner.outcome.error is not None:
                raise RuntimeError(f"{method} in the dock: {widget.runner.outcome.error}")
            seconds = time.perf_counter() - start
            while widget.runner.is_running or not widget._run.native.isEnabled():  # the run fully over
                QApplication.processEvents()
                time.sleep(0.01)
            gap = max(np.diff(ticks)) if len(ticks) > 1 else float("nan")
            while len(viewer.layers) > before:  # keep the viewer as it was
                viewer.layers.pop()
            settle = time.perf_counter() + 1.0  # let the canvas redraw without the layer now, not in the next run
            while time.perf_counter() < settle:
                QApplication.processEvents()
                time.sleep(0.02)
            if index:
                times.append(seconds)
                gaps.append(gap)
        out[method] = {
            "dock": statistics.median(times),
            "dock runs": times,
            "headless runs": alone,
            "ratio": statistics.median(times) / statistics.median(alone),
            "ratios": [d / h for d, h in zip(times, alone)],
            "longest gap s": max(gaps),
        }
        print(method, out[method], flush=True)
    timer.stop()
    viewer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the two models (default: 300)")
    parser.add_argument("--lr", type=float, default=1e-3, help="their learning rate (default: 1e-3)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting, median reported (default: 3)")
    parser.add_argument("--work", default="/tmp/bench_segment", help="where the trained models are kept")
    parser.add_argument("--gui", action="store_true", help="also through the dock in a shown viewer")
    parser.add_argument("--no-agreement", action="store_true", help="skip the agreement of the labels")
    args = parser.parse_args()

    import torch

    from napari_domaingen.io.nifti import read_nifti

    torch.set_num_threads(max(1, torch.get_num_threads()))
    models = train_models(Path(args.work), args.steps, args.lr)
    volume = read_nifti(require(FLAIR))
    image = volume.data.astype(np.float32)
    print(f"volume {image.shape} ({FLAIR.name}), {torch.get_num_threads()} torch threads", flush=True)
    table = headless(image, models, args.rounds)
    gui = through_the_dock(image, volume.spacing, models, args.rounds) if args.gui else {}
    nan = float("nan")
    print("\n| method | crop bf16 (default, s) | crop fp32 (before, s) | whole bf16 (s) | dock (s) | dock / headless |")
    print("|---|---|---|---|---|---|")
    for method, row in table.items():
        dock = gui.get(method, {})
        ratio = dock["ratio"] if dock else nan
        print(
            f"| {method} | {row['crop bf16']:.1f} | {row['crop fp32']:.1f} | {row.get('whole bf16', nan):.1f} | "
            f"{dock.get('dock', nan):.1f} | {ratio:.2f} |"
        )
    for method, dock in gui.items():
        print(f"{method} in the dock: longest event-loop gap {dock['longest gap s'] * 1000:.0f} ms")
    if not args.no_agreement:
        volumes = {name: read_nifti(require(file)).data.astype(np.float32) for name, file in AGREEMENT.items()}
        agree = agreement(volumes, models)
        print(
            "\n| model | volume | labels | Dice per class vs crop fp32 | voxels per class (crop fp32) "
            "| max / p99.9 |Δp| |"
        )
        print("|---|---|---|---|---|---|")
        for row in agree:
            dices = ", ".join(f"{name} {value:.4f}" for name, value in row["dice"].items())
            voxels = ", ".join(f"{name} {value}" for name, value in row["voxels"].items())
            print(
                f"| {row['method']} | {row['volume']} | {row['compared']} | {dices} | {voxels} | "
                f"{row['max |Δp|']:.3f} / {row['p99.9 |Δp|']:.4f} |"
            )
    print(f"peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
