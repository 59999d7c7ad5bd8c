"""The "Feature RGB" dock widget in a real napari viewer (a hand-made feature layer; no network, no model)."""

import numpy as np
import pytest

from napari_domaingen.core.rgb import ChannelProjection, foreground_mask

PLUGIN = "napari-domaingen"
SHAPE = (12, 20, 24)


def _scene(viewer):
    rng = np.random.default_rng(0)
    image = np.zeros(SHAPE, np.float32)
    image[2:10, 3:17, 4:20] = rng.random((8, 14, 16)) + 1
    features = rng.normal(size=(16, *SHAPE)).astype(np.float32)
    features[:3] += image  # some channels follow the image
    source = viewer.add_image(image, name="vol", scale=(2.0, 1.0, 1.0), translate=(5.0, 0.0, 0.0))
    meta = {"domaingen": {"features": {"source_layer": "vol", "weights_name": "anatomix", "normalisation": "instance"}}}
    stack = viewer.add_image(
        features,
        name="vol features (anatomix, final)",
        visible=False,
        scale=(1.0, 2.0, 1.0, 1.0),
        translate=(0.0, 5.0, 0.0, 0.0),
        metadata=meta,
    )
    return source, stack


def _widget(viewer):
    from napari_domaingen._widgets.feature_rgb import FeatureRGBWidget

    widget = FeatureRGBWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Feature RGB")
    return widget


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(
        lambda: (
            not widget._timer.isActive()
            and widget.worker is not None
            and not widget.worker.is_running
            and not widget._dirty
        ),
        timeout=10000,
    )
    qtbot.wait(20)


@pytest.mark.slow
def test_live_rgb_updates_in_place_on_the_source_grid(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    source, stack = _scene(viewer)
    viewer.add_image(np.zeros((3, 4, 5)), name="other")
    widget = _widget(viewer)
    assert widget._features.value is stack
    assert widget._source.value is source  # the layer named in the features' metadata
    assert widget._channels[0].max == 15
    qtbot.waitUntil(lambda: widget.output is not None, timeout=10000)
    _wait_idle(qtbot, widget)

    rgb = widget.output
    assert rgb.name == "vol features (anatomix, final) RGB (pca)"
    assert rgb.rgb and rgb.data.shape == (*SHAPE, 3) and rgb.data.dtype == np.uint8
    assert tuple(rgb.scale) == (2.0, 1.0, 1.0) and tuple(rgb.translate) == (5.0, 0.0, 0.0)
    assert "features" not in rgb.metadata["domaingen"]  # not offered as a feature stack itself
    mask = foreground_mask(source.data)
    assert np.all(rgb.data[~mask] == 0) and rgb.data[mask].any()
    assert "foreground" in widget._status.value
    n_layers = len(viewer.layers)

    first = rgb.data.copy()
    widget._mode.value = "channels"
    _wait_idle(qtbot, widget)
    assert widget.output is rgb and len(viewer.layers) == n_layers
    assert rgb.name == "vol features (anatomix, final) RGB (channels 0, 1, 2)"
    assert not np.array_equal(rgb.data, first)

    # quick changes → one render with the last values (debounced)
    widget._channels[0].value = 7
    widget._channels[0].value = 5
    widget._channels[2].value = 9
    _wait_idle(qtbot, widget)
    assert widget.output is rgb and rgb.name.endswith("RGB (channels 5, 1, 9)")
    expected = ChannelProjection.fit(stack.data, (5, 1, 9), mask).apply(stack.data, mask)
    np.testing.assert_array_equal(rgb.data, expected)

    widget._source.value = None  # no mask: every voxel coloured
    _wait_idle(qtbot, widget)
    assert "every voxel" in widget._status.value and rgb.data[~mask].any()
    assert len(viewer.layers) == n_layers and tuple(rgb.scale) == (2.0, 1.0, 1.0)


def test_only_feature_stacks_are_offered_and_menu_entry(make_napari_viewer, qtbot):
    from napari_domaingen._widgets.feature_rgb import FeatureRGBWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 5, 6, 7)), name="plain 4D")  # no features metadata
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Feature RGB")
    assert isinstance(widget, FeatureRGBWidget)
    assert widget._features.value is None
    widget.render()
    assert "Extract features" in widget._status.value
    _source, stack = _scene(viewer)
    assert widget._features.value is stack  # picked up when added
    qtbot.waitUntil(lambda: widget.output is not None, timeout=10000)
    assert [name for name, _ in widget._feature_layers()] == ["vol features (anatomix, final)"]


def test_skull_stripped_background_stays_black(make_napari_viewer, qtbot):
    """A zero background with negative tissue values (skull-stripped MRI): only the tissue is coloured."""
    from ._gui import plugin_widget

    rng = np.random.default_rng(5)
    brain = np.zeros(SHAPE, bool)
    brain[2:10, 3:17, 4:20] = True
    image = np.where(brain, rng.normal(0.0, 40.0, SHAPE), 0.0).astype(np.float32)  # half the tissue below 0
    image[brain & (image == 0)] = 1.0
    features = rng.normal(size=(16, *SHAPE)).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="vol")
    meta = {"domaingen": {"features": {"source_layer": "vol", "weights_name": "anatomix"}}}
    viewer.add_image(features, name="vol features", visible=False, metadata=meta)
    widget = plugin_widget(viewer, "Feature RGB")
    qtbot.waitUntil(lambda: widget.output is not None, timeout=10000)
    _wait_idle(qtbot, widget)
    rgb = widget.output.data
    assert not rgb[~brain].any() and rgb[brain].any()
    assert "fitted on the foreground" in widget._status.value
