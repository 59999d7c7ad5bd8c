"""The "MaskGen — train" dock widget in a real napari viewer (a 40³ real crop, fixture weights, tiny UNet, CPU)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_domaingen.core.maskgen import read_model_file

from ..conftest import tcga_tumour_region

PLUGIN = "napari-domaingen"
SCALE = (1.0, 1.0, 1.0)
TRANSLATE = (10.0, -5.0, 3.0)
CLASS_NAMES = ["background", "necrosis", "oedema"]


@pytest.fixture(autouse=True)
def _fresh(fresh_feature_caches, monkeypatch):
    """No extractors or remembered checkpoints left over from other tests."""
    from napari_domaingen._widgets import maskgen_train

    monkeypatch.setattr(maskgen_train, "LAST_TRAINED", [])


@pytest.fixture(scope="module")
def tumour_crop():
    """(image, labels) 40³ around the TCGA tumour: labels 0 background, 1 and 2 tumour sub-regions."""
    image, labels, region = tcga_tumour_region(20)
    return image.data[region].astype(np.float32), labels.data[region].astype(np.uint8)


def _add_pair(viewer, tumour_crop, suffix=""):
    image, labels = tumour_crop
    src = viewer.add_image(image, name=f"t1{suffix}", scale=SCALE, translate=TRANSLATE)
    lab = viewer.add_labels(
        labels,
        name=f"tumour{suffix}",
        scale=SCALE,
        translate=TRANSLATE,
        features=pd.DataFrame({"index": [0, 1, 2], "name": CLASS_NAMES}),
    )
    return src, lab


def _widget(viewer, weights, out, steps=4, **values):
    from napari_domaingen._widgets.maskgen_train import MaskGenTrainWidget

    widget = MaskGenTrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="MaskGen — train")
    widget._weights_file.value = weights  # None: the registry model
    widget._preset.value = "cpu"
    widget._base.value, widget._levels.value = 4, 2  # a tiny UNet: seconds per run on a laptop CPU
    widget._crop.value = 32
    widget._steps.value = steps
    widget._batch.value = 1
    widget._lr.value = 3e-3
    widget._augment.value = False
    widget._device.value = "cpu"
    widget._checkpoint_every.value = 2
    widget._validate_every.value = 2
    widget._output.value = out
    for name, value in values.items():
        getattr(widget, name).value = value
    return widget


def _wait_done(qtbot, widget, timeout=60000):
    qtbot.waitUntil(
        lambda: widget.worker is not None and not widget.worker.is_running and widget._start.enabled, timeout=timeout
    )


@pytest.mark.slow
def test_training_plots_the_loss_and_writes_a_checkpoint(
    make_napari_viewer, qtbot, anatomix_weights, tmp_path, tumour_crop
):
    from napari_domaingen._widgets.maskgen_train import latest_checkpoint

    viewer = make_napari_viewer()
    src, lab = _add_pair(viewer, tumour_crop)
    out = tmp_path / "models" / "maskgen.pt"
    widget = _widget(viewer, anatomix_weights, out)
    widget._val_image.value, widget._val_labels.value = src, lab
    assert widget._image.value is src and widget._labels.value is lab
    widget._add_pair.native.click()
    assert widget._table.rowCount() == 1 and widget._table.item(0, 0).text() == "t1"
    widget._start.native.click()
    assert not widget._start.enabled and widget._cancel_button.enabled
    _wait_done(qtbot, widget)
    qtbot.wait(50)

    result = widget.last_result
    assert result is not None and result.steps_done == 4, widget._status.value
    assert widget.plot.steps == [1, 2, 3, 4] and len(widget.plot.losses) == 4
    assert list(widget.plot.loss_line.get_xdata()) == [1, 2, 3, 4]  # the plot shows every step
    assert widget.plot.val_steps == [2, 4] and all(0.0 <= d <= 1.0 for d in widget.plot.val_scores)
    assert widget.plot.redraws < 10  # throttled: not one redraw per update
    assert out.is_file() and widget.last_checkpoint == out and latest_checkpoint() == out
    stored = read_model_file(out)
    assert stored["training"]["step"] == 4
    assert stored["spec"]["class_names"] == CLASS_NAMES and stored["spec"]["label_values"] == [0, 1, 2]
    assert stored["spec"]["unet"]["base"] == 4 and stored["spec"]["mask_rate"] == pytest.approx(0.75)
    assert str(out) in widget._status.value and widget._status.value.startswith("done: 4 steps")
    assert f"checkpoint of step 4/4: {out}" in widget._checkpoint_line.value
    assert "one step takes" in widget._cost.value  # CPU: what a step costs
    assert [layer.name for layer in viewer.layers] == ["t1", "tumour"]  # training adds no layer


@pytest.mark.slow
def test_cancel_keeps_the_last_checkpoint_and_napari_usable(
    make_napari_viewer, qtbot, anatomix_weights, tmp_path, tumour_crop
):
    viewer = make_napari_viewer()
    _add_pair(viewer, tumour_crop)
    out = tmp_path / "m.pt"
    widget = _widget(viewer, anatomix_weights, out, steps=200, _validate_every=0)
    steps = []
    widget._start.native.click()  # an empty list: trains on the pair selected above
    widget.worker.yielded.connect(lambda update: steps.append(update.get("step", 0)))
    qtbot.waitUntil(lambda: max(steps, default=0) >= 3, timeout=60000)
    widget._cancel_button.native.click()
    _wait_done(qtbot, widget)
    qtbot.wait(50)

    kept = read_model_file(out)["training"]["step"]
    assert 2 <= kept < 200 and kept % 2 == 0
    status = widget._status.value
    assert status.startswith("cancelled after step") and f"kept the checkpoint of step {kept}: {out}" in status
    assert widget.last_result is None and widget.last_checkpoint == out
    assert widget._start.enabled and not widget._cancel_button.enabled
    viewer.add_image(np.zeros((4, 5, 6)), name="after")
    assert [layer.name for layer in viewer.layers][-1] == "after"


@pytest.mark.slow
def test_bad_input_says_why_and_starts_nothing(make_napari_viewer, qtbot, anatomix_weights, tmp_path, tumour_crop):
    viewer = make_napari_viewer()
    image, labels = tumour_crop
    src = viewer.add_image(image, name="t1")
    viewer.add_image(np.zeros((9, 10)), name="flat")  # 2D: not offered
    short = viewer.add_labels(labels[:-4], name="short")
    widget = _widget(viewer, anatomix_weights, tmp_path / "m.pt")
    assert [name for name, _ in widget._image_layers()] == ["t1"]

    widget._image.value, widget._labels.value = src, short
    widget._start.native.click()
    assert "differs from the image grid" in widget._status.value and widget.worker is None
    widget._add_pair.native.click()  # a bad pair is not listed either
    assert widget._table.rowCount() == 0 and "differs from the image grid" in widget._status.value

    moved = viewer.add_labels(labels, name="moved", translate=(0.0, 0.0, 7.0))
    widget._labels.value = moved
    widget._start.native.click()
    assert "affines differ" in widget._status.value and widget.worker is None

    empty = viewer.add_labels(np.zeros_like(labels), name="empty")
    widget._labels.value = empty
    widget._add_pair.native.click()  # checked at once when added to the list
    assert "labels are empty" in widget._status.value and widget._table.rowCount() == 0
    widget._start.native.click()  # checked voxel by voxel in the worker, before any training
    _wait_done(qtbot, widget)
    assert "labels are empty" in widget._status.value and widget.last_result is None

    good = viewer.add_labels(labels, name="good")
    widget._labels.value = good
    widget._val_image.value = src  # a validation image without its labels
    worker = widget.worker
    widget._start.native.click()
    assert "validation" in widget._status.value and widget.worker is worker  # nothing new started

    widget._val_image.value = None
    widget._resume.value = True
    assert not widget._init.enabled
    widget._start.native.click()
    assert "nothing to resume" in widget._status.value and widget.worker is worker
    assert not list(tmp_path.iterdir())  # no checkpoint written by any of these


@pytest.mark.slow
def test_pairs_list_follows_layers_and_reads_nifti_pairs(make_napari_viewer, tmp_path, tumour_crop):
    from napari_domaingen.io.nifti import write_nifti

    viewer = make_napari_viewer()
    src, lab = _add_pair(viewer, tumour_crop)
    _add_pair(viewer, tumour_crop, suffix=" 2")
    widget = _widget(viewer, None, tmp_path / "m.pt")
    widget._add_pair.native.click()
    widget._add_pair.native.click()  # the same pair twice: listed once
    assert widget._table.rowCount() == 1
    widget._image.value, widget._labels.value = viewer.layers["t1 2"], viewer.layers["tumour 2"]
    widget._add_pair.native.click()
    assert widget._table.rowCount() == 2

    image, labels = tumour_crop
    affine = np.diag([1.2, 1.2, 1.2, 1.0])
    write_nifti(tmp_path / "img.nii.gz", image, display_affine=affine)
    write_nifti(tmp_path / "seg.nii.gz", labels, display_affine=affine, is_label=True)
    write_nifti(tmp_path / "seg_moved.nii.gz", labels, display_affine=affine @ np.diag([1, 1, 2.0, 1]), is_label=True)
    widget._image_file.value, widget._labels_file.value = tmp_path / "img.nii.gz", tmp_path / "seg_moved.nii.gz"
    widget._add_files.native.click()
    assert widget._table.rowCount() == 2 and "affines differ" in widget._status.value
    widget._labels_file.value = tmp_path / "seg.nii.gz"
    widget._add_files.native.click()
    assert widget._table.rowCount() == 3 and widget._table.item(2, 1).text() == "seg.nii.gz"
    assert widget.pairs[2].build().spacing == pytest.approx((1.2, 1.2, 1.2))

    viewer.layers.remove("tumour 2")  # its pair goes with it
    assert [pair.names for pair in widget.pairs] == [("t1", "tumour"), ("img.nii.gz", "seg.nii.gz")]
    widget._table.selectRow(0)
    widget._remove_pair.native.click()
    assert [pair.names for pair in widget.pairs] == [("img.nii.gz", "seg.nii.gz")]


def test_parameters_reach_the_settings_and_cpu_advice(make_napari_viewer, tmp_path):
    from napari_domaingen._widgets.maskgen_train import class_names_for, layer_class_names
    from napari_domaingen.core.maskgen import MASK_RATE_HELP

    viewer = make_napari_viewer()
    widget = _widget(viewer, None, tmp_path / "m.pt")
    assert widget._mask_rate.value == pytest.approx(0.75) and widget._mask_rate.tooltip == MASK_RATE_HELP
    assert "0.5" in widget._mask_rate.tooltip
    widget._mask_rate.value = 0.5
    widget._patience.value = 3
    assert "without improvement" in widget._patience.tooltip
    settings = widget.settings(("background", "x"))
    assert settings.patience == 3 and settings.validate_every == 2
    assert settings.mask_rate == 0.5 and settings.use_features and settings.weights == "anatomix"
    assert settings.base == 4 and settings.levels == 2 and settings.crop == 32 and settings.steps == 4
    assert settings.lr == pytest.approx(3e-3) and settings.class_names == ("background", "x")
    widget._method.value = "erm"
    assert not widget._mask_rate.enabled and not widget._weights.enabled
    assert not widget.settings().use_features and widget.settings().mask_rate == 0.0
    widget._base.value = widget._levels.value = 0
    assert widget.settings().base is None and widget.settings().levels is None

    widget._preset.value = "paper"  # on this CPU-only machine: advice to take the cpu preset
    assert "'cpu' preset" in widget._cost.value
    widget._preset.value = "cpu"
    assert widget._cost.value == ""
    assert "36.9M" in widget._preset.native.itemData(1, 3)  # Qt.ToolTipRole

    labels = viewer.add_labels(np.zeros((4, 4, 4), np.uint8), features={"name": ["bg", "one", "two"]})
    assert layer_class_names(labels) == {0: "bg", 1: "one", 2: "two"}
    labels.features = pd.DataFrame({"index": [0, 4], "name": ["bg", "four"]})
    assert layer_class_names(labels) == {0: "bg", 4: "four"}
    assert class_names_for((0, 1, 4), layer_class_names(labels)) == ("bg", "class 1", "four")
    assert class_names_for((0, 1), {}) is None


def test_widget_opens_from_the_plugin_menu(make_napari_viewer):
    from napari_domaingen._widgets.maskgen_train import MaskGenTrainWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "MaskGen — train")
    assert isinstance(widget, MaskGenTrainWidget)
    assert widget._output.value == Path.home() / "napari-domaingen" / "maskgen.pt"
    viewer.add_image(np.zeros((8, 9, 10)), name="a")
    viewer.add_labels(np.zeros((8, 9, 10), np.uint8), name="a labels")
    assert widget._image.value.name == "a" and widget._labels.value.name == "a labels"  # refreshed on insert


@pytest.mark.slow
def test_pairs_survive_unrelated_layer_changes_and_float_labels_are_named(make_napari_viewer, tmp_path, tumour_crop):
    """Opened from the Plugins menu (napari's proxies): the training pairs are kept while other layers come and
    go; a labels file holding fractions (0 / 0.5) is refused for what it is, not as 'empty'."""
    import nibabel as nib

    from ._gui import plugin_widget

    viewer = make_napari_viewer()
    image, labels = _add_pair(viewer, tumour_crop)
    widget = plugin_widget(viewer, "MaskGen — train")
    widget._image.value, widget._labels.value = image, labels
    widget._add_pair.native.click()
    assert len(widget.pairs) == 1 and widget._table.rowCount() == 1
    widget._add_pair.native.click()  # the same pair again: recognised through the proxies
    assert len(widget.pairs) == 1 and "already in the list" in widget._status.value
    other = viewer.add_image(np.zeros((4, 5, 6)), name="unrelated")
    viewer.layers.remove(other)
    assert len(widget.pairs) == 1 and widget._table.rowCount() == 1
    viewer.layers.remove(labels)  # the pair's own layer gone: the pair goes too
    assert widget.pairs == [] and widget._table.rowCount() == 0

    image_path, labels_path = tmp_path / "t1.nii.gz", tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(tumour_crop[0], np.eye(4)), str(image_path))
    nib.save(nib.Nifti1Image((tumour_crop[1] > 0).astype(np.float32) * 0.5, np.eye(4)), str(labels_path))
    widget._image_file.value, widget._labels_file.value = image_path, labels_path
    widget._add_files.native.click()
    status = widget._status.value
    assert "mask.nii.gz" in status and "fractional values" in status and "e.g. 0.5" in status, status
    assert "empty" not in status and widget.pairs == []


@pytest.mark.slow
def test_best_model_history_on_resume_and_a_finished_resume(
    make_napari_viewer, qtbot, anatomix_weights, tmp_path, tumour_crop
):
    """A run with validation keeps MODEL.best.pt (said in the status, offered by the segment widget); resuming it
    for more steps shows the whole stored history; resuming a finished run writes nothing and says so."""
    from napari_domaingen._widgets.maskgen_segment import MaskGenSegmentWidget
    from napari_domaingen._widgets.maskgen_train import latest_models
    from napari_domaingen.core.training_log import read_history

    viewer = make_napari_viewer()
    src, lab = _add_pair(viewer, tumour_crop)
    out, best = tmp_path / "m.pt", tmp_path / "m.best.pt"
    widget = _widget(viewer, anatomix_weights, out, _patience=5)
    widget._val_image.value, widget._val_labels.value = src, lab
    widget._start.native.click()
    _wait_done(qtbot, widget)
    result, status = widget.last_result, widget._status.value
    assert result is not None and result.best == best and best.is_file(), status
    assert status.startswith("done: 4 steps") and "best model (validation Dice " in status and str(best) in status
    assert "m.history.csv" in status and "best model (step " in widget._checkpoint_line.value
    assert read_model_file(out)["training"]["settings"]["patience"] == 5  # the spin box reached the run
    assert latest_models() == {"last": out, "best": best}
    segmenter = MaskGenSegmentWidget(viewer)
    segmenter._use_best.native.click()
    assert segmenter._model.value == best and segmenter._model_info.value.startswith("MaskGen")
    segmenter._use_last.native.click()
    assert segmenter._model.value == out

    widget._steps.value = 1000
    widget._resume.value = True
    assert widget._steps.value == 4  # ticking 'resume' shows the stored run's own step count
    widget._steps.value = 6  # two more steps: the plot shows all six
    widget._start.native.click()
    _wait_done(qtbot, widget)
    assert widget.last_result.steps_done == 6, widget._status.value
    rows = read_history(tmp_path / "m.history.csv")
    assert widget.plot.steps == [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5, 6]
    assert widget.plot.val_steps == [int(r["step"]) for r in rows if math.isfinite(r["val_score"])] == [2, 4, 6]

    written = out.stat().st_mtime_ns
    widget._start.native.click()  # resumed with nothing left to do
    _wait_done(qtbot, widget)
    status = widget._status.value
    assert widget.last_result.checkpoint is None and "nothing written" in status and "saved" not in status, status
    assert out.stat().st_mtime_ns == written and widget.plot.steps == [1, 2, 3, 4, 5, 6]


def _fake_run(result, updates):
    def job(cancel):
        yield from updates
        return result

    return job


@pytest.mark.slow
def test_both_training_widgets_share_the_training_panel(make_napari_viewer, qtbot, tmp_path):
    """One panel class runs MaskGen training and the swap fine-tuning: labels given by each owner, the same
    handling of validation scores, best models and an early stop (a scripted job through the real runner)."""
    from napari_domaingen._widgets._training_panel import TrainingPanel
    from napari_domaingen._widgets.swap import SwapWidget
    from napari_domaingen.core.training import FitResult

    viewer = make_napari_viewer()
    train = _widget(viewer, None, tmp_path / "m.pt")
    swap = SwapWidget(viewer)
    assert isinstance(train.training, TrainingPanel) and isinstance(swap.finetune.training, TrainingPanel)
    assert train.plot is train.training.plot and swap.plot is swap.finetune.training.plot
    assert train.plot.score_ax.get_ylabel() == "validation Dice" and train.plot.score_ax.get_visible()
    assert swap.plot.score_ax.get_ylabel() == "validation PSNR (dB)" and not swap.plot.score_ax.get_visible()

    out = tmp_path / "ft.pt"
    history = {
        "step": [1, 2, 3, 4],
        "loss": [0.06, 0.05, 0.05, 0.05],
        "lr": [1e-4] * 4,
        "seconds": [1, 2, 3, 4],
        "val": [[2, 21.5], [4, 21.0]],
    }
    stopped = "no better validation score in 1 validations; best 21.5 at step 2"
    result = FitResult(out, tmp_path / "ft.best.pt", tmp_path / "ft.history.csv", 4, 10, 4.0, history, stopped)
    updates = [
        {"stage": "train", "step": 0, "steps": 10, "fraction": 0.0, "history": {"loss": [], "val": []}},
        *(
            {"stage": "train", "step": s, "steps": 10, "loss": v, "fraction": s / 10}
            for s, v in zip(history["step"], history["loss"])
        ),
        {
            "stage": "validate",
            "step": 2,
            "steps": 10,
            "loss": 0.05,
            "val_score": 21.5,
            "best": str(result.best),
            "best_step": 2,
        },
        {
            "stage": "validate",
            "step": 4,
            "steps": 10,
            "loss": 0.05,
            "val_score": 21.0,
            "checkpoint": str(out),
            "checkpoint_step": 4,
        },
    ]
    panel = swap.finetune.training
    panel.run(_fake_run(result, updates), "scripted run", out, 10)
    qtbot.waitUntil(lambda: panel.result is not None, timeout=10000)
    assert swap.plot.val_scores == [21.5, 21.0] and swap.plot.score_ax.get_visible()  # PSNR: the axis follows
    low, high = swap.plot.score_ax.get_ylim()
    assert low < 21.0 and high > 21.5
    status = swap._ft_status.value
    assert status.startswith("stopped early at step 4/10: no better validation score") and str(out) in status
    assert "best model (validation PSNR (dB) 21.5 at step 2)" in status and "ft.history.csv" in status
    assert swap.last_training is result and swap._model.value == "finetuned"


@pytest.mark.slow
def test_skipped_steps_are_counted_with_their_reason(make_napari_viewer, qtbot, tmp_path):
    """Issue 27.6: an ERM run skipped 4 of 12 steps (crops of empty background) and the closing status did not say
    so, or why."""
    image = np.zeros((96, 96, 96), np.float32)
    labels = np.zeros((96, 96, 96), np.uint8)
    image[4:14, 4:14, 4:14], labels[6:12, 6:12, 6:12] = 1.0, 1  # the rest of the volume is empty
    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    src = viewer.add_image(image, name="t1")
    lab = viewer.add_labels(labels, name="lesion")
    widget = _widget(viewer, None, tmp_path / "erm.pt", steps=12, _method="erm", _validate_every=0)
    widget._image.value, widget._labels.value = src, lab
    widget._start.native.click()
    _wait_done(qtbot, widget)
    result = widget.last_result
    skipped = len(result.history.get("skipped", []))
    assert result.steps_done == 12 and 0 < skipped < 12, widget._status.value
    assert f"{skipped} of 12 steps skipped: the crops carry no signal (constant input) ({skipped})" in (
        widget._status.value
    )
