"""The "Extract features" dock widget in a real napari viewer (small volumes, fixture weights, CPU)."""

import threading

import numpy as np
import pytest

PLUGIN = "napari-domaingen"


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_feature_caches):
    """No features or models left over from other tests."""


@pytest.fixture
def weights_file(anatomix_weights):
    return anatomix_weights


SCALE = (2.0, 0.9, 0.8)
TRANSLATE = (10.0, -5.0, 3.0)


def _volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    volume = rng.normal(100.0, 20.0, size=shape).astype(np.float32)
    volume[:, :4] = 0.0  # some background, so the RGB preview has a foreground mask to fit on
    return volume


def _widget(viewer):
    from napari_domaingen._widgets.features import ExtractFeaturesWidget

    widget = ExtractFeaturesWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Extract features")
    return widget


def _wait_done(qtbot, widget, timeout=60000):
    qtbot.waitUntil(
        lambda: widget.worker is not None and not widget.worker.is_running and widget._run.enabled, timeout=timeout
    )


def test_run_adds_feature_stack_and_rgb_preview_on_source_grid(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer()
    src = viewer.add_image(_volume((24, 40, 36)), name="vol", scale=SCALE, translate=TRANSLATE)
    widget = _widget(viewer)
    assert widget._image.value is src
    assert widget._layer.value == "final"
    assert widget._layer.native.currentText() == "final output — as in the MaskGen code"
    widget._weights_file.value = weights_file
    widget._run.native.click()
    assert not widget._run.enabled  # disabled while running
    qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=60000)
    _wait_done(qtbot, widget)

    feats, rgb = viewer.layers[1], viewer.layers[2]
    assert feats.name == "vol features (anatomix, final)"
    assert feats.data.shape == (16, 24, 40, 36)
    assert feats.data.dtype == np.float32
    assert not feats.visible
    assert tuple(feats.scale) == (1.0, *SCALE)
    assert tuple(feats.translate) == (0.0, *TRANSLATE)
    meta = feats.metadata["domaingen"]["features"]
    assert meta["normalisation"] == "instance" and meta["settings"]["weights"] == str(weights_file)
    assert meta["strategy"] in ("whole", "sliding") and meta["precision"] in ("fp32", "bf16")
    # instance normalisation: every channel has mean ~0 over the volume
    assert np.abs(feats.data.reshape(16, -1).mean(axis=1)).max() < 1e-2

    assert rgb.name == "vol features (anatomix, final) RGB"
    assert rgb.rgb and rgb.data.shape == (24, 40, 36, 3) and rgb.data.dtype == np.uint8
    assert tuple(rgb.scale) == SCALE and tuple(rgb.translate) == TRANSLATE
    assert widget.last_result is not None and widget.last_result.features.shape == (16, 24, 40, 36)
    assert "16 feature channels" in widget._status.value
    # the new layers are not offered as inputs (4D stack, RGB)
    assert [name for name, _ in widget._image_layers()] == ["vol"]


def test_cancel_adds_no_layers_and_viewer_stays_usable(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer()
    viewer.add_image(_volume((96, 128, 128), seed=1), name="big")
    widget = _widget(viewer)
    widget._weights_file.value = weights_file
    widget._strategy.value = "sliding"
    widget._roi.value = 32
    widget._precision.value = "fp32"
    stages = []
    widget._run.native.click()
    widget.worker.yielded.connect(lambda update: stages.append(update["stage"]))
    qtbot.waitUntil(lambda: "inference" in stages, timeout=30000)
    widget._cancel_button.native.click()
    _wait_done(qtbot, widget, timeout=30000)
    qtbot.wait(50)

    assert len(viewer.layers) == 1
    assert widget._status.value == "cancelled"
    assert widget.last_result is None
    assert widget._run.enabled and not widget._cancel_button.enabled
    from napari_domaingen.core.features import FEATURE_CACHE

    assert len(FEATURE_CACHE) == 0  # nothing half-done was cached
    # the abandoned inference stops and its threads end (at most after an import it cannot interrupt)
    qtbot.waitUntil(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("domaingen-features")], timeout=30000
    )
    viewer.add_image(np.zeros((4, 5, 6)), name="after")
    assert [layer.name for layer in viewer.layers] == ["big", "after"]


