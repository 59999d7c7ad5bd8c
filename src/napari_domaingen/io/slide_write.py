"""Writing a whole-slide RGB image block by block: a multiscale OME-Zarr or a pyramidal OME-TIFF, bounded memory.

:class:`SlideWriter` takes the full-resolution image in blocks (:meth:`SlideWriter.write`), then
:meth:`SlideWriter.finish` builds the lower levels by 2 × 2 means, block by block from the level above, until the
longest side is at most :data:`SMALLEST_SIDE` px, writes the metadata and moves the result into place.

* **OME-Zarr** (``.zarr``, ``.ome.zarr``): OME-NGFF 0.5 (Zarr v3), one group with arrays ``0``, ``1``, … of shape
  ``(3, Y, X)`` uint8 (axes ``c``, ``y``, ``x``, also the arrays' ``dimension_names``: the spec puts channels
  before space), chunks ``(3, 512, 512)``,
  zstd-compressed, a ``scale`` transformation per level in micrometres (``mpp · 2^level``; pixels when ``mpp``
  is unknown, then the axes carry no unit) and ``omero`` channel colours red/green/blue.
* **OME-TIFF** (``.ome.tif``, ``.ome.tiff``): BigTIFF, 512 px tiles, deflate (lossless), the lower levels as
  SubIFDs, OME-XML ``PhysicalSizeX/Y`` in µm and the resolution tags of every level. It is written from the Zarr
  pyramid (built in the temporary folder first), a row of tiles at a time.

Atomic like every file the plugin writes (:mod:`.atomic`): everything goes into a hidden temporary folder beside
the output, which is renamed to the output name only when complete; :meth:`SlideWriter.abort` (cancel, error)
removes it and leaves any existing output untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Cancelled, Progress
from .atomic import default_file_mode

__all__ = ["AXES", "CHUNK", "SMALLEST_SIDE", "SlideWriter", "slide_output_kind"]

CHUNK = 512  # px, zarr chunk and TIFF tile side
SMALLEST_SIDE = 1024  # px: the pyramid stops at the first level whose longest side is at most this
#: the axes of every OME-Zarr level (its Zarr v3 ``dimension_names``, as OME-NGFF 0.5 requires)
AXES = ("c", "y", "x")
_ZARR_SUFFIXES = (".ome.zarr", ".zarr")
_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff")


def slide_output_kind(path: str | os.PathLike) -> str | None:
    """``"zarr"`` or ``"tiff"`` for a whole-slide output name (see the module docstring), else ``None``."""
    name = str(path).rstrip("/\\").lower()
    if name.endswith(_ZARR_SUFFIXES):
        return "zarr"
    if name.endswith(_TIFF_SUFFIXES):
        return "tiff"
    return None


def level_shapes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """``(Y, X)`` of every level: level 0, then halved (rounded up) until the longest side ≤ :data:`SMALLEST_SIDE`."""
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > SMALLEST_SIDE:
        shapes.append(tuple(-(-n // 2) for n in shapes[-1]))
    return shapes  # type: ignore[return-value]


class SlideWriter:
    """Write a ``(Y, X, 3)`` uint8 image given in blocks to ``path`` (module docstring).

    ``mpp``: µm per pixel of the full resolution (``None``: unknown); ``name``: the image name in the metadata.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int], mpp: float | None, name: str = "") -> None:
        import zarr

        self.path = Path(path)
        self.kind = slide_output_kind(self.path)
        if self.kind is None:
            raise ValueError(f"{self.path}: a slide output name must end in .ome.zarr, .zarr, .ome.tif or .ome.tiff")
        self.shape = (int(shape[0]), int(shape[1]))
        self.mpp = mpp
        self.name = name or self.path.name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.store = self.tmp if self.kind == "zarr" else self.tmp / "pyramid.zarr"
        self.shapes = level_shapes(self.shape)
        try:
            self.group = zarr.open_group(str(self.store), mode="w", zarr_format=3)
            self.arrays = [
                self.group.create_array(
                    str(k),
                    shape=(3, *s),
                    chunks=(3, min(CHUNK, s[0]), min(CHUNK, s[1])),
                    dtype="uint8",
                    dimension_names=AXES,
                )
                for k, s in enumerate(self.shapes)
            ]
        except BaseException:
            self.abort()
            raise

    def write(self, y: int, x: int, rgb: np.ndarray) -> None:
        """Store a ``(h, w, 3)`` uint8 block of the full resolution at ``(y, x)``."""
        h, w = rgb.shape[:2]
        self.arrays[0][:, y : y + h, x : x + w] = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))

    def finish(self, cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, Path]:
        """Build the lower levels, write the metadata and move the output into place (a job: progress per level;
        ``fraction`` 0…1 of this part). On cancel or error the temporary folder is removed."""
        try:
            for k in range(1, len(self.shapes)):
                _halve(self.arrays[k - 1], self.arrays[k], cancel)
                yield {
                    "stage": "pyramid",
                    "fraction": k / len(self.shapes),
                    "message": f"pyramid level {k} ({self.shapes[k][0]} × {self.shapes[k][1]} px)",
                }
            self._metadata()
            if self.kind == "tiff":
                yield {"stage": "pyramid", "fraction": 1.0, "message": "writing the OME-TIFF …"}
                self._write_tiff(self.tmp / "out.ome.tif", cancel)
                shutil.rmtree(self.store)
                os.replace(self.tmp / "out.ome.tif", self.path)
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self._move_into_place()
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Remove everything written so far (the output path is left as it was)."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ internals

    def _scale(self, level: int) -> list[float]:
        step = (self.mpp if self.mpp is not None else 1.0) * 2**level
        return [1.0, step, step]

    def _metadata(self) -> None:
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_multiscales_metadata

        unit = {"unit": "micrometer"} if self.mpp is not None else {}
        axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", **unit}]
        axes.append({"name": "x", "type": "space", **unit})
        datasets = [
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": self._scale(k)}]}
            for k in range(len(self.shapes))
        ]
        window = {"min": 0, "max": 255, "start": 0, "end": 255}
        omero = {
            "channels": [
                {"label": label, "color": color, "window": window, "active": True}
                for label, color in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))
            ],
            "rdefs": {"model": "color"},
        }
        write_multiscales_metadata(
            self.group, datasets, fmt=FormatV05(), axes=axes, name=self.name, metadata={"omero": omero}
        )

    def _move_into_place(self) -> None:
        old = None
        if self.path.exists() or self.path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            os.replace(self.path, old / "previous")
        mode = default_file_mode()
        os.chmod(self.tmp, mode | (mode & 0o444) >> 2)  # a folder as mkdir makes it (mkdtemp gives 0700)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _write_tiff(self, target: Path, cancel: Callable[[], bool] | None) -> None:
        import tifffile

        options: dict[str, Any] = {
            "photometric": "rgb",
            "tile": (CHUNK, CHUNK),
            "compression": "zlib",
            "dtype": np.uint8,
        }
        metadata: dict[str, Any] = {"axes": "YXS", "Name": self.name}
        if self.mpp is not None:
            metadata.update(
                PhysicalSizeX=self.mpp, PhysicalSizeXUnit="µm", PhysicalSizeY=self.mpp, PhysicalSizeYUnit="µm"
            )
        with tifffile.TiffWriter(target, bigtiff=True, ome=True) as tif:
            for k, shape in enumerate(self.shapes):
                extra: dict[str, Any] = {"subifds": len(self.shapes) - 1, "metadata": metadata} if k == 0 else {}
                if k > 0:
                    extra["subfiletype"] = 1
                if self.mpp is not None:
                    pixels_per_cm = 1e4 / (self.mpp * 2**k)
                    extra.update(resolution=(pixels_per_cm, pixels_per_cm), resolutionunit="CENTIMETER")
                tif.write(_tiles(self.arrays[k], cancel), shape=(*shape, 3), **options, **extra)


