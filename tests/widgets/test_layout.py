"""Dock widgets fit a 1920 × 1080 screen: they scroll instead of growing the window; nothing is squashed or cut
off and status texts wrap."""

from __future__ import annotations

import pytest

from ._gui import SCREEN, full_hd_window, plugin_widget

ALL = [
    "Load volumes",
    "Extract features",
    "Compare representations",
    "Feature RGB",
    "MaskGen — train",
    "MaskGen — segment",
    "Anatomy / style swap",
    "Batch",
]


def _problems(window, widgets) -> list[str]:
    """What does not fit: the window taller than the screen, a dock that does not scroll, squashed or cut
    controls, wrapped texts with lines cut off."""
    from qtpy.QtWidgets import QAbstractButton, QLabel, QScrollArea

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


@pytest.mark.parametrize(
    "names",
    [ALL, ["MaskGen — train", "MaskGen — segment"], ["Load volumes", "Compare representations"]],
    ids=["all eight", "train and segment", "load and compare"],
)
@pytest.mark.slow
def test_docks_fit_a_full_hd_screen(make_napari_viewer, qtbot, names):
    viewer = make_napari_viewer(show=True)
    window = full_hd_window(viewer, qtbot)
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
