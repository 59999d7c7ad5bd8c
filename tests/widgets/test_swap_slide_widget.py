"""The swap dock's whole-slide swap in a real viewer: a small pyramidal TIFF opened lazily, swapped block by block
into an OME-Zarr that opens as a multiscale layer; cancel leaves nothing (a random tiny model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-domaingen"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from napari_domaingen.core.swap_model import save_swap_model
    from napari_domaingen.models.dgm import PRESETS, DGMEncoder

    torch.manual_seed(0)
    return save_swap_model(tmp_path_factory.mktemp("slide") / "tiny.pt", DGMEncoder(PRESETS["small"]))


@pytest.fixture(autouse=True)
def _no_shipped_model(monkeypatch, tmp_path):
    from napari_domaingen._widgets import _swap_model_choice

    monkeypatch.setattr(_swap_model_choice, "default_model_path", lambda: tmp_path / "not-shipped.pt")


def _slide(tmp_path, shape=(1100, 1200)) -> Path:
    import tifffile

    from napari_domaingen.io import samples

    base = np.ascontiguousarray(np.tile(samples.ihc().data, (3, 3, 1))[: shape[0], : shape[1]])
    path = tmp_path / "slide.tif"
    options = {"photometric": "rgb", "tile": (256, 256), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, subifds=1, resolution=(4e4, 4e4), resolutionunit="CENTIMETER", **options)  # 0.25 µm
        tif.write(base[::2, ::2].copy(), subfiletype=1, **options)
    return path


def _dock(viewer, model, slide_layer, style_layer):
    from napari_domaingen._widgets.swap import SwapWidget

    widget = SwapWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Anatomy / style swap")
    widget._device.value = "cpu"
    widget._model_file.value = model
    widget._anatomy.value = slide_layer
    widget._style.value = style_layer
    widget._mode.value = "mean"
    return widget


def _finished(widget) -> bool:
    outcome = widget.runner.outcome
    return outcome is not None and not widget.runner.is_running


@pytest.mark.slow
def test_whole_slide_swap_opens_a_multiscale_layer(make_napari_viewer, qtbot, tiny_model, tmp_path):
    from napari_domaingen.io import samples

    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(_slide(tmp_path)), plugin=PLUGIN)
    style = viewer.add_image(samples.he_like_restain().data[:256, :256], name="he", rgb=True)
    widget = _dock(viewer, tiny_model, slide, style)
    panel = widget.slide
    assert not panel.native.isHidden()  # shown for the slide (the test window itself is not shown)
    assert Path(panel.output.value) == tmp_path / "slide-swapped.ome.zarr"
    panel.block = 512
    panel.start()
    qtbot.waitUntil(lambda: _finished(widget), timeout=120000)
    assert widget.runner.outcome.error is None, widget.runner.outcome.error
    layer = viewer.layers[-1]
    assert layer.name == "slide anatomy × he style (slide)"
    assert layer.multiscale and layer.rgb
    assert [tuple(level.shape) for level in layer.data] == [(1100, 1200, 3), (550, 600, 3)]
    assert tuple(layer.scale) == pytest.approx((0.25, 0.25))
    assert "wrote" in widget._status.value and "2 levels" in widget._status.value
    widget._anatomy.value = style  # a plain image: the whole-slide part hides
    assert panel.native.isHidden()


def test_whole_slide_swap_cancel_and_problems(make_napari_viewer, qtbot, tiny_model, tmp_path):
    from napari_domaingen.io import samples

    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(_slide(tmp_path, (700, 640))), plugin=PLUGIN)
    style = viewer.add_image(samples.he_like_restain().data[:128, :128], name="he", rgb=True)
    widget = _dock(viewer, tiny_model, slide, style)
    panel = widget.slide
    out = tmp_path / "cancelled.ome.zarr"
    panel.output.value = out
    panel.start()
    widget.cancel()
    qtbot.waitUntil(lambda: _finished(widget), timeout=60000)
    assert widget.runner.outcome.cancelled
    qtbot.waitUntil(lambda: not any(p.name.startswith(".cancelled") for p in tmp_path.iterdir()), timeout=30000)
    assert not out.exists()
    panel.output.value = tmp_path / "bad.png"
    panel.start()
    assert "must be a name ending in .ome.zarr" in widget._status.value
    widget._mode.value = "region"
    panel.output.value = out
    panel.start()
    assert "point or mean style" in widget._status.value
