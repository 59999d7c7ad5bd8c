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
    """A viewer with the brain sample (radiological view unless chosen otherwise, see :mod:`.view`) and widgets."""
    import napari

    from .view import follow

    viewer = napari.Viewer(title="napari-domaingen demo", show=show)
    follow(viewer)
    viewer.open_sample(PLUGIN, "brain_two_contrasts")
    for layer in viewer.layers[1:-1]:  # show the T1 and the labels; the other contrast is one click away
        layer.visible = False
    for name in plugin_widget_names():
        viewer.window.add_plugin_dock_widget(PLUGIN, name)
    if run:
        napari.run()
    return viewer
