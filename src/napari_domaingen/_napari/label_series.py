"""The DICOM series a hand-drawn Labels layer lies on, found by geometry.

A Labels layer made by napari (*New labels*, a script's ``add_labels``) carries no record of the volume it was
drawn on, only that volume's grid (shape, scale, translate, affine). To save it as a DICOM Segmentation, the series
is taken from the image layers of the viewer that were read from a DICOM series and lie on exactly that grid: one
fits → its series; several (e.g. T1 and FLAIR of one study on one grid) → the user chooses in a dialog (without a
screen the save is refused with the candidates named); none → the caller says how to export instead. The choice is
written into the Labels layer's record, so later saves and the label table use the same series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..io.errors import VolumeWriteError
from ..io.geometry import display_affine_from_layer
from ..io.nifti import NiftiSource
from .layer_meta import nifti_source_of, read_meta, with_meta

__all__ = ["SeriesCandidate", "choose_series", "fitting_series", "series_for_labels"]

#: largest difference (mm) between two display affines' entries that still counts as one grid
GRID_TOLERANCE_MM = 1e-3

SeriesCandidate = tuple[str, NiftiSource]  # (image layer name, its DICOM source)


def fitting_series(shape: Sequence[int], display_affine: np.ndarray, layers: Any) -> list[SeriesCandidate]:
    """Image layers among ``layers`` read from a DICOM series whose ``(Z, Y, X)`` grid is ``shape`` with the
    ``(4, 4)`` ``display_affine`` (index → world mm); one per series, in layer order."""
    found: list[SeriesCandidate] = []
    for layer in layers:
        source = nifti_source_of(layer)
        if getattr(layer, "_type_string", "") != "image" or source is None or not source.dicom_series_uid:
            continue
        if source.path is None or tuple(np.shape(layer.data)[-3:]) != tuple(shape):
            continue
        try:
            affine = display_affine_from_layer(layer)
        except ValueError:
            continue
        if np.allclose(affine, display_affine, atol=GRID_TOLERANCE_MM, rtol=0):
            if all(s.dicom_series_uid != source.dicom_series_uid for _, s in found):
                found.append((str(layer.name), source))
    return found


def _ask(labels_name: str, candidates: list[SeriesCandidate]) -> NiftiSource | None:
    """A modal list of the candidates (``None``: cancelled, or no screen to ask on)."""
    from qtpy.QtWidgets import QApplication, QInputDialog

    app = QApplication.instance()
    if app is None or QApplication.platformName() in ("offscreen", "minimal"):
        return None
    items = [f"{name} (series {source.dicom_series_uid})" for name, source in candidates]
    choice, ok = QInputDialog.getItem(
        app.activeWindow(),
        "Which DICOM series?",
        f"'{labels_name}' lies on the grid of several DICOM series. The DICOM Segmentation will reference:",
        items,
        0,
        False,
    )
    return candidates[items.index(choice)][1] if ok and choice in items else None


def choose_series(
    path: str,
    labels_name: str,
    candidates: list[SeriesCandidate],
    ask: Callable[[str, list[SeriesCandidate]], NiftiSource | None] = _ask,
) -> NiftiSource:
    """The one candidate, or the user's choice among several (``ask``); :class:`VolumeWriteError` naming ``path``
    when there is none or the user chose none."""
    if not candidates:
        raise VolumeWriteError(
            path,
            f"'{labels_name}' is not on the grid of a volume read from a DICOM series (open the series and draw on "
            "it, e.g. with Layers ▸ New labels while it is selected), so a DICOM Segmentation has nothing to "
            "reference; save it as .nii.gz, or run `domaingen export LABELS.nii.gz --reference DICOM_DIR --out "
            "SEG.dcm`",
        )
    if len(candidates) == 1:
        return candidates[0][1]
    chosen = ask(labels_name, candidates)
    if chosen is None:
        names = ", ".join(f"'{name}'" for name, _ in candidates)
        raise VolumeWriteError(
            path,
            f"'{labels_name}' lies on the grid of several DICOM series ({names}) and none was chosen; nothing "
            "was written",
        )
    return chosen


def series_for_labels(path: str, data: Any, attributes: dict[str, Any]) -> NiftiSource:
    """The DICOM source of a Labels layer being saved as ``path``: its own record, else the series of the image
    layer of the current viewer it lies on (:func:`fitting_series`, :func:`choose_series`), then kept in the
    layer's record."""
    source = nifti_source_of(attributes.get("metadata"))
    if source is not None and source.dicom_series_uid and source.path is not None:
        return source
    name = str(attributes.get("name") or "labels")
    viewer = _current_viewer()
    layers = list(viewer.layers) if viewer is not None else []
    shape = tuple(np.shape(data)[-3:])
    chosen = choose_series(path, name, fitting_series(shape, display_affine_from_layer(attributes), layers))
    for layer in layers:  # remember the choice on the layer being saved
        if getattr(layer, "_type_string", "") == "labels" and layer.data is data:
            layer.metadata = with_meta(layer.metadata, {**read_meta(layer), "nifti_source": chosen})
    return chosen


def _current_viewer() -> Any:
    try:
        import napari

        return napari.current_viewer()
    except Exception:  # no napari window: a script writing with napari's plugin machinery
        return None
