"""The "Compare representations" dock widget in a real napari viewer (fixture weights, CPU)."""

from types import SimpleNamespace

import numpy as np
import pytest

from ..conftest import shared_file

PLUGIN = "napari-domaingen"


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_feature_caches):
    """No features or models left over from other tests."""


@pytest.fixture
def weights_file(anatomix_weights):
    return anatomix_weights


BRATS = ("data", "mri", "brats23-gli-00001-000")
CROP = (slice(56, 104), slice(70, 166), slice(72, 168))  # 48×96×96 through the brain and the tumour


def _widget(viewer, weights_file=None):
    from napari_domaingen._widgets.compare import CompareRepresentationsWidget

    widget = CompareRepresentationsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare representations")
    if weights_file is not None:
        widget._weights_file.value = weights_file
    return widget


def _wait_done(qtbot, widget, timeout=60000):
    qtbot.waitUntil(
        lambda: widget.worker is not None and not widget.worker.is_running and widget._run.enabled, timeout=timeout
    )


def _cropped(viewer, layer, name):
    """A crop as a new layer on the right world position: translate shifted by offset × scale."""
    offset = np.array([s.start for s in CROP], dtype=float)
    return viewer.add_image(
        np.asarray(layer.data)[CROP],
        name=name,
        scale=layer.scale,
        translate=np.asarray(layer.translate) + offset * np.asarray(layer.scale),
        affine=layer.affine.affine_matrix,
    )


