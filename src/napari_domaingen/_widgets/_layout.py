"""Dock layout shared by the widgets: contents that scroll instead of making the napari window taller.

napari stacks dock widgets in one area and gives each at least its minimum height; a widget whose controls need
more than the screen then pushes the window past the screen's bottom edge (or squashes the other docks).
Every dock widget puts its controls in :func:`scroll_layout`: the dock may be as short as
:data:`MIN_DOCK_HEIGHT` and scrolls, while each control keeps its natural height.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QApplication, QComboBox, QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

#: the least height (px) a dock widget asks for; its contents scroll below that
MIN_DOCK_HEIGHT = 72
#: the least width (px) of a dock widget: room for its controls and napari's title "<name> (napari-domaingen)"
MIN_DOCK_WIDTH = 380
#: characters a drop-down list keeps room for (longer entries are elided in the closed list)
CHOICE_CHARACTERS = 16


class _Contents(QWidget):
    """The scrolled contents: never shorter than their size hint (the scroll area scrolls instead of squashing).

    Wrapped texts keep their own minimum height at what their lines need (:func:`show_all_lines`), so the contents
    need no height-for-width: Qt's height-for-width handling in scroll areas can cut the last lines.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def hasHeightForWidth(self) -> bool:
        return False

    def showEvent(self, event) -> None:
        narrow_choices(self)
        super().showEvent(event)


def narrow_choices(widget: QWidget) -> None:
    """Drop-down lists do not widen the dock to their longest entry (a layer named after a long file): they keep
    room for :data:`CHOICE_CHARACTERS` characters, elide the rest, and the open list shows whole entries."""
    for combo in widget.findChildren(QComboBox):
        if combo.sizeAdjustPolicy() != QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon:
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(CHOICE_CHARACTERS)
            QApplication.sendEvent(combo, QEvent(QEvent.Type.StyleChange))  # Qt caches the old minimum size hint
            combo.updateGeometry()


class _ScrollArea(QScrollArea):
    """Scrolls vertically only: as wide as its contents need (nothing cut at the side), as short as
    :data:`MIN_DOCK_HEIGHT`, and preferring the contents' full height when there is room."""

    def _inner_width(self) -> int:
        contents = self.widget()
        extra = self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return (contents.minimumSizeHint().width() if contents is not None else 0) + extra

    def minimumSizeHint(self) -> QSize:
        return QSize(max(super().minimumSizeHint().width(), self._inner_width()), MIN_DOCK_HEIGHT)

    def sizeHint(self) -> QSize:
        contents = self.widget()
        height = contents.sizeHint().height() + 2 * self.frameWidth() if contents is not None else MIN_DOCK_HEIGHT
        return QSize(max(super().sizeHint().width(), self._inner_width()), max(height, MIN_DOCK_HEIGHT))


def scroll_layout(widget: QWidget, margins: int = 0) -> QVBoxLayout:
    """Give ``widget`` a vertical scroll area and return the layout of its contents (add the controls there)."""
    widget.setMinimumWidth(max(widget.minimumWidth(), MIN_DOCK_WIDTH))
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _ScrollArea(widget)
    area.setObjectName("domaingen_scroll")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    contents = _Contents()
    layout = QVBoxLayout(contents)
    layout.setContentsMargins(margins, margins, margins, margins)
    area.setWidget(contents)
    outer.addWidget(area)
    return layout


def wrap_text(*labels: QLabel) -> None:
    """Status texts wrap at the dock's width instead of widening it (and are never cut to one line)."""
    for label in labels:
        label.setWordWrap(True)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)


class _LineFitter(QObject):
    """Keeps a wrapped label at least as tall as its text needs at its current width (on every resize)."""

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Resize and isinstance(watched, QLabel):
            _fit_lines(watched)
        return False


_FITTER = _LineFitter()


def _fit_lines(label: QLabel) -> None:
    """At least the room the widget reserved for the label, and at least what its text needs at its width."""
    reserved = int(label.property("domaingen_reserved") or 0)
    needed = max(reserved, label.heightForWidth(label.width()) if label.text() else 0)
    if label.minimumHeight() != needed:
        label.setMinimumHeight(needed)


def show_all_lines(label: QLabel) -> None:
    """Call after changing a wrapped label's text: the label is kept as tall as the text needs at its width, now
    and whenever the dock is resized (Qt does not pass a wrapped text's new height up through nested layouts by
    itself, so without this the last lines would be cut off)."""
    if not label.wordWrap():
        return
    if not label.property("domaingen_fits_lines"):
        label.setProperty("domaingen_fits_lines", True)
        label.setProperty("domaingen_reserved", label.minimumHeight())
        label.installEventFilter(_FITTER)
    _fit_lines(label)
