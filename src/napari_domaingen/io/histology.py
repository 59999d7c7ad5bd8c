"""Read 2D histology images (PNG, JPEG, BMP, TIFF, Aperio SVS) as 8-bit RGB, pyramids included.

Every image comes back as :class:`HistologyImage`: a list of ``(Y, X, 3)`` uint8 arrays, highest resolution
first (one array for a flat image, several for a pyramidal TIFF/SVS, ready for a napari multiscale layer),
with the pixel size in microns when the file states it.

Conversion to 8-bit RGB (the same rules for every format) is described in :mod:`.histology_rgb`; flat
images are read by :mod:`.histology_flat` (Pillow), TIFF/SVS by :mod:`.histology_tiff` (tifffile).

Size limit: an image whose 8-bit RGB form would exceed ``max_bytes`` is not loaded at full resolution. For a
pyramid the largest stored level that fits is the first level kept (the smaller ones follow). When no stored
level fits (a flat image, or a pyramid whose smallest level is still too big), the smallest one is reduced by
an integer factor ``k`` (mean of ``k × k`` blocks; large TIFF levels are decoded through a temporary
memory-mapped file so RAM use stays bounded). ``downsamples`` records the factor of each kept level relative
to the file's full resolution, and ``mpp`` is the pixel size of ``levels[0]``.

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageReadError
from .histology_flat import _read_flat
from .histology_tiff import _TIFF_MAGIC, MAX_PLAUSIBLE_MPP, _read_tiff
from .output_guard import require_input_file

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HISTOLOGY_SUFFIXES",
    "MAX_PLAUSIBLE_MPP",
    "HistologyImage",
    "is_histology_path",
    "read_histology",
]

HISTOLOGY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".bmp")
DEFAULT_MAX_BYTES = 512 * 2**20


@dataclass
class HistologyImage:
    """A 2D RGB image, possibly a resolution pyramid.

    ``levels``: ``(Y, X, 3)`` uint8 arrays, highest resolution first (one element for a flat image).
    ``mpp``: microns per pixel of ``levels[0]`` (``None`` when the file does not say).
    ``downsamples``: factor of each level relative to the file's full resolution (``[1.0]`` for a flat image
    loaded whole). ``path``: the source file, ``None`` for generated images.
    """

    levels: list[np.ndarray]
    name: str
    mpp: float | None = None
    downsamples: list[float] = field(default_factory=lambda: [1.0])
    path: str | None = None

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a HistologyImage needs at least one level")
        if len(self.downsamples) != len(self.levels):
            raise ValueError(f"{len(self.levels)} levels but {len(self.downsamples)} downsample factors")
        for level in self.levels:
            if level.ndim != 3 or level.shape[2] != 3 or level.dtype != np.uint8:
                raise ValueError(f"levels must be (Y, X, 3) uint8 arrays, got {level.shape} {level.dtype}")

    @property
    def data(self) -> np.ndarray:
        """The highest-resolution level, ``(Y, X, 3)`` uint8."""
        return self.levels[0]

    @property
    def scale(self) -> tuple[float, float]:
        """Pixel size of ``levels[0]`` in µm as ``(y, x)``; ``(1.0, 1.0)`` (pixels) when ``mpp`` is unknown."""
        if self.mpp is None:
            return (1.0, 1.0)
        return (float(self.mpp), float(self.mpp))

    @property
    def is_multiscale(self) -> bool:
        return len(self.levels) > 1


def is_histology_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of :data:`HISTOLOGY_SUFFIXES` (case-insensitive)."""
    return str(path).lower().endswith(HISTOLOGY_SUFFIXES)


def read_histology(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> HistologyImage:
    """Read a PNG/JPEG/BMP/TIFF/SVS image as 8-bit RGB (see :mod:`.histology_rgb` for the conversion rules).

    The format is recognised from the file's content (TIFF magic bytes → ``tifffile``, anything else →
    Pillow), so a mis-named file still reads. For TIFF/SVS only the first series is read: the main image or
    pyramid, not an Aperio thumbnail, label or macro image. ``max_bytes`` bounds the uint8 RGB size of
    ``levels[0]``. Raises :class:`ImageReadError` (``"<file>: <problem>"``) for a missing, empty, unreadable or
    non-2D image.
    """
    if max_bytes < 3:
        raise ValueError(f"max_bytes must allow at least one RGB pixel (3 bytes), got {max_bytes}")
    path = require_input_file(path, "image", ImageReadError)  # a FIFO or device is never opened
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise ImageReadError(path, f"cannot be opened ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    if head in _TIFF_MAGIC:
        levels, mpp, downsamples = _read_tiff(path, max_bytes)
    else:
        levels, mpp, downsamples = _read_flat(path, max_bytes)
    return HistologyImage(levels=levels, name=_image_name(path), mpp=mpp, downsamples=downsamples, path=str(path))


def _image_name(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", *HISTOLOGY_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