def _halve(source: Any, target: Any, cancel: Callable[[], bool] | None, block: int = 4096) -> None:
    """``target`` ``(3, ⌈Y/2⌉, ⌈X/2⌉)`` = the 2 × 2 means of ``source`` ``(3, Y, X)`` rounded half to even (the last
    odd row/column repeated), computed ``block`` source px at a time in integers (sums of four uint8 in uint16)."""
    _, height, width = source.shape
    for y in range(0, height, block):
        for x in range(0, width, block):
            if cancel is not None and cancel():
                raise Cancelled("cancelled while building the pyramid")
            part = np.asarray(source[:, y : y + block, x : x + block])
            pad = ((0, 0), (0, part.shape[1] % 2), (0, part.shape[2] % 2))
            if any(p[1] for p in pad):
                part = np.pad(part, pad, mode="edge")
            total = part[:, 0::2, 0::2].astype(np.uint16)
            total += part[:, 1::2, 0::2]
            total += part[:, 0::2, 1::2]
            total += part[:, 1::2, 1::2]
            means = total >> 2
            remainder = total & 3  # the mean's quarters: round up above a half, and at a half to the even value
            means += (remainder > 2) | ((remainder == 2) & (means & 1).astype(bool))
            h, w = means.shape[1:]
            target[:, y // 2 : y // 2 + h, x // 2 : x // 2 + w] = means.astype(np.uint8)


def _tiles(array: Any, cancel: Callable[[], bool] | None) -> Iterator[np.ndarray]:
    """``(CHUNK, CHUNK, 3)`` uint8 tiles of a ``(3, Y, X)`` array in row-major order, edges padded with zeros,
    read a row of tiles at a time."""
    _, height, width = array.shape
    for y in range(0, height, CHUNK):
        if cancel is not None and cancel():
            raise Cancelled("cancelled while writing the OME-TIFF")
        row = np.moveaxis(np.asarray(array[:, y : y + CHUNK, :]), 0, -1)
        for x in range(0, width, CHUNK):
            tile = row[:, x : x + CHUNK]
            if tile.shape[:2] != (CHUNK, CHUNK):
                tile = np.pad(tile, ((0, CHUNK - tile.shape[0]), (0, CHUNK - tile.shape[1]), (0, 0)))
            yield np.ascontiguousarray(tile)