def test_missing_registry_weights_explain_where_to_put_the_file(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("offline")

    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setenv("DOMAINGEN_WEIGHTS_DIR", str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)

    viewer = make_napari_viewer()
    viewer.add_image(_volume((16, 16, 16)), name="vol")
    widget = _widget(viewer)
    widget._weights.value = "anatomix"
    widget._run.native.click()
    _wait_done(qtbot, widget)

    status = widget._status.value
    assert "anatomix.pth" in status and str(empty / "anatomix.pth") in status
    assert len(viewer.layers) == 1
    assert widget._run.enabled


def test_widget_opens_from_the_plugin_menu(make_napari_viewer):
    from napari_domaingen._widgets.features import ExtractFeaturesWidget

    viewer = make_napari_viewer()
    viewer.add_image(_volume((8, 9, 10)), name="a")
    viewer.add_image(np.zeros((9, 10)), name="flat")  # 2D: not offered
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Extract features")
    assert isinstance(widget, ExtractFeaturesWidget)
    assert [name for name, _ in widget._image_layers()] == ["a"]
    viewer.add_image(_volume((8, 9, 10)), name="b")
    assert [layer.name for layer in widget._image.choices] == ["a", "b"]  # refreshed on insert
    viewer.layers.remove("a")
    assert [layer.name for layer in widget._image.choices] == ["b"]  # and on removal


def test_a_rerun_replaces_its_own_layers(make_napari_viewer, qtbot, weights_file):
    """From the Plugins menu (napari's proxies): running again on the same image and model updates the feature
    stack and the preview instead of stacking '… [1]' copies; another model gets layers of its own."""
    from ._gui import plugin_widget

    viewer = make_napari_viewer()
    viewer.add_image(_volume((16, 24, 24)), name="vol")
    widget = plugin_widget(viewer, "Extract features")
    widget._weights_file.value = weights_file
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert len(viewer.layers) == 3 and viewer.layers[1].name == "vol features (anatomix, final)"
    first = viewer.layers[1].unique_id
    viewer.layers[1].visible = True  # the user's choice is kept
    widget._layer.value = "penultimate"
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert len(viewer.layers) == 5  # another feature layer: new layers
    widget._layer.value = "final"
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert len(viewer.layers) == 5 and not any("[1]" in layer.name for layer in viewer.layers)
    assert viewer.layers[1].unique_id == first and viewer.layers[1].visible  # the same layer, updated


@pytest.mark.slow
@pytest.mark.parametrize("closed", ["source layer", "dock"])
def test_a_job_whose_source_layer_or_dock_is_closed_adds_nothing(make_napari_viewer, qtbot, weights_file, closed):
    """Issue 27.8: closing the image a job reads, or the dock that started it, left the job running and its layers
    appeared when it finished."""
    from ._gui import full_hd_window, plugin_widget

    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    image = viewer.add_image(_volume((96, 128, 128), seed=1), name="big")
    widget = plugin_widget(viewer, "Extract features")
    widget._weights_file.value = weights_file
    widget._strategy.value, widget._roi.value, widget._precision.value = "sliding", 32, "fp32"
    stages = []
    widget._run.native.click()
    widget.worker.yielded.connect(lambda update: stages.append(update["stage"]))
    qtbot.waitUntil(lambda: "inference" in stages, timeout=30000)
    if closed == "source layer":
        viewer.layers.remove(image)
    else:
        viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=30000)
    qtbot.wait(200)
    expected = [] if closed == "source layer" else ["big"]
    assert [layer.name for layer in viewer.layers] == expected  # no feature stack, no RGB preview
    assert widget.last_result is None
    reason = "'big' was closed" if closed == "source layer" else "its dock was closed"
    assert widget._status.value == f"cancelled: {reason}"