def _blob(shape, centre, seed=0):
    """A smooth bright ellipsoid with texture on a zero background."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    radius = np.sqrt(sum(((g - c) / (0.35 * s)) ** 2 for g, c, s in zip(grid, centre, shape)))
    return np.where(radius < 1, 100 + 50 * np.cos(3 * radius) + rng.normal(0, 5, shape), 0).astype(np.float32)


@pytest.mark.slow
def test_brats_t1_vs_flair_end_to_end_and_pick_voxel(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer()
    folder = shared_file(*BRATS)
    full = [viewer.open(folder / f"BraTS-GLI-00001-000-{c}.nii.gz", plugin=PLUGIN)[0] for c in ("t1n", "t2f")]
    t1, flair = _cropped(viewer, full[0], "t1"), _cropped(viewer, full[1], "flair")
    for layer in full:
        viewer.layers.remove(layer)
    widget = _widget(viewer, weights_file)
    assert widget._a.value is t1 and widget._b.value is flair  # defaults: the first two distinct layers
    assert widget._channels[0].max == 63  # a weights file: channel count unknown until it has run

    widget._run.native.click()
    _wait_done(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert names == ["t1", "flair", "t1 features RGB", "flair features RGB", "cosine t1 ↔ flair"]
    rgb_a, rgb_b, cosine = viewer.layers[2:]
    for layer in (rgb_a, rgb_b, cosine):
        assert tuple(layer.scale) == tuple(t1.scale) and tuple(layer.translate) == tuple(t1.translate)
    assert rgb_a.rgb and rgb_a.data.shape == rgb_b.data.shape == (48, 96, 96, 3) and rgb_a.data.dtype == np.uint8
    assert cosine.data.shape == (48, 96, 96)
    assert -1 - 1e-5 <= np.nanmin(cosine.data) and np.nanmax(cosine.data) <= 1 + 1e-5
    assert np.isnan(cosine.data[~widget.comparison.mask]).all()  # blank outside the common foreground
    assert tuple(cosine.contrast_limits) == (-1.0, 1.0)
    assert cosine.colorbar.visible
    assert viewer.canvas.grid.enabled
    assert "CKA" in widget._summary.value and "intensity CKA" in widget._summary.value
    # the outputs are not offered as inputs
    assert [name for name, _ in widget._image_layers()] == ["t1", "flair"]

    # pick a voxel inside the brain: similarity of B's features to A's feature there
    mask = widget.comparison.mask
    voxel = (24, 48, 48) if mask[24, 48, 48] else tuple(int(v) for v in np.argwhere(mask)[len(np.argwhere(mask)) // 2])
    world = t1.data_to_world(voxel)
    widget._pick_mode.value = True
    press = SimpleNamespace(position=tuple(world), button=1, type="mouse_press")
    callback = widget._on_mouse(viewer, press)
    next(callback)
    press.type = "mouse_release"  # a click, not a drag
    with pytest.raises(StopIteration):
        next(callback)
    qtbot.waitUntil(
        lambda: widget.pick_worker is not None and not widget.pick_worker.is_running and widget.similarity is not None,
        timeout=20000,
    )
    qtbot.waitUntil(lambda: any(layer.name.startswith("similarity to t1[") for layer in viewer.layers), timeout=5000)
    similarity = viewer.layers[f"similarity to t1[{voxel[0]}, {voxel[1]}, {voxel[2]}]"]
    assert similarity.data.shape == (48, 96, 96) and tuple(similarity.scale) == tuple(t1.scale)
    # similarity_to_voxel(fa, v, fb)[v] is the cosine of A and B at v
    assert similarity.data[voxel] == pytest.approx(float(widget.comparison.cosine[voxel]), abs=1e-4)
    marker = viewer.layers["picked voxel"]
    assert np.allclose(marker.data, [voxel]) and tuple(marker.translate) == tuple(t1.translate)

    # another pick (public API, world coordinates) updates the same layer in place
    other = tuple(v + 2 for v in voxel)
    widget.pick(t1.data_to_world(other))
    qtbot.waitUntil(lambda: similarity.name == f"similarity to t1[{other[0]}, {other[1]}, {other[2]}]", timeout=20000)
    assert np.allclose(marker.data, [other])
    n_layers = len(viewer.layers)
    widget.pick((-500.0, -500.0, -500.0))
    assert "outside" in widget._status.value and len(viewer.layers) == n_layers


def test_grids_are_checked_and_resampling_puts_b_on_a_grid(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer()
    a = viewer.add_image(_blob((24, 32, 32), (12, 16, 16)), name="a", scale=(2.0, 1.0, 1.0))
    # B: the same object imaged on a larger grid, shifted by 3 voxels in x (world: 3 mm)
    b = viewer.add_image(
        _blob((24, 32, 40), (12, 16, 19), seed=1), name="b", scale=(2.0, 1.0, 1.0), translate=(0.0, 0.0, -3.0)
    )
    widget = _widget(viewer, weights_file)
    widget._run.native.click()
    assert "not on one voxel grid" in widget._status.value and "shapes differ" in widget._status.value
    assert widget.worker is None and len(viewer.layers) == 2 and widget._run.enabled

    b.data = _blob((24, 32, 32), (12, 16, 19), seed=1)  # same shape, other translate: the affine differs
    widget._run.native.click()
    assert "not on one voxel grid" in widget._status.value and "affines differ" in widget._status.value
    assert len(viewer.layers) == 2

    widget._resample.value = True
    widget._mode.value = "channels"
    widget._channels[0].value = 5
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert len(viewer.layers) == 5, widget._status.value
    assert "resampled" in widget._status.value
    for layer in viewer.layers[2:]:
        assert layer.data.shape[:3] == a.data.shape and tuple(layer.scale) == (2.0, 1.0, 1.0)
        assert tuple(layer.translate) == (0.0, 0.0, 0.0)
    assert widget.comparison.features_b.features.shape[1:] == a.data.shape

    # a second run updates the three layers in place
    before = list(viewer.layers)
    widget._mode.value = "pca"
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert list(viewer.layers) == before


def test_same_layer_and_constant_volume_are_refused_clearly(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer()
    a = viewer.add_image(_blob((16, 24, 24), (8, 12, 12)), name="a")
    viewer.add_image(np.zeros((16, 24, 24), np.float32), name="empty")
    widget = _widget(viewer, weights_file)
    widget._b.value = a
    widget._run.native.click()
    assert "pick two different layers" in widget._status.value and widget.worker is None

    widget._b.value = viewer.layers["empty"]
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert "constant" in widget._status.value and widget._status.value.startswith("error:")
    assert len(viewer.layers) == 2 and widget.comparison is None and widget._run.enabled
    widget.pick((1.0, 2.0, 3.0))
    assert "run a comparison first" in widget._status.value
    viewer.add_image(np.ones((4, 5, 6)), name="after")  # the viewer is still usable
    assert [layer.name for layer in viewer.layers] == ["a", "empty", "after"]


def test_widget_opens_from_the_plugin_menu(make_napari_viewer):
    from napari_domaingen._widgets.compare import CompareRepresentationsWidget, colorbar_canvas

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare representations")
    assert isinstance(widget, CompareRepresentationsWidget)
    assert widget._a.value is None
    widget._run.native.click()
    assert "add two 3D image layers" in widget._status.value
    first = viewer.add_image(np.zeros((4, 5, 6)), name="first")
    second = viewer.add_image(np.zeros((4, 5, 6)), name="second")
    assert widget._a.value is first and widget._b.value is second
    assert widget._channels[0].max == 15  # anatomix: 16 channels
    widget._weights.value = "anatomix-dev"
    assert widget._channels[0].max == 31
    # the fallback colour bar for napari versions without layer colour bars
    canvas = colorbar_canvas("PiYG", (-1.0, 1.0), "cosine")
    assert canvas.height() == 60


# ---- as a user meets it: the dock from the Plugins menu, files opened with File ▸ Open ---------------------------

TCGA = ("data", "mri", "tcga-du-7294")


def _plugin_widget(viewer, weights_file):
    from ._gui import plugin_widget

    widget = plugin_widget(viewer, "Compare representations")
    widget._weights_file.value = weights_file
    return widget


def _every_second_voxel(name, tmp_path):
    """A TCGA volume subsampled 2× in each axis (nibabel keeps the affine right), written as a NIfTI file."""
    import nibabel as nib

    image = nib.load(str(shared_file(*TCGA, name)))
    out = tmp_path / name
    nib.save(image.slicer[::2, ::2, ::2], str(out))
    return str(out)


@pytest.mark.slow
def test_skull_stripped_figures_are_computed_on_the_tissue(make_napari_viewer, qtbot, weights_file, tmp_path):
    """TCGA's skull-stripped T1 has a zero background and negative tissue voxels: the figures must be those of
    the brain, not of a volume that is 86 % background (2× subsampled to keep the test short)."""
    viewer = make_napari_viewer()
    (t1,) = viewer.open(_every_second_voxel("TCGA-DU-7294_t1_bet.nii.gz", tmp_path), plugin=PLUGIN)
    (flair,) = viewer.open(_every_second_voxel("TCGA-DU-7294_fla_bet.nii.gz", tmp_path), plugin=PLUGIN)
    assert t1.data.min() < 0
    widget = _plugin_widget(viewer, weights_file)
    widget._run.native.click()
    _wait_done(qtbot, widget, timeout=180000)
    summary = widget.comparison.summary
    a, b = np.asarray(t1.data, float), np.asarray(flair.data, float)
    tissue = (a != 0) & (b != 0)
    mask = widget.comparison.mask
    assert (mask & ~tissue).sum() < 0.002 * tissue.sum() and (tissue & ~mask).sum() == 0  # the brain (holes filled)
    assert summary.foreground_voxels == mask.sum()  # not every voxel but three
    pearson = np.corrcoef(a[tissue], b[tissue])[0, 1]
    assert summary.cka_intensity == pytest.approx(pearson**2, abs=0.01)  # a 100k-voxel sample of the tissue
    assert f"sampled from {summary.foreground_voxels:,} foreground voxels" in widget._summary.value
    rgb = viewer.layers["TCGA-DU-7294_t1_bet features RGB"].data
    assert not rgb[~mask].any() and rgb[mask].any()  # the background stays black


def test_nan_voxels_are_left_out_and_counted(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer()
    volume = _blob((24, 32, 32), (12, 16, 16))
    volume[2:12, 10:20, 10:20] = np.nan  # a 10³ block of NaN voxels
    viewer.add_image(volume, name="a")
    viewer.add_image(volume.copy(), name="b")
    widget = _plugin_widget(viewer, weights_file)
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert widget.comparison is not None, widget._status.value
    assert "Left out: 1,000 NaN/inf voxels of A and 1,000 NaN/inf voxels of B" in widget._summary.value
    assert not widget.comparison.mask[2:12, 10:20, 10:20].any()
    assert widget.comparison.summary.cka_features == pytest.approx(1.0)


@pytest.mark.slow
def test_pick_after_resampling_reports_bs_own_voxel_and_millimetres(make_napari_viewer, qtbot, weights_file):
    from ._gui import click, full_hd_window

    viewer = make_napari_viewer(show=True)
    full_hd_window(viewer, qtbot)
    a = viewer.add_image(_blob((30, 32, 32), (15, 16, 16)), name="a")
    # B: the same object on a coarser grid, 10 slices of 3 mm (like a thick-slice PD)
    b = viewer.add_image(
        _blob((10, 32, 32), (5, 16, 16), seed=2), name="b", scale=(3.0, 1.0, 1.0), translate=(1.0, 0.0, 0.0)
    )
    widget = _plugin_widget(viewer, weights_file)
    widget._resample.value = True
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert widget.comparison is not None, widget._status.value
    viewer.canvas.grid.enabled = False  # one view, to click in
    viewer.dims.set_point(0, a.data_to_world((15, 16, 16))[0])
    viewer.reset_view()
    widget._pick_mode.value = True
    click(qtbot, viewer, a.data_to_world((15, 16, 16)))  # a click on the canvas in pick mode
    qtbot.waitUntil(lambda: widget.similarity is not None, timeout=30000)
    assert "a[15, 16, 16]" in widget._status.value
    status = widget._status.value
    index = [int(v) for v in status.split("most similar point of b is voxel [")[1].split("]")[0].split(",")]
    assert 0 <= index[0] < 10, status  # an index of B's own 10-slice grid, not of A's 30
    best = np.unravel_index(int(np.nanargmax(widget.similarity * widget.comparison.mask)), widget.comparison.mask.shape)
    world = np.asarray(a.data_to_world(best))
    assert np.allclose(np.asarray(b.data_to_world(index)), world, atol=1.5)  # the nearest voxel of B
    assert f"(S {world[0]:.1f}, A {world[1]:.1f}, R {world[2]:.1f} mm)" in status
    assert "on its own 10×32×32 grid" in status


@pytest.mark.slow
def test_rerun_replaces_its_layers_and_clears_the_old_error(make_napari_viewer, qtbot, weights_file):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(_blob((16, 24, 24), (8, 12, 12)), name="a")
    viewer.add_image(np.zeros((16, 24, 24), np.float32), name="empty")
    b = viewer.add_image(_blob((16, 24, 24), (8, 12, 12), seed=3), name="b")
    widget = _plugin_widget(viewer, weights_file)
    widget._b.value = viewer.layers["empty"]
    widget._run.native.click()
    _wait_done(qtbot, widget)
    message = widget._status.value
    assert message.startswith("error:") and "constant" in message

    def error_popups():
        from qtpy.QtWidgets import QApplication

        return [
            w
            for w in QApplication.allWidgets()
            if type(w).__name__ == "NapariQtNotification" and w.isVisible() and w.message.text() == message
        ]

    qtbot.waitUntil(lambda: len(error_popups()) == 1, timeout=5000)
    widget._b.value = b
    widget._run.native.click()
    _wait_done(qtbot, widget)
    assert widget._status.value.startswith("done"), widget._status.value
    qtbot.waitUntil(lambda: not error_popups(), timeout=5000)  # the old error is gone with the success
    names = [layer.name for layer in viewer.layers]
    widget._run.native.click()  # the same comparison again: its three layers are replaced, not stacked
    _wait_done(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == names and not any("[1]" in name for name in names)


def test_register_b_onto_a_first_aligns_a_moved_scan_and_says_so(make_napari_viewer, qtbot, weights_file):
    """Issue 30.5: two scans not acquired aligned (B moved by 6 mm): with the box ticked the figures compare aligned
    anatomy, and the summary says which transform was used."""
    viewer = make_napari_viewer()
    volume = _blob((24, 32, 32), (12, 16, 16))
    viewer.add_image(volume, name="a", scale=(2.0, 2.0, 2.0))
    viewer.add_image(np.roll(volume, 3, axis=0), name="b", scale=(2.0, 2.0, 2.0), translate=(0.0, 0.0, 0.0))
    widget = _plugin_widget(viewer, weights_file)
    widget._run.native.click()
    _wait_done(qtbot, widget)
    plain = widget.comparison.summary.cka_intensity
    widget._register.value = True
    widget._run.native.click()
    _wait_done(qtbot, widget, timeout=120000)
    assert "B registered onto A first (rigid + affine, FireANTs" in widget._summary.value
    assert widget.comparison.summary.cka_intensity > plain + 0.2
    assert "registered onto A" in widget._status.value
