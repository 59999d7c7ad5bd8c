"""The Register dock in a real napari viewer: run, outputs on the fixed grid, blend, save transform, cancel."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from ._gui import plugin_widget


def _phantom(shape=(36, 40, 36), seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = (z / 0.8) ** 2 + (y / 0.85) ** 2 + (x / 0.8) ** 2 < 1
    texture = gaussian_filter(rng.random(shape), 2.0)
    return np.where(inside, 0.3 + (texture - texture.min()) / np.ptp(texture), 0.0).astype(np.float32)


def _layers(viewer):
    fixed = _phantom()
    moving = np.where(fixed > 0, 1.6 - fixed, 0).astype(np.float32)
    moving = shift(moving, (2, -1.5, 1), order=1)
    labels = (shift(fixed, (2, -1.5, 1), order=0) > 0.9).astype(np.uint8)
    scale, translate = (2.0, 2.0, 2.0), (-36.0, -40.0, -36.0)
    viewer.add_image(fixed, name="fixed", scale=scale, translate=translate)
    viewer.add_image(moving, name="moving", scale=scale, translate=(-30.0, -40.0, -36.0))
    viewer.add_labels(labels, name="moving seg", scale=scale, translate=(-30.0, -40.0, -36.0))
    return fixed


def _wait(qtbot, widget, timeout=120000):
    qtbot.waitUntil(
        lambda: widget.runner.outcome is not None and not widget.worker.is_running and widget._run.enabled,
        timeout=timeout,
    )


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    fixed = _layers(viewer)
    widget = plugin_widget(viewer, "Register")
    widget._fixed.value = viewer.layers["fixed"]
    widget._moving.value = viewer.layers["moving"]
    widget._labels.value = viewer.layers["moving seg"]
    widget._features.value = "mindssc"
    return viewer, widget, fixed


def test_run_shows_outputs_on_the_fixed_grid_and_saves_the_transform(dock, qtbot, tmp_path, monkeypatch):
    from napari_domaingen.core import register as register_module

    viewer, widget, fixed = dock
    fast = register_module.RegisterSettings(
        features="mindssc", linear_iterations=(60, 30), deformable_iterations=(20, 10)
    )
    monkeypatch.setattr(widget, "settings", lambda: fast)
    widget.run()
    _wait(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    for name in ("moving on fixed", "moving seg on fixed", "moving displacement (mm)", "checkerboard fixed | moving"):
        assert name in names, (names, widget._status.value)
    moved = viewer.layers["moving on fixed"]
    assert moved.data.shape == fixed.shape and np.allclose(moved.scale, viewer.layers["fixed"].scale)
    assert np.allclose(moved.translate, viewer.layers["fixed"].translate)
    assert "folded voxels" in widget._summary.value and "mindssc" in widget._summary.value
    widget._blend.value = 0.2
    assert moved.opacity == pytest.approx(0.2)
    # the moved image lines up with the fixed one (it was shifted by 6 mm before)
    inside = fixed > 0.5
    before = np.corrcoef(fixed[inside], np.asarray(viewer.layers["moving"].data)[inside])[0, 1]
    after = np.corrcoef(fixed[inside], moved.data[inside])[0, 1]
    assert abs(after) > abs(before) + 0.2
    widget.save_transform(folder=tmp_path / "tx")
    _wait(qtbot, widget)
    assert sorted(p.name for p in (tmp_path / "tx").iterdir()) == [
        "affine.mat", "affine_inverse.mat", "warp.nii.gz", "warp_inverse.nii.gz"
    ]  # fmt: skip
    assert "saved affine.mat" in widget._status.value


def test_cancel_stops_the_registration_and_adds_nothing(dock, qtbot):
    viewer, widget, _ = dock
    count = len(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: "iteration" in widget._status.value, timeout=60000)
    widget.cancel()
    _wait(qtbot, widget)
    assert len(viewer.layers) == count and widget.result is None
    assert "cancel" in widget._status.value


def test_refusals_before_running(dock):
    viewer, widget, _ = dock
    widget._moving.value = viewer.layers["fixed"]
    widget.run()
    assert "same layer" in widget._status.value
    widget._moving.value = viewer.layers["moving"]
    for box in widget._stages.values():
        box.value = False
    widget.run()
    assert "stages must be some of" in widget._status.value
