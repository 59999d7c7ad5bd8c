"""Driving the GUI as a user does: plugin dock widgets (napari's proxies in play), clicks on the canvas."""

from __future__ import annotations

from typing import Any

import numpy as np

PLUGIN = "napari-domaingen"
SCREEN = (1920, 1080)


def plugin_widget(viewer: Any, name: str) -> Any:
    """The dock widget ``name`` opened from the Plugins menu (napari hands it a proxy of the viewer)."""
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def camera(viewer: Any) -> Any:
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def canvas_widget(viewer: Any) -> Any:
    """The Qt widget of the canvas (what the mouse clicks on)."""
    return viewer.window._qt_viewer.canvas.native


def canvas_position(viewer: Any, world: Any) -> tuple[int, int]:
    """Canvas pixel ``(x, y)`` of a world point in the 2D view, from the camera's public state (centre, zoom,
    orientation of the vertical and horizontal axes)."""
    world = np.asarray(world, dtype=float)
    displayed = list(viewer.dims.displayed)
    cam = camera(viewer)
    centre = np.asarray(cam.center, dtype=float)[-2:]
    offset = (world[displayed] - centre) * float(cam.zoom)
    vertical, horizontal = (str(getattr(axis, "value", axis)) for axis in cam.orientation2d)
    native = canvas_widget(viewer)
    y = native.height() / 2 + (offset[0] if vertical == "down" else -offset[0])
    x = native.width() / 2 + (offset[1] if horizontal == "right" else -offset[1])
    return int(round(x)), int(round(y))


def click(qtbot: Any, viewer: Any, world: Any) -> None:
    """A left click (press and release, no move) on the canvas at a world point."""
    from qtpy.QtCore import QPoint, Qt

    x, y = canvas_position(viewer, world)
    native = canvas_widget(viewer)
    qtbot.mousePress(native, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
    qtbot.mouseRelease(native, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
    qtbot.wait(20)


def drag(qtbot: Any, viewer: Any, start: Any, end: Any, steps: int = 8) -> None:
    """A left-button drag on the canvas from one world point to another."""
    from qtpy.QtCore import QPoint, Qt

    native = canvas_widget(viewer)
    x0, y0 = canvas_position(viewer, start)
    x1, y1 = canvas_position(viewer, end)
    qtbot.mousePress(native, Qt.MouseButton.LeftButton, pos=QPoint(x0, y0))
    for t in np.linspace(0, 1, steps)[1:]:
        qtbot.mouseMove(native, QPoint(int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0))))
        qtbot.wait(5)
    qtbot.mouseRelease(native, Qt.MouseButton.LeftButton, pos=QPoint(x1, y1))
    qtbot.wait(20)


def full_hd_window(viewer: Any, qtbot: Any) -> Any:
    """Show the viewer's window at 1920 × 1080 and return it (a Qt main window)."""
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    window.show()
    qtbot.waitExposed(window)
    qtbot.wait(100)
    return window
