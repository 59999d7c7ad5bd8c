"""The plugin's own record in a napari layer's ``metadata``: one typed shape (:class:`LayerMeta`), read with
:func:`read_meta` and written with :func:`with_meta`.

The record lives under ``metadata["domaingen"]`` (:data:`META_KEY`) as a plain dict, so a layer saved or copied by
napari (or built by a script or a test with a dict literal) stays readable; the TypedDicts below only name its
keys and their types. Every key is optional: a layer carries the facts that apply to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

from ..io.label_table import LabelTable
from ..io.nifti import NiftiSource

__all__ = [
    "META_KEY",
    "CompareRecord",
    "FeatureRgbRecord",
    "FeaturesRecord",
    "LayerMeta",
    "MaskGenRecord",
    "ResampledFrom",
    "nifti_source_of",
    "read_meta",
    "with_meta",
]

META_KEY = "domaingen"


class ResampledFrom(TypedDict):
    """A volume resampled in memory on loading: its original ``path`` (or name) and ``spacing`` → ``new_spacing``
    (display order, mm)."""

    path: str | None
    spacing: tuple[float, ...] | None
    new_spacing: tuple[float, ...]


class FeaturesRecord(TypedDict, total=False):
    """A feature stack made by *Extract features*: its source layer, extractor and how it was computed."""

    source_layer: str
    weights_name: str
    settings: dict[str, Any]
    device: str
    precision: str
    strategy: str
    normalisation: str
    seconds: float
    cached: bool


class FeatureRgbRecord(TypedDict):
    """An RGB rendering made by *Feature RGB* from a feature-stack layer."""

    features_layer: str
    mode: str
    channels: list[int]


class MaskGenRecord(TypedDict, total=False):
    """A segmentation (labels or probabilities) made by *MaskGen — segment*; ``method``/``model_sha256`` name the
    model (DICOM-SEG's algorithm), ``edited``: corrected by hand since."""

    source_layer: str
    model: str
    model_description: str
    settings: dict[str, Any]
    device: str
    feature_mode: str
    seconds: float
    label_values: list[int]
    class_names: list[str]
    method: str
    model_sha256: str
    edited: bool


class CompareRecord(TypedDict, total=False):
    """A layer made by *Compare representations*: its ``role`` (``rgb_a``, ``rgb_b``, ``cosine``, ``similarity``,
    ``marker``), the layers compared and how."""

    role: str
    a: str
    b: str
    weights: str
    mode: str
    resampled: bool
    voxel: list[int]


class LayerMeta(TypedDict, total=False):
    """``metadata["domaingen"]`` of a layer the plugin made or read.

    ``nifti_source``: the file geometry a writer restores; ``display_affine`` (4, 4) index → ``(S, A, R)`` mm;
    ``label_table``: the classes a Labels layer was read with; ``resampled_from`` / ``resampled_onto``: how
    *Load volumes* changed its grid; ``histology_path`` / ``slide_path`` / ``mpp`` (µm per pixel) /
    ``downsamples``: a histology image or slide; ``features`` / ``feature_rgb`` / ``maskgen`` / ``compare`` /
    ``swap``: what made a derived layer (the swap widgets' record is theirs to shape).
    """

    nifti_source: NiftiSource
    display_affine: np.ndarray
    label_table: LabelTable
    resampled_from: ResampledFrom
    resampled_onto: str
    histology_path: str
    slide_path: str
    mpp: float | None
    downsamples: list[float]
    features: FeaturesRecord
    feature_rgb: FeatureRgbRecord
    maskgen: MaskGenRecord
    compare: CompareRecord
    swap: dict[str, Any]


def read_meta(source: Any) -> LayerMeta:
    """A copy of the record of a layer, of its ``metadata`` mapping, or of layer-data attributes (with a
    ``"metadata"`` key); empty when there is none. Nested records are shared, not copied."""
    metadata = source if isinstance(source, Mapping) else getattr(source, "metadata", None)
    if isinstance(metadata, Mapping) and META_KEY not in metadata and isinstance(metadata.get("metadata"), Mapping):
        metadata = metadata["metadata"]  # layer-data attributes
    entry = metadata.get(META_KEY) if isinstance(metadata, Mapping) else None
    return LayerMeta(**entry) if isinstance(entry, Mapping) else LayerMeta()  # type: ignore[typeddict-item]


def with_meta(metadata: Mapping[str, Any] | None, meta: LayerMeta) -> dict[str, Any]:
    """A new ``metadata`` dict: ``metadata``'s other keys, and ``meta`` as the plugin's record."""
    return {**(metadata or {}), META_KEY: dict(meta)}


def nifti_source_of(source: Any) -> NiftiSource | None:
    """The NIfTI file geometry recorded for a layer (see :func:`read_meta` for ``source``), if any."""
    found = read_meta(source).get("nifti_source")
    return found if isinstance(found, NiftiSource) else None
