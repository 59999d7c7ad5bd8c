"""What *MaskGen — train* trains on, kept apart from its controls: (image, labels) layer or NIfTI pairs, the
class names their Labels layers carry, and the snapshot of the pairs a run hands to the core job
(:func:`~napari_domaingen.core.maskgen_pairs_job.train_pairs`). No Qt here.

Also the background import of the training's heavy modules, started when the widget opens.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.maskgen_pairs_job import PairSnapshot, TrainingVolume, class_names_for
from ..core.segmentation_data import LabelledVolume
from ..io.geometry import display_affine_from_layer

__all__ = [
    "WARM_UP_MODULES",
    "PairSnapshot",
    "TrainingPair",
    "class_names_for",
    "labels_layers",
    "layer_class_names",
    "layer_pair_volume",
    "pair_snapshot",
    "snapshot_pairs",
    "warm_up_imports",
]

#: imported lazily by a training run (MONAI's losses/transforms/metrics, torch._dynamo and sympy): ~2800 modules
WARM_UP_MODULES = ("monai.losses", "monai.transforms", "monai.inferers", "monai.metrics", "torch._dynamo")
_warm_up: list[threading.Thread] = []


def warm_up_imports() -> threading.Thread:
    """Import :data:`WARM_UP_MODULES` in a background thread, once per session, and return that thread.

    A first import holds the GIL in stretches of 0.2–0.4 s (unmarshalling big modules, loading extension
    modules), which froze the GUI that long during the first training run's preparation; done when the widget
    opens instead, the run starts 3–4 s earlier and the hitches fall while the user is still choosing parameters.
    """
    if not _warm_up:

        def work() -> None:
            for name in WARM_UP_MODULES:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass

        thread = threading.Thread(target=work, name="domaingen-warm-up")
        thread.start()
        _warm_up.append(thread)
    return _warm_up[0]


def labels_layers(viewer: Any) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's 3D Labels layers."""
    from napari.layers import Labels

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Labels) and layer.ndim == 3]


def layer_class_names(layer: Any) -> dict[int, str]:
    """Label value → class name from a Labels layer's ``features`` table (see
    :func:`~napari_domaingen._napari.label_layers.class_names_from_features`)."""
    from .._napari.label_layers import class_names_from_features

    return class_names_from_features(getattr(layer, "features", None))


def pair_snapshot(image: Any, labels: Any) -> PairSnapshot:
    """The snapshot of an (Image, Labels) layer pair (cheap: no copy, no pass over the voxels); ``ValueError`` for
    a layer whose transform has no display affine (rotate/shear)."""
    name = f"{image.name} + {labels.name}"
    try:
        image_affine, labels_affine = display_affine_from_layer(image), display_affine_from_layer(labels)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return PairSnapshot(
        image.data, labels.data, name, tuple(float(s) for s in image.scale), image_affine, labels_affine
    )


def layer_pair_volume(image: Any, labels: Any) -> LabelledVolume:
    """A checked training volume from an (Image, Labels) layer pair; ``ValueError`` saying what is wrong."""
    return pair_snapshot(image, labels).build()


@dataclass
class TrainingPair:
    """One row of the training table: an (Image, Labels) layer pair, or a NIfTI pair checked when it was added."""

    image: Any
    labels: Any
    volume: LabelledVolume | None = None  # file pairs only: read and checked once

    @property
    def is_file(self) -> bool:
        return self.volume is not None

    @property
    def names(self) -> tuple[str, str]:
        if self.is_file:
            return Path(self.image).name, Path(self.labels).name
        return self.image.name, self.labels.name

    def snapshot(self) -> TrainingVolume:
        """The file pair's volume, or a snapshot of the layer pair to build in the worker."""
        return self.volume if self.volume is not None else pair_snapshot(self.image, self.labels)

    def build(self) -> LabelledVolume:
        return self.volume if self.volume is not None else layer_pair_volume(self.image, self.labels)

    def class_names(self) -> dict[int, str]:
        return {} if self.is_file else layer_class_names(self.labels)


def snapshot_pairs(
    pairs: Sequence[TrainingPair], validation: TrainingPair | None
) -> tuple[list[TrainingVolume], list[TrainingVolume], dict[int, str]]:
    """What a run takes from the pairs on the GUI thread: their snapshots, the validation pair's, and the class
    names their layers carry. Only the cheap checks (the grids) run here; ``ValueError`` saying what is wrong.
    The voxel-wise ones (empty labels, values, NaN) run first in the worker
    (:func:`~napari_domaingen.core.maskgen_pairs_job.train_pairs`)."""
    snapshots = [pair.snapshot() for pair in pairs]
    held_out = [validation.snapshot()] if validation is not None else []
    for snapshot in [*snapshots, *held_out]:
        if isinstance(snapshot, PairSnapshot):
            snapshot.check_grid()
    known: dict[int, str] = {}
    for pair in pairs:
        known.update(pair.class_names())
    return snapshots, held_out, known
