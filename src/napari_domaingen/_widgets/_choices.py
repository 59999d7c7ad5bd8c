"""Controls and layer lists shared by the dock widgets.

Layers are compared by :func:`same_layer` (their ``unique_id``), never by ``is`` or ``id()``: napari hands plugin
widgets proxy objects, a new one on every access, so the same layer is not ``is``-identical to itself twice.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, FileEdit

from ..core.features import LAYER_DESCRIPTIONS
from ..models.weights import available_weights


def file_value(value: Any) -> Path | None:
    """A ``FileEdit`` value as a path (``~`` expanded), ``None`` when the field is empty."""
    if value is None or str(value).strip() in ("", "."):
        return None
    return Path(value).expanduser()


class ExtractorChoice:
    """Which frozen extractor to run: a registry name or a local ``.pth`` (the file wins), and which features."""

    def __init__(self) -> None:
        self.weights = ComboBox(label="model", choices=available_weights(), value="anatomix")
        self.weights_file = FileEdit(
            label="file…",
            mode="r",
            filter="*.pth *.pt",
            nullable=True,
            tooltip="a local anatomix checkpoint (.pth); when a file is given it is used instead of the model above",
        )
        self.layer = ComboBox(
            label="features", choices=[(text, key) for key, text in LAYER_DESCRIPTIONS.items()], value="final"
        )

    def choice(self) -> tuple[str, str]:
        """(what to load, short name for layer titles)."""
        path = file_value(self.weights_file.value)
        if path is not None:
            return str(path), path.stem
        return str(self.weights.value), str(self.weights.value)


def layer_key(layer: Any) -> Hashable:
    """A key that stays the same for one layer through napari's proxies (its ``unique_id``)."""
    return layer.unique_id


def same_layer(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same napari layer (either may be a proxy; ``None`` is no layer)."""
    return a is not None and b is not None and layer_key(a) == layer_key(b)


def default_other(combo: Any, other: Any, layers: list[tuple[str, Any]]) -> None:
    """Point ``combo`` at the first of ``layers`` that is not ``other`` (B not A, moving not fixed), unless it
    already holds another layer than ``other``."""
    if combo.value is not None and not same_layer(combo.value, other):
        return
    for _, layer in layers:
        if not same_layer(layer, other):
            combo.value = layer
            return


def find_layer(viewer: Any, key: Hashable) -> Any:
    """The viewer's layer with :func:`layer_key` ``key``, or ``None`` when it was removed."""
    return next((layer for layer in viewer.layers if layer_key(layer) == key), None)


def layer_named(viewer: Any, name: str, kind: str | None = None) -> Any:
    """The viewer's layer called ``name`` (of class ``kind``, e.g. ``"Points"``, when given), or ``None``."""
    for layer in viewer.layers:
        if layer.name == name and (kind is None or type(layer).__name__ == kind):
            return layer
    return None


def grid_of(viewer: Any) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def volume_layers(viewer: Any, keep: Callable[[Any], bool] = lambda layer: True) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's 3D single-channel image layers (not RGB, not multiscale) that ``keep``."""
    from napari.layers import Image

    return [
        (layer.name, layer)
        for layer in viewer.layers
        if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb and not layer.multiscale and keep(layer)
    ]


def follow_layer_list(viewer: Any, refresh: Callable[[], None]) -> None:
    """Call ``refresh`` whenever layers are added or removed, until the widget's Qt side is gone."""
    events = (viewer.layers.events.inserted, viewer.layers.events.removed)

    def on_change(_event: Any = None) -> None:
        try:
            refresh()
        except RuntimeError:  # the widget was closed: stop listening
            for event in events:
                event.disconnect(on_change)

    for event in events:
        event.connect(on_change)
