"""The layers a dock widget made: a re-run replaces its own earlier output instead of stacking "… [1]" copies."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ._choices import find_layer, layer_key

#: layer properties that napari only takes when a layer is made (they cannot be set on an existing layer)
_CONSTRUCTION_ONLY = ("rgb", "channel_axis", "multiscale")
_GEOMETRY = ("scale", "translate", "affine", "metadata")


class OutputLayers:
    """Output layers of one widget by *role* (e.g. ``"cosine"``, or the output's name).

    :meth:`put` updates the layer this object made for a role (new data, name, geometry and style) when the user
    still has it and it can take the data; otherwise it adds a new layer. Layers are tracked by ``unique_id``,
    which survives napari's plugin proxies and renaming.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._keys: dict[Hashable, Hashable] = {}

    def get(self, role: Hashable) -> Any:
        """The layer made for ``role``, or ``None`` (never made, or removed)."""
        key = self._keys.get(role)
        return find_layer(self.viewer, key) if key is not None else None

    def put(self, role: Hashable, kind: str, data: Any, name: str, **kwargs: Any) -> Any:
        """Add (``viewer.add_<kind>``) or update the ``role`` layer; returns it."""
        layer = self.get(role)
        if layer is not None and _can_take(layer, kind, data, kwargs):
            layer.data = data
            layer.name = name
            for attribute in _GEOMETRY:
                if attribute in kwargs:
                    setattr(layer, attribute, kwargs[attribute])
            for attribute, value in kwargs.items():
                if attribute not in _GEOMETRY and attribute not in _CONSTRUCTION_ONLY:
                    setattr(layer, attribute, value)
            layer.refresh()
            return layer
        layer = getattr(self.viewer, f"add_{kind}")(data, name=name, **kwargs)
        self._keys[role] = layer_key(layer)
        return layer


def _can_take(layer: Any, kind: str, data: Any, kwargs: dict[str, Any]) -> bool:
    """Whether an existing layer can show ``data`` as a ``kind`` layer made with ``kwargs``."""
    if type(layer).__name__.lower() != kind:
        return False
    if kind == "image" and bool(getattr(layer, "rgb", False)) != bool(kwargs.get("rgb", False)):
        return False
    return getattr(layer.data, "ndim", None) == getattr(data, "ndim", None)
