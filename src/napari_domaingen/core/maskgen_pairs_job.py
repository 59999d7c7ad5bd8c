"""Training MaskGen (or the ERM baseline) on (image, labels) pairs taken from a viewer: the *MaskGen — train*
dock's job. No Qt or napari here.

The dock snapshots its layer pairs on the GUI thread (:class:`PairSnapshot`: no copy, no pass over the voxels) and
hands a :class:`PairTraining` to :func:`train_pairs`, which checks and prepares the volumes off the GUI thread,
names the classes found and runs :func:`~.maskgen_training.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io.geometry import same_grid
from ..progress import Progress
from .maskgen_training import TrainResult, TrainSettings, train
from .segmentation_data import LabelledVolume, LabelMap, default_class_name, labelled_volume

__all__ = ["PairSnapshot", "PairTraining", "TrainingVolume", "build_volume", "class_names_for", "train_pairs"]


@dataclass
class PairSnapshot:
    """What a training volume is made of, taken from an (image, labels) pair of arrays without reading them;
    :meth:`build` checks and prepares it (a pass over every voxel: off the GUI thread for big volumes).

    ``image``/``labels``: ``(Z, Y, X)`` array-likes (numpy, dask, …); ``spacing``: the image's voxel spacing (mm);
    ``*_affine``: their (4, 4) display affines.
    """

    image: Any
    labels: Any
    name: str
    spacing: tuple[float, ...]
    image_affine: np.ndarray
    labels_affine: np.ndarray

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

    def check_grid(self) -> None:
        """The cheap check (no voxel read): ``ValueError`` with :func:`build`'s message when the labels are not on
        the image's grid."""
        if not same_grid(np.shape(self.image), self.image_affine, np.shape(self.labels), self.labels_affine, atol=1e-3):
            self.build()  # raises the message about the grids


#: a training volume as the dock hands it over: a file pair read and checked already, or a layer pair's snapshot
TrainingVolume = PairSnapshot | LabelledVolume


def build_volume(volume: TrainingVolume) -> LabelledVolume:
    """The checked :class:`LabelledVolume` of a snapshot (a volume read from files is one already)."""
    return volume if isinstance(volume, LabelledVolume) else volume.build()


def class_names_for(values: Sequence[int], known: dict[int, str]) -> tuple[str, ...] | None:
    """Names of the label ``values`` (sorted, background first): ``known`` ones, the core's defaults for the rest;
    ``None`` (all defaults) when nothing is known."""
    if not known:
        return None
    return tuple(known.get(int(v), default_class_name(v)) for v in values)


@dataclass(frozen=True)
class PairTraining:
    """One training run on pairs: the ``volumes`` trained on, the held-out ``validation`` ones, class names the
    labels carry (``known_names``: label value → name), the model file ``out``, the ``settings``, and a checkpoint
    to ``resume`` or to fine-tune from (``init``; not both)."""

    volumes: Sequence[TrainingVolume]
    out: Path
    settings: TrainSettings
    validation: Sequence[TrainingVolume] = ()
    known_names: dict[int, str] = field(default_factory=dict)
    resume: Path | None = None
    init: Path | None = None


def train_pairs(run: PairTraining, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, TrainResult]:
    """Job: check and prepare the pairs (a pass over every voxel), name the classes found, then train
    (:func:`~.maskgen_training.train`)."""
    yield {"stage": "prepare", "fraction": 0.0, "message": "checking the training data"}
    volumes = [build_volume(v) for v in run.volumes]
    validation = [build_volume(v) for v in run.validation]
    names = class_names_for(LabelMap.from_volumes(volumes).values, run.known_names)
    job = train(
        volumes,
        run.out,
        replace(run.settings, class_names=names),
        validation=validation,
        resume=run.resume,
        init=run.init,
        cancel=cancel,
    )
    return (yield from job)
