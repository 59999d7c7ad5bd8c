"""The "Anatomy / style swap" dock widget in a real napari viewer (96 px crops of the IHC sample, a random tiny
model written in a tmp folder: nothing here needs the shipped model)."""

from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-domaingen"
ANATOMY_SCALE = (0.5, 0.5)
ANATOMY_TRANSLATE = (10.0, -4.0)
STYLE_SCALE = (0.25, 0.25)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random 'small' DGM-DR encoder (64 px tiles, 8 px patches) as a model file."""
    import torch

    from napari_domaingen.core.swap_model import save_swap_model
    from napari_domaingen.models.dgm import PRESETS, DGMEncoder

    torch.manual_seed(0)
    return save_swap_model(tmp_path_factory.mktemp("swap") / "tiny.pt", DGMEncoder(PRESETS["small"]))


@pytest.fixture(scope="module")
def crops() -> tuple[np.ndarray, np.ndarray]:
    """(IHC crop, H&E-like crop of another region), 96 × 96 × 3 uint8."""
    from napari_domaingen.io import samples

    ihc, he = samples.ihc().levels[0], samples.he_like_restain().levels[0]
    return np.ascontiguousarray(ihc[:96, :96]), np.ascontiguousarray(he[200:296, 240:336])


@pytest.fixture(autouse=True)
def _no_shipped_model(monkeypatch, tmp_path):
    """Behave as if the shipped model were not there (it may or may not be installed)."""
    from napari_domaingen._widgets import _swap_model_choice

    monkeypatch.setattr(_swap_model_choice, "default_model_path", lambda: tmp_path / "not-shipped.pt")


def _widget(viewer, model):
    from napari_domaingen._widgets.swap import SwapWidget

    widget = SwapWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Anatomy / style swap")
    widget._device.value = "cpu"
    widget._model_file.value = model  # selects "model file"
    return widget


def _add_pair(viewer, crops):
    anatomy = viewer.add_image(crops[0], name="ihc", rgb=True, scale=ANATOMY_SCALE, translate=ANATOMY_TRANSLATE)
    style = viewer.add_image(crops[1], name="he", rgb=True, scale=STYLE_SCALE)
    return anatomy, style


def _wait(qtbot, widget, before=None, timeout=30000):
    """Until a swap run started after ``before`` (the previous outcome) has come back, or a run failed."""
    qtbot.waitUntil(
        lambda: (
            widget.runner.outcome is not None
            and not widget.runner.is_running
            and (
                widget.runner.outcome.value is not None
                or widget.runner.outcome.error is not None
                or widget.runner.outcome.cancelled
            )
            and (widget.last_outcome is not before or widget.runner.outcome.error is not None)
        ),
        timeout=timeout,
    )
    qtbot.wait(20)


@pytest.mark.slow
def test_swap_makes_the_four_layers_and_the_point_rerenders(make_napari_viewer, qtbot, tiny_model, crops):
    viewer = make_napari_viewer()
    anatomy, style = _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    assert widget._anatomy.value is anatomy and widget._style.value is style  # style: the other image
    assert widget._model.value == "file" and "loaded at the first swap" in widget._model_info.value

    widget._swap_button.native.click()
    _wait(qtbot, widget)
    outcome = widget.last_outcome
    assert outcome is not None and outcome.encoded_now == 2, widget._status.value
    assert widget._status.value.startswith("swapped in") and "patch at (y 48, x 48) of 'he'" in widget._status.value
    assert "tiny.pt: ViT 64 px tiles" in widget._model_info.value
    names = ["ihc reconstruction", "he reconstruction", "he anatomy × ihc style", "ihc anatomy × he style"]
    for name in names:
        layer = viewer.layers[name]
        assert layer.rgb and layer.data.shape == (96, 96, 3) and layer.data.dtype == np.uint8
        source = style if name.startswith("he ") else anatomy
        assert tuple(layer.scale) == tuple(source.scale) and tuple(layer.translate) == tuple(source.translate)
        assert layer.metadata["domaingen"]["swap"]["anatomy_layer"] == "ihc"
    points = viewer.layers["style point"]
    assert len(points.data) == 1 and tuple(points.scale) == STYLE_SCALE  # on the style image's grid, centred
    assert [name for name, _ in widget._image_layers()] == ["ihc", "he"]  # outputs are not offered as inputs

    cross = viewer.layers["ihc anatomy × he style"]
    first = cross.data.copy()
    reconstruction = viewer.layers["ihc reconstruction"].data
    points.data = np.array([[8.0, 88.0]])  # moving the style point re-renders, from the cached encodings
    _wait(qtbot, widget, outcome)
    moved = widget.last_outcome
    assert moved.request.what == "cross" and moved.encoded_now == 0
    assert moved.request.point == pytest.approx((8.0, 88.0))
    assert viewer.layers["ihc anatomy × he style"] is cross and not np.array_equal(cross.data, first)
    assert viewer.layers["ihc reconstruction"].data is reconstruction  # untouched
    assert widget._status.value.startswith("re-rendered")

    second = cross.data.copy()
    points.add(np.array([[90.0, 4.0]]))  # a click in 'add' mode: the new point is the style point
    _wait(qtbot, widget, moved)
    assert len(points.data) == 1 and points.data[0] == pytest.approx([90.0, 4.0])  # the old point is gone
    assert widget.last_outcome.request.point == pytest.approx((90.0, 4.0))
    assert not np.array_equal(cross.data, second)
    assert len([layer for layer in viewer.layers if layer.name == "ihc anatomy × he style"]) == 1


@pytest.mark.slow
def test_mean_and_region_styles(make_napari_viewer, qtbot, tiny_model, crops, monkeypatch):
    from napari_domaingen._widgets import _jobs
    from napari_domaingen._widgets.swap import AUTO_RENDER_MS

    viewer = make_napari_viewer(show=True)
    from ._gui import full_hd_window

    full_hd_window(viewer, qtbot)  # a user's 1920 × 1080 window
    _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    widget._mode.value = "mean"
    widget._swap_button.native.click()
    _wait(qtbot, widget)
    assert "mean style of 'he'" in widget._status.value, widget._status.value
    mean_result = viewer.layers["ihc anatomy × he style"].data.copy()
    assert "style point" not in viewer.layers

    before = widget.last_outcome
    alarms = []
    monkeypatch.setattr(_jobs, "notify_error", alarms.append)
    widget._mode.value = "region"
    region = viewer.layers["style region"]
    assert region.data.shape == (96, 96) and tuple(region.scale) == STYLE_SCALE and region.mode == "paint"
    qtbot.wait(3 * AUTO_RENDER_MS)  # issue 27.6: choosing 'region' raised a red error before one could paint
    assert alarms == [] and widget._status.value.startswith("paint the region on 'he'")
    widget._swap_button.native.click()  # nothing painted yet: pressing Swap is a mistake worth a notification
    assert len(alarms) == 1
    assert "is empty: paint the region" in widget._status.value and widget.last_outcome is before
    region.data[:24, :24] = 1
    widget._swap_button.native.click()
    _wait(qtbot, widget, before)
    outcome = widget.last_outcome
    assert outcome.encoded_now == 0 and "inside the painted region (576 px)" in widget._status.value
    assert not np.array_equal(viewer.layers["ihc anatomy × he style"].data, mean_result)

    region.data[60:, 60:] = 2  # a paint stroke re-renders by itself once the images are encoded
    region.events.paint(value=[])
    _wait(qtbot, widget, outcome)
    assert widget.last_outcome.request.what == "cross" and "(1872 px)" in widget._status.value


@pytest.mark.slow
def test_variants_stack(make_napari_viewer, qtbot, tiny_model, crops):
    viewer = make_napari_viewer()
    _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    widget._count.value = 3
    widget._variants_button.native.click()
    _wait(qtbot, widget)
    layer = viewer.layers["ihc anatomy × he style variants"]
    assert layer.rgb and layer.data.shape == (3, 96, 96, 3) and layer.data.dtype == np.uint8
    assert tuple(layer.scale) == (1.0, *ANATOMY_SCALE) and tuple(layer.translate) == (0.0, *ANATOMY_TRANSLATE)
    assert not np.array_equal(layer.data[0], layer.data[1])
    assert len(layer.metadata["domaingen"]["swap"]["patch_centres"]) == 3
    assert widget._status.value.startswith("3 variants of 'ihc'")


@pytest.mark.slow
def test_grayscale_tiny_volume_and_missing_model(make_napari_viewer, qtbot, tiny_model, crops):
    viewer = make_napari_viewer()
    grey = viewer.add_image(crops[0].mean(axis=-1).astype(np.float32) / 255.0, name="grey")
    _, style = _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    widget._anatomy.value, widget._style.value = grey, style
    widget._mode.value = "mean"
    widget._swap_button.native.click()
    _wait(qtbot, widget)
    assert "grayscale: converted to RGB" in widget._status.value
    assert viewer.layers["grey anatomy × he style"].data.shape == (96, 96, 3)

    tiny = viewer.add_image(crops[0][:4, :4], name="tiny", rgb=True)
    widget._anatomy.value = tiny
    count = len(viewer.layers)
    widget._swap_button.native.click()
    _wait(qtbot, widget)
    assert "'tiny': 4 × 4 px is smaller than one 8 × 8 patch" in widget._status.value
    assert widget._status.value.startswith("error:") and len(viewer.layers) == count

    volume = viewer.add_image(np.zeros((5, 32, 32), np.float32), name="volume")
    widget._anatomy.value = volume
    worker = widget.worker
    widget._swap_button.native.click()
    assert "'volume' is a 3D image" in widget._status.value and widget.worker is worker

    widget._anatomy.value = grey
    widget._model.value = "default"  # not installed (see the fixture): said at once, nothing runs
    assert "not installed" in widget._model_info.value
    widget._swap_button.native.click()
    assert "not installed" in widget._status.value and widget.worker is worker


@pytest.mark.slow
def test_finetune_selects_the_new_model(make_napari_viewer, qtbot, tiny_model, crops, tmp_path):
    viewer = make_napari_viewer()
    _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    widget.show_finetune()
    out = tmp_path / "ft.pt"
    widget._ft_steps.value, widget._ft_batch.value, widget._ft_output.value = 3, 2, out
    widget._ft_start.native.click()
    assert not widget._ft_start.enabled and widget._ft_cancel.enabled
    qtbot.waitUntil(
        lambda: (
            widget.last_training is not None
            or (widget.train_runner.outcome is not None and not widget.train_runner.is_running)
        ),
        timeout=40000,
    )
    assert widget.last_training is not None, widget._ft_status.value
    assert out.is_file() and widget.finetuned_path == out
    assert widget._model.value == "finetuned" and widget.model_source() == str(out)
    assert widget._ft_status.value.startswith("done: 3 steps") and widget.plot.steps == [1, 2, 3]
    qtbot.waitUntil(lambda: widget._ft_start.enabled)

    widget._mode.value = "mean"
    widget._style.value = widget._anatomy.value  # one image to encode: a self-swap
    widget._swap_button.native.click()  # the swap now uses the fine-tuned model
    _wait(qtbot, widget)
    assert widget.last_outcome.model.name == "ft.pt" and "ihc anatomy × ihc style" in viewer.layers
    assert widget.last_outcome.model.card["fine_tuned_from"] == str(tiny_model)


@pytest.mark.slow
def test_cancel_finetune_leaves_napari_usable(make_napari_viewer, qtbot, tiny_model, crops, tmp_path):
    viewer = make_napari_viewer()
    _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    widget._ft_steps.value, widget._ft_batch.value, widget._ft_output.value = 200, 2, tmp_path / "ft.pt"
    widget._ft_start.native.click()
    qtbot.waitUntil(lambda: widget._train_info.get("step", 0) >= 1, timeout=40000)  # mid-run
    widget._ft_cancel.native.click()
    qtbot.waitUntil(lambda: widget._ft_start.enabled, timeout=30000)
    qtbot.wait(20)
    assert widget._ft_status.value.startswith("cancelled after step"), widget._ft_status.value
    assert widget.last_training is None and widget._model.value == "file"
    viewer.add_image(np.zeros((8, 8)), name="after")
    assert viewer.layers[-1].name == "after"


def test_widget_opens_from_the_plugin_menu(make_napari_viewer):
    from napari_domaingen._widgets.swap import DEFAULT_FINETUNE_OUTPUT, SwapWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Anatomy / style swap")
    assert isinstance(widget, SwapWidget)
    assert widget._model.value == "default" and widget._mode.value == "point" and widget._count.value == 8
    assert widget._ft_steps.value == 200 and widget._ft_batch.value == 8
    assert widget._ft_lr.value == pytest.approx(1e-4) and widget._ft_output.value == DEFAULT_FINETUNE_OUTPUT
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="a", rgb=True)
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="b", rgb=True)
    assert widget._anatomy.value.name == "a" and widget._style.value.name == "b"  # refreshed on insert


# ---- as a user meets it: the dock from the Plugins menu (napari's proxies), clicks on the canvas ------------------


def _plugin_swap(viewer, model):
    from ._gui import plugin_widget

    widget = plugin_widget(viewer, "Anatomy / style swap")
    widget._device.value = "cpu"
    widget._model_file.value = model
    return widget


def _style_world(style, yx):
    return np.asarray(style.data_to_world(np.asarray(yx, dtype=float)))


@pytest.mark.slow
def test_the_style_point_follows_clicks_and_drags(make_napari_viewer, qtbot, tiny_model, crops):
    from ._gui import click, drag, full_hd_window

    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    _anatomy, style = _add_pair(viewer, crops)
    widget = _plugin_swap(viewer, tiny_model)
    widget._swap_button.native.click()
    _wait(qtbot, widget)
    points = viewer.layers["style point"]
    # after Swap: on top of the four opaque outputs, active, ready to drag
    assert viewer.layers[-1].name == "style point" and viewer.layers.selection.active.name == "style point"
    assert points.mode == "select" and points.selected_data == {0} and len(points.data) == 1
    assert "click on 'he' or drag the style point" in widget._status.value

    viewer.reset_view()
    qtbot.wait(50)
    outcome = widget.last_outcome
    click(qtbot, viewer, _style_world(style, (20.0, 70.0)))  # a click off the point moves it there
    _wait(qtbot, widget, outcome)
    assert len(points.data) == 1 and np.allclose(points.data[0], (20.0, 70.0), atol=1.0)
    assert widget.last_outcome.request.point == pytest.approx(tuple(points.data[0]))

    viewer.add_image(np.zeros((8, 8)), name="unrelated")  # an unrelated layer: the point is not forgotten
    viewer.layers.selection.active = points
    outcome = widget.last_outcome
    drag(qtbot, viewer, _style_world(style, points.data[0]), _style_world(style, (60.0, 30.0)))
    _wait(qtbot, widget, outcome)
    assert len(points.data) == 1 and np.allclose(points.data[0], (60.0, 30.0), atol=1.5)

    points.mode = "add"  # in add mode a click puts the point there too: still one point
    outcome = widget.last_outcome
    click(qtbot, viewer, _style_world(style, (80.0, 80.0)))
    _wait(qtbot, widget, outcome)
    qtbot.waitUntil(lambda: len(points.data) == 1, timeout=2000)
    assert np.allclose(points.data[0], (80.0, 80.0), atol=1.0)
    assert len([layer for layer in viewer.layers if layer.name.startswith("style point")]) == 1


@pytest.mark.slow
def test_grid_mode_shows_the_point_on_the_style_image(make_napari_viewer, qtbot, tiny_model, crops):
    viewer = make_napari_viewer()
    anatomy, style = _add_pair(viewer, crops)
    widget = _plugin_swap(viewer, tiny_model)
    widget._swap_button.native.click()
    _wait(qtbot, widget)
    grid = viewer.canvas.grid
    grid.enabled = True
    layers = list(viewer.layers)
    index = {layer.name: i for i, layer in enumerate(layers)}
    point_cell = grid.position(index["style point"], layers)
    assert point_cell == grid.position(index["he"], layers)  # the point over the style image, not alone
    cells = {grid.position(i, layers) for i in range(len(layers))}
    assert len(cells) == 4  # style + point, A × S (over A's reconstruction), S × A (over S's), the anatomy
    assert grid.position(index["ihc"], layers) not in {
        point_cell,
        grid.position(index["ihc anatomy × he style"], layers),
    }
    grid.enabled = False  # the user's stride back, the point on top again
    assert grid.stride == 1 and viewer.layers[-1].name == "style point"


@pytest.mark.slow
def test_rendering_options_default_on_and_rerender_from_the_cache(make_napari_viewer, qtbot, tiny_model, crops):
    viewer = make_napari_viewer()
    _add_pair(viewer, crops)
    widget = _widget(viewer, tiny_model)
    assert widget._seamless.value and widget._detail.value and widget._tissue.value
    assert widget.options.glass.value and widget.options.colours.value
    assert not widget._overlap.enabled  # the overlap belongs to the single tiling
    assert widget.options.row.native.parent() is not None  # in the dock, side by side
    widget._mode.value = "mean"
    widget._swap_button.native.click()
    _wait(qtbot, widget)
    layer = viewer.layers["ihc anatomy × he style"]
    info = layer.metadata["domaingen"]["swap"]
    assert info["seamless"] and info["detail"] and "seamless tilings, detail carried over" in widget._status.value
    assert "mean style of 'he' (tissue)" in widget._status.value
    first, before = layer.data.copy(), widget.last_outcome

    widget._detail.value = False  # re-renders by itself from the cached encodings
    _wait(qtbot, widget, before)
    assert widget.last_outcome.encoded_now == 0 and not widget.last_outcome.request.detail
    assert not np.array_equal(layer.data, first) and "no detail carry-over" in widget._status.value
    assert not layer.metadata["domaingen"]["swap"]["detail"]

    before, detailless = widget.last_outcome, layer.data.copy()
    widget.options.colours.value = False  # the model's colours: re-rendered from the cache as well
    _wait(qtbot, widget, before)
    assert widget.last_outcome.encoded_now == 0 and not widget.last_outcome.request.colours
    assert "the model's colours" in widget._status.value and not layer.metadata["domaingen"]["swap"]["colours"]
    assert not np.array_equal(layer.data, detailless)

    before = widget.last_outcome
    widget._seamless.value = False  # another tiling: encoded again at the next Swap
    assert widget._overlap.enabled and "press Swap" in widget._status.value
    widget._swap_button.native.click()
    _wait(qtbot, widget, before)
    assert widget.last_outcome.encoded_now == 2 and "one tiling (overlap 0.25)" in widget._status.value
