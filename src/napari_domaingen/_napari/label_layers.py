"""Class names, colours and provenance of Labels layers ↔ :class:`~napari_domaingen.io.label_table.LabelTable`.

A Labels layer keeps its class names in its ``features`` table (columns ``index`` = label value and ``name``, the
layout napari's own label tooltips read), its colours in a direct colormap, and the table it was read with
(series it was made on, algorithm) in ``metadata["domaingen"]["label_table"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.label_table import LabelTable
from .layer_meta import nifti_source_of, read_meta

__all__ = ["class_names_from_features", "label_table_kwargs", "label_table_of"]

#: Colour of label values the table does not list (e.g. painted with a new value): visible, neutral.
UNLISTED_COLOUR = (0.8, 0.8, 0.8, 1.0)


def label_table_kwargs(table: LabelTable) -> dict[str, Any]:
    """``features`` and ``colormap`` keyword arguments for a Labels layer showing ``table``."""
    classes = sorted(table.classes, key=lambda c: c.value)
    colours: dict[Any, tuple[float, ...]] = {None: UNLISTED_COLOUR, 0: (0.0, 0.0, 0.0, 0.0)}
    for c in classes:
        if c.value != 0:
            colours[c.value] = (*(v / 255 for v in c.colour), 1.0)
    return {
        "features": {"index": [c.value for c in classes], "name": [c.name for c in classes]},
        "colormap": colours,
    }


def class_names_from_features(features: Any) -> dict[int, str]:
    """Label value → class name from a Labels ``features`` table: its ``name`` column, with label values from its
    ``index`` column or, without one, row ``i`` ↔ value ``i``. Empty without a ``name`` column."""
    if features is None or "name" not in getattr(features, "columns", ()):
        return {}
    values = features["index"] if "index" in features.columns else range(len(features))
    return {int(value): str(name) for value, name in zip(values, features["name"])}


def _names(features: Any) -> dict[int, str]:
    """:func:`class_names_from_features` without empty names (a table row that names nothing)."""
    return {v: n for v, n in class_names_from_features(features).items() if n not in ("", "nan", "None")}


def _colours(colormap: Any, values: list[int]) -> dict[int, tuple[int, int, int]]:
    if colormap is None or not hasattr(colormap, "map") or not values:
        return {}
    rgba = np.asarray(colormap.map(np.asarray(values)), dtype=float).reshape(len(values), -1)
    return {v: tuple(int(round(c * 255)) for c in row[:3]) for v, row in zip(values, rgba)}  # type: ignore[misc]


def label_table_of(data: Any, attributes: dict[str, Any]) -> LabelTable:
    """The table of a Labels layer (its layer-data attributes, as npe2 writers receive them): every value in
    ``data`` and every named one, with the layer's names and colours; the series it was made on and the
    algorithm that made it from its metadata (MaskGen/ERM segmentations record the model and its SHA-256)."""
    meta = read_meta(attributes.get("metadata"))
    known = meta.get("label_table")
    names = _names(attributes.get("features"))
    values = sorted({int(v) for v in np.unique(np.asarray(data))} | set(names))
    colours = _colours(attributes.get("colormap"), values)
    source = nifti_source_of(attributes.get("metadata"))
    series = (source.dicom_series_uid if source is not None else None) or (
        known.source_series_uid if isinstance(known, LabelTable) else None
    )
    algorithm = None
    made_by = meta.get("maskgen")
    if isinstance(made_by, dict) and made_by.get("model_sha256"):
        algorithm = {
            "name": str(made_by.get("method", "MaskGen")),
            "version": str(made_by["model_sha256"]),
            "model": str(made_by.get("model", "")),
            "type": "SEMIAUTOMATIC" if made_by.get("edited") else "AUTOMATIC",  # corrected by hand after the model
        }
    elif isinstance(known, LabelTable):
        algorithm = known.algorithm
    colours.pop(0, None)  # background: transparent in napari, black in the sidecars
    return LabelTable.from_names(values, names, colours, source_series_uid=series, algorithm=algorithm)
