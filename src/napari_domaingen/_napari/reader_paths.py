"""What every npe2 reader contribution of the plugin shares: the reader function type and the paths it was given."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .layers import LayerDataTuple

__all__ = ["ReaderFunction", "reader_paths"]

ReaderFunction = Callable[[str | Sequence[str]], list[LayerDataTuple]]


def reader_paths(path: str | Sequence[str]) -> list[str]:
    """The paths napari hands a reader (one path or several) as a list of strings."""
    return [str(path)] if isinstance(path, (str, bytes)) or not isinstance(path, Sequence) else [str(p) for p in path]
