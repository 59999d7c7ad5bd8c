"""Labelled volumes for segmentation training: input checks, label ↔ class mapping, crops and augmentation.

Arrays are in display order ``(Z, Y, X)``. Images are scaled to [0, 1] once (optional percentile clip, then
min-max, as anatomix expects); labels keep their file values and are mapped to contiguous class indices
``0 … K-1`` by :class:`LabelMap` (so labels ``{0, 1, 2, 4}`` train a 4-class model and predictions are written
back as ``{0, 1, 2, 4}``).

Batches come from :class:`CropSampler`: random crops (with foreground oversampling, MONAI
``RandCropByPosNegLabeld``) and the MaskGen paper's augmentation pipeline (MONAI, each transform with p = 0.33),
min-max scaled again at the end. Every draw of step ``k`` is seeded from ``(seed, k)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..io.geometry import same_grid
from .features import check_volume, preprocess
from .training import step_seed

__all__ = [
    "AUGMENT_PROBABILITY",
    "CropSampler",
    "LabelMap",
    "LabelledVolume",
    "augmentation_names",
    "default_class_name",
    "labelled_volume",
    "labelled_volume_from_files",
]

#: Probability of each augmentation (MaskGen code: 0.33 each).
AUGMENT_PROBABILITY = 0.33


@dataclass
class LabelledVolume:
    """One training or validation volume.

    ``image``: ``(Z, Y, X)`` float32 in [0, 1]; ``labels``: ``(Z, Y, X)`` int64 file label values;
    ``spacing``: voxel size in mm, display order; ``name``: for messages.
    """

    image: np.ndarray
    labels: np.ndarray
    name: str
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    foreground: np.ndarray | None = field(default=None, repr=False)  # flat indices of labelled voxels


def labelled_volume(
    image: np.ndarray,
    labels: np.ndarray,
    name: str = "volume",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    image_affine: np.ndarray | None = None,
    labels_affine: np.ndarray | None = None,
    clip_percentiles: tuple[float, float] | None = None,
) -> LabelledVolume:
    """Check an (image, labels) pair and prepare it for training; ``ValueError`` with a clear message otherwise.

    Refused: an image that is not a 3D real volume or has NaN/inf voxels; labels of another shape, or on another
    grid when both ``(4, 4)`` affines are given; labels that are not whole non-negative numbers; labels without
    any foreground (non-zero) voxel.
    """
    try:
        image = check_volume(image)
    except ValueError as err:
        raise ValueError(f"{name}: image: {err}") from None
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{name}: labels must be a 3D volume (Z, Y, X), got {labels.ndim}D shape {labels.shape}")
    if labels.shape != image.shape:
        raise ValueError(
            f"{name}: the labels grid {labels.shape} differs from the image grid {image.shape}; resample the labels "
            "onto the image (Load volumes ▸ resample) or pick the matching pair"
        )
    if (
        image_affine is not None
        and labels_affine is not None
        and not same_grid(image.shape, image_affine, labels.shape, labels_affine, atol=1e-3)
    ):
        raise ValueError(
            f"{name}: the labels have the image's shape but another position/orientation in space (their affines "
            "differ); resample the labels onto the image grid first"
        )
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{name}: labels must be whole numbers (class values), found fractional or NaN values")
    elif labels.dtype.kind not in "uib":
        raise ValueError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{name}: labels must be non-negative (0 = background), found {int(labels.min())}")
    foreground = np.flatnonzero(labels)
    if foreground.size == 0:
        raise ValueError(
            f"{name}: the labels are empty (no voxel above 0); paint or load the structures to learn first"
        )
    return LabelledVolume(
        image=preprocess(image, clip_percentiles=clip_percentiles),
        labels=labels,
        name=name,
        spacing=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        foreground=foreground,
    )


def labelled_volume_from_files(
    image_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    clip_percentiles: tuple[float, float] | None = None,
) -> LabelledVolume:
    """:func:`labelled_volume` of a NIfTI (image, labels) pair, read in display order; the labels must lie on the
    image's grid (shape and affine). Read errors name the file."""
    from ..io.nifti import read_nifti

    image = read_nifti(image_path, as_label=False)
    labels = read_nifti(labels_path, as_label=True)
    return labelled_volume(
        image.data,
        labels.data,
        name=f"{image.name} + {labels.name}",
        spacing=image.spacing,
        image_affine=image.display_affine,
        labels_affine=labels.display_affine,
        clip_percentiles=clip_percentiles,
    )


def default_class_name(value: int) -> str:
    """The name of a label value nobody named: ``"background"`` for 0, else ``"class <value>"``."""
    return "background" if int(value) == 0 else f"class {int(value)}"


@dataclass(frozen=True)
class LabelMap:
    """File label values ``values[k]`` ↔ class index ``k`` (``values[0]`` is 0, the background)."""

    values: tuple[int, ...]

    @classmethod
    def from_volumes(cls, volumes: Sequence[LabelledVolume]) -> LabelMap:
        """The sorted label values present in any of ``volumes``, with 0 always first."""
        values: set[int] = {0}
        for volume in volumes:
            values.update(int(v) for v in np.unique(volume.labels))
        return cls(tuple(sorted(values)))

    @property
    def num_classes(self) -> int:
        return len(self.values)

    def check(self, volume: LabelledVolume) -> None:
        """``ValueError`` if ``volume`` holds label values this map (a model's classes) does not know."""
        unknown = sorted({int(v) for v in np.unique(volume.labels)} - set(self.values))
        if unknown:
            raise ValueError(
                f"{volume.name}: label values {unknown} are beyond the model's classes {list(self.values)}; "
                "a model can only learn the classes it was built with (train a new model for new classes)"
            )

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """File values → class indices (int64); values must be known (see :meth:`check`)."""
        lookup = np.zeros(max(self.values) + 1, dtype=np.int64)
        lookup[list(self.values)] = np.arange(len(self.values))
        return lookup[labels]

    def decode(self, classes: np.ndarray) -> np.ndarray:
        """Class indices → file values, in the smallest unsigned dtype that holds them."""
        dtype = np.uint8 if max(self.values) < 256 else np.uint16 if max(self.values) < 65536 else np.uint32
        return np.asarray(self.values, dtype=dtype)[classes]


