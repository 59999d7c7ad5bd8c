"""Dock widgets fit a 1920 × 1080 screen: they scroll instead of growing the window; nothing is squashed or cut
off and status texts wrap."""

from __future__ import annotations

import numpy as np
import pytest

from ._gui import SCREEN, full_hd_window, plugin_widget

ALL = [
    "Load volumes",
    "PACS",
    "Extract features",
    "Compare representations",
    "Register",
    "Feature RGB",
    "MaskGen — train",
    "MaskGen — segment",
    "Anatomy / style swap",
    "Batch",
]


def _problems(window, widgets) -> list[str]:
    """What does not fit: the window taller than the screen, a dock that does not scroll, squashed or cut
    controls, wrapped texts with lines cut off."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QAbstractButton, QAbstractScrollArea, QLabel, QScrollArea, QWidget

    problems = []
    if window.frameGeometry().height() > SCREEN[1] or window.minimumSizeHint().height() > SCREEN[1]:
        problems.append(f"window {window.frameGeometry().height()} px tall, needs {window.minimumSizeHint().height()}")
    for widget in widgets:
        name = type(widget).__name__
        area = widget.findChild(QScrollArea, "domaingen_scroll")
        if area is None:
            problems.append(f"{name} does not scroll")
            continue
        contents = area.widget()
        needed = (
            contents.heightForWidth(contents.width()) if contents.hasHeightForWidth() else contents.sizeHint().height()
        )
        if contents.height() < needed:  # scrolls rather than squashing
            problems.append(f"{name}: contents {contents.height()} px tall, need {needed}")
        if contents.width() < contents.minimumSizeHint().width():  # nothing cut at the side
            problems.append(f"{name}: contents {contents.width()} px wide, need {contents.minimumSizeHint().width()}")
        viewport = area.viewport()
        for child in contents.findChildren(QWidget):
            if not child.isVisibleTo(contents) or isinstance(child.parentWidget(), QAbstractScrollArea):
                continue  # a table's own cells scroll inside it
            right = child.mapTo(viewport, QPoint(child.width(), 0)).x()
            if right > viewport.width() + 1:  # its right edge is past the dock's: cut off
                text = child.text() if isinstance(child, (QAbstractButton, QLabel)) else type(child).__name__
                problems.append(f"{name}: '{text[:30]}' ends at {right} px, the dock shows {viewport.width()}")
        for button in contents.findChildren(QAbstractButton):
            if button.isVisibleTo(contents) and button.height() < button.minimumSizeHint().height():
                problems.append(f"{name}: button '{button.text()}' squashed to {button.height()} px")
        for label in contents.findChildren(QLabel):
            if (
                label.isVisibleTo(contents)
                and label.wordWrap()
                and label.height() < label.heightForWidth(label.width())
            ):
                problems.append(f"{name}: lines of '{label.text()[:40]}' cut off")
    return problems


def _check_fits(qtbot, window, widgets):
    """Once the layouts have settled (Qt lays out in posted events), nothing is wrong."""
    try:
        qtbot.waitUntil(lambda: not _problems(window, widgets), timeout=3000)
    except Exception:
        pass
    assert _problems(window, widgets) == []


def _layers_with_long_names(viewer) -> None:
    """What a user has open: layers named after long file names (they fill every layer drop-down list)."""
    stem = "BraTS-GLI-00001-000-t1n_registered_to_MNI152NLin2009cAsym_res-1mm"
    viewer.add_image(np.zeros((6, 8, 10), np.float32), name=f"{stem} features (anatomix, final output) RGB")
    viewer.add_labels(np.zeros((6, 8, 10), np.uint8), name=f"{stem} MaskGen labels (edited by hand)")
    viewer.add_image(np.zeros((40, 40, 3), np.uint8), rgb=True, name=f"{stem} H&E-like restain (synthetic) slide")


@pytest.mark.parametrize(
    "names",
    [ALL, ["MaskGen — train", "MaskGen — segment"], ["Load volumes", "Compare representations"]]
    + [[name] for name in ALL],
    ids=["all nine", "train and segment", "load and compare"] + [f"{name} alone" for name in ALL],
)
@pytest.mark.slow
def test_docks_fit_a_full_hd_screen(make_napari_viewer, qtbot, names):
    """Issue 27.5: *Extract features* alone was cut at the right (its *Select file* button) once a layer with a long
    name filled its drop-down lists; the test measured heights only."""
    viewer = make_napari_viewer(show=True)
    window = full_hd_window(viewer, qtbot)
    _layers_with_long_names(viewer)
    widgets = [plugin_widget(viewer, name) for name in names]
    _check_fits(qtbot, window, widgets)


def test_long_status_text_wraps_in_a_narrow_dock(make_napari_viewer, qtbot):
    from napari_domaingen._widgets._jobs import set_status
    from napari_domaingen._widgets.compare import CompareRepresentationsWidget

    viewer = make_napari_viewer(show=True)
    window = full_hd_window(viewer, qtbot)
    widget = plugin_widget(viewer, "Compare representations")
    assert isinstance(widget, CompareRepresentationsWidget)
    text = "Feature CKA 0.57 vs intensity CKA 0.25 (3×3×3 patches 0.31): " + "the features are more alike " * 8
    set_status(widget._summary, text)  # how the widget shows a comparison's summary
    label = widget._summary.native
    _check_fits(qtbot, window, [widget])  # all lines shown
    assert label.wordWrap() and label.width() < label.fontMetrics().horizontalAdvance(text)  # several lines
    assert label.height() >= label.heightForWidth(label.width()) > 3 * label.fontMetrics().lineSpacing()
