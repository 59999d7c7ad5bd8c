"""What *MaskGen — train* trains on, kept apart from its controls: (image, labels) layer or NIfTI pairs, the
class names their Labels layers carry, and the worker body that checks the pairs and runs
:func:`~napari_domaingen.core.maskgen_training.train`. No Qt here.

Also the background import of the training's heavy modules, started when the widget opens.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.maskgen_training import TrainResult, TrainSettings, train
from ..core.segmentation_data import LabelledVolume, LabelMap, default_class_name, labelled_volume
from ..io.geometry import same_grid
from ..progress import Progress
from .compare import layer_display_affine

__all__ = [
    "WARM_UP_MODULES",
    "PairSnapshot",
    "TrainingPair",
    "class_names_for",
    "labels_layers",
    "layer_class_names",
    "layer_pair_volume",
    "snapshot_pairs",
    "train_job",
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


def class_names_for(values: Sequence[int], known: dict[int, str]) -> tuple[str, ...] | None:
    """Names of the label ``values`` (sorted, background first): ``known`` ones, the core's defaults for the rest;
    ``None`` (all defaults) when nothing is known."""
    if not known:
        return None
    return tuple(known.get(int(v), default_class_name(v)) for v in values)


@dataclass
class PairSnapshot:
    """What a training volume is made of, taken from an (Image, Labels) layer pair on the GUI thread (cheap: no
    copy, no pass over the voxels); :meth:`build` checks and prepares it, off the GUI thread for big volumes.

    ``spacing`` = the image layer's ``scale``; ``*_affine``: the layers' (4, 4) display affines.
    """

    image: Any
    labels: Any
    name: str
    spacing: tuple[float, ...]
    image_affine: np.ndarray
    labels_affine: np.ndarray

    @classmethod
    def of(cls, image: Any, labels: Any) -> PairSnapshot:
        name = f"{image.name} + {labels.name}"
        try:
            image_affine, labels_affine = layer_display_affine(image), layer_display_affine(labels)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        return cls(image.data, labels.data, name, tuple(float(s) for s in image.scale), image_affine, labels_affine)

    def build(self) -> LabelledVolume:
        """The checked training volume; ``ValueError`` saying what is wrong."""
        return labelled_volume(
            np.asarray(self.image),
            np.asarray(self.labels),
            name=self.name,
            spacing=self.spacing,
            image_affine=self.image_affine,
            labels_affine=self.labels_affine,
        )


def layer_pair_volume(image: Any, labels: Any) -> LabelledVolume:
    """A checked training volume from an (Image, Labels) layer pair; ``ValueError`` saying what is wrong."""
    return PairSnapshot.of(image, labels).build()


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

    def snapshot(self) -> PairSnapshot | LabelledVolume:
        """The file pair's volume, or a snapshot of the layer pair to build in the worker."""
        return self.volume if self.volume is not None else PairSnapshot.of(self.image, self.labels)

    def build(self) -> LabelledVolume:
        return self.volume if self.volume is not None else layer_pair_volume(self.image, self.labels)

    def class_names(self) -> dict[int, str]:
        return {} if self.is_file else layer_class_names(self.labels)


def train_job(
    pairs: Sequence[PairSnapshot | LabelledVolume],
    validation_pairs: Sequence[PairSnapshot | LabelledVolume],
    known_names: dict[int, str],
    out: Path,
    settings: TrainSettings,
    resume: Path | None,
    init: Path | None,
    cancel: Callable[[], bool],
) -> Generator[Progress, None, TrainResult]:
    """Worker body: check and prepare the pairs (a pass over every voxel: not on the GUI thread), name the classes
    found, then the core training job."""
    yield {"stage": "prepare", "fraction": 0.0, "message": "checking the training data"}
    volumes = [p if isinstance(p, LabelledVolume) else p.build() for p in pairs]
    validation = [p if isinstance(p, LabelledVolume) else p.build() for p in validation_pairs]
    names = class_names_for(LabelMap.from_volumes(volumes).values, known_names)
    job = train(
        volumes,
        out,
        replace(settings, class_names=names),
        validation=validation,
        resume=resume,
        init=init,
        cancel=cancel,
    )
    return (yield from job)


def snapshot_pairs(
    pairs: Sequence[TrainingPair], validation: TrainingPair | None
) -> tuple[list[PairSnapshot | LabelledVolume], list[PairSnapshot | LabelledVolume], dict[int, str]]:
    """What a run takes from the pairs on the GUI thread: their snapshots, the validation pair's, and the class
    names their layers carry. Only the cheap checks (the grids) run here; ``ValueError`` saying what is wrong.
    The voxel-wise ones (empty labels, values, NaN) run first in the worker (:func:`train_job`)."""
    snapshots = [pair.snapshot() for pair in pairs]
    held_out = [validation.snapshot()] if validation is not None else []
    for snapshot in [*snapshots, *held_out]:
        if isinstance(snapshot, PairSnapshot) and not same_grid(
            np.shape(snapshot.image),
            snapshot.image_affine,
            np.shape(snapshot.labels),
            snapshot.labels_affine,
            atol=1e-3,
        ):
            snapshot.build()  # raises the core's message about the grids
    known: dict[int, str] = {}
    for pair in pairs:
        known.update(pair.class_names())
    return snapshots, held_out, known