def augmentation_names(flips: bool = True) -> list[str]:
    """Human-readable list of the augmentations :class:`CropSampler` applies (for help texts and model cards)."""
    names = [
        "affine (rotate ±π/4, shear 0.2, scale 0.2)",
        "simulated low resolution (zoom 0.25–1)",
        "Gaussian noise (σ 0.1)",
        "bias field (0–0.1)",
        "Gibbs ringing (0–0.33)",
        "contrast / gamma (0.5–4.5)",
        "Gaussian smoothing (σ 0–0.1)",
        "Gaussian sharpening",
    ]
    if flips:
        names.insert(0, "flips and 90° rotations")
    return names


def _augmentations(flips: bool):
    """MONAI dict transforms of the MaskGen paper on ``{"image", "label"}`` crops (channel first), each p = 0.33."""
    from monai import transforms as T

    p = AUGMENT_PROBABILITY
    keys = ["image", "label"]
    spatial = []
    if flips:
        spatial += [T.RandFlipd(keys, prob=p, spatial_axis=axis) for axis in range(3)]
        spatial.append(T.RandRotate90d(keys, prob=p, max_k=3, spatial_axes=(1, 2)))
    spatial.append(
        T.RandAffined(
            keys,
            prob=p,
            rotate_range=(math.pi / 4,) * 3,
            shear_range=(0.2,) * 6,
            scale_range=(0.2,) * 3,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    )
    intensity = [
        T.RandSimulateLowResolutiond("image", prob=p, zoom_range=(0.25, 1.0)),
        T.RandGaussianNoised("image", prob=p, std=0.1),
        T.RandBiasFieldd("image", prob=p, coeff_range=(0.0, 0.1)),
        T.RandGibbsNoised("image", prob=p, alpha=(0.0, 0.33)),
        T.RandAdjustContrastd("image", prob=p, gamma=(0.5, 4.5)),
        T.RandGaussianSmoothd("image", prob=p, sigma_x=(0.0, 0.1), sigma_y=(0.0, 0.1), sigma_z=(0.0, 0.1)),
        T.RandGaussianSharpend("image", prob=p),
    ]
    return T.Compose([*spatial, *intensity])


class CropSampler:
    """Training batches from labelled volumes: ``(image (B, 1, *crop) float32, classes (B, 1, *crop) int64)``.

    Each sample picks a volume uniformly, crops ``crop`` voxels centred on a labelled voxel with probability
    ``foreground_ratio`` (else anywhere; MONAI ``RandCropByPosNegLabeld``), pads volumes smaller than the crop,
    applies the augmentation pipeline if ``augment`` (flips/90° rotations only if ``flips``) and min-max scales
    the image crop to [0, 1]. Labels are mapped to class indices with ``label_map``.
    """

    def __init__(
        self,
        volumes: Sequence[LabelledVolume],
        crop: Sequence[int],
        label_map: LabelMap,
        foreground_ratio: float = 0.5,
        augment: bool = True,
        flips: bool = True,
    ) -> None:
        from monai import transforms as T

        if not volumes:
            raise ValueError("no training volumes")
        if not 0.0 <= foreground_ratio <= 1.0:
            raise ValueError(f"foreground_ratio must be in [0, 1], got {foreground_ratio}")
        for volume in volumes:
            label_map.check(volume)
        self.volumes = list(volumes)
        self.crop = tuple(int(c) for c in crop)
        self.label_map = label_map
        self._classes = [label_map.encode(v.labels)[None] for v in self.volumes]
        self._images = [v.image[None] for v in self.volumes]
        self._pad = T.SpatialPadd(["image", "label"], spatial_size=self.crop)
        self._crop = T.RandCropByPosNegLabeld(
            ["image", "label"],
            label_key="label",
            spatial_size=self.crop,
            pos=foreground_ratio,
            neg=1.0 - foreground_ratio,
            num_samples=1,
            fg_indices_key="fg",
            bg_indices_key="bg",
        )
        self._augment = _augmentations(flips) if augment else None
        self._scale = T.ScaleIntensityd("image", minv=0.0, maxv=1.0)
        self._indices = [self._fg_bg(c[0]) for c in self._classes]

    def _fg_bg(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded = self._pad({"image": classes[None].astype(np.float32), "label": classes[None]})["label"]
        flat = np.asarray(padded).reshape(-1)
        return np.flatnonzero(flat), np.flatnonzero(flat == 0)

    def sample(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``step`` (deterministic in ``(seed, step)``)."""
        rng = np.random.default_rng(step_seed(seed, step, stream=1))
        images, labels = [], []
        for i in range(batch_size):
            which = int(rng.integers(len(self.volumes)))
            fg, bg = self._indices[which]
            item = self._pad({"image": self._images[which], "label": self._classes[which]})
            item["fg"], item["bg"] = fg, bg
            self._crop.set_random_state(seed=step_seed(seed, step, stream=10 + i))
            item = self._crop(item)[0]
            if self._augment is not None:
                self._augment.set_random_state(seed=step_seed(seed, step, stream=100 + i))
                item = self._augment(item)
            item = self._scale(item)
            images.append(torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32))
            labels.append(torch.as_tensor(np.asarray(item["label"])).round().long())
        return torch.stack(images), torch.stack(labels)
