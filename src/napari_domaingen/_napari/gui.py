"""Open a napari viewer with the sample data and every dock widget the plugin contributes."""

from __future__ import annotations

from typing import Any

PLUGIN = "napari-domaingen"


def plugin_widget_names() -> list[str]:
    """Display names of the dock widgets in our npe2 manifest."""
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest(PLUGIN)
    return [w.display_name for w in (manifest.contributions.widgets or [])]


def open_demo_viewer(run: bool = True, show: bool = True) -> Any:
    """A viewer with the brain sample (radiological view: anterior up, patient's right on the left) and widgets."""
    import napari

    viewer = napari.Viewer(title="napari-domaingen demo", show=show)
    viewer.open_sample(PLUGIN, "brain_two_contrasts")
    for layer in viewer.layers[1:-1]:  # show the T1 and the labels; the other contrast is one click away
        layer.visible = False
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9 / older
    camera.orientation2d = ("up", "left")
    for name in plugin_widget_names():
        viewer.window.add_plugin_dock_widget(PLUGIN, name)
    if run:
        napari.run()
    return viewer
