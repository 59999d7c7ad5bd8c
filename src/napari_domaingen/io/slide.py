"""Whole-slide images opened lazily: pyramidal TIFF/SVS and OME-Zarr as dask arrays that read nothing until used.

:func:`open_slide` returns a :class:`Slide`: ``levels``, a list of ``(Y, X, 3)`` uint8 dask arrays, highest
resolution first, and ``mpp``, the pixel size of level 0 in µm. Opening reads headers only (TIFF IFDs and tile
offsets, Zarr metadata); pixels are decoded when a region of a level is computed (a napari view, a swap block).

* **Pyramidal TIFF/SVS** (the first series, its levels as tifffile lists them: SubIFDs, reduced pages or Aperio
  levels): each level's tiles through tifffile's Zarr store (``aszarr``) → ``dask.array.from_zarr``, one chunk per
  stored tile or strip. The file stays open while the slide is in use (:meth:`Slide.close`).
* **OME-Zarr** (a folder; OME-NGFF 0.4 ``.zattrs`` or 0.5 ``zarr.json`` ``"ome"`` attributes): the datasets of the
  first ``multiscales`` entry, axes as named there (``c``/``y``/``x``, singleton ``t``/``z`` dropped), pixel size
  from the ``scale`` coordinate transformation and the axis ``unit`` (micrometer when none is given).
* **Other images** (PNG, JPEG, flat TIFF of another pixel type) are read whole by
  :func:`~napari_domaingen.io.histology.read_histology` when they fit ``max_eager_bytes`` (their RGB form), and
  wrapped in dask arrays; a larger one is refused with a message saying to store it as a tiled pyramid.

Pixel types read lazily: 8-bit RGB, RGBA (composited on white, associated or unassociated alpha) and grayscale
(MinIsWhite inverted, repeated into RGB) — every block is converted on its own, which is exact for these types.
Other pixel types (16-bit, float, palette, CMYK) need the whole image's range to be converted (see
:mod:`.histology_rgb`) and take the eager path above.

Checked when opening, each a :class:`~napari_domaingen.io.errors.ImageReadError` naming the file: a level whose
tiles reach beyond the end of the file (``level 2 (5000 × 5000 px) is truncated: …``), zero-size or non-2D
levels, channel layouts other than gray/RGB/RGBA, an OME-Zarr folder without ``multiscales`` metadata or whose
datasets are missing, not 2D or not uint8.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageReadError
from .histology import DEFAULT_MAX_BYTES, _image_name, read_histology
from .histology_tiff import _TIFF_MAGIC, _tiff_layout, _tiff_mpp
from .output_guard import require_input

__all__ = ["Slide", "is_ome_zarr_path", "open_lazy_tiff", "open_slide", "read_in_memory", "slide_levels_of"]

_UNIT_TO_UM = {
    "micrometer": 1.0,
    "micron": 1.0,
    "µm": 1.0,
    "um": 1.0,
    "nanometer": 1e-3,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
}


@dataclass
class Slide:
    """A lazily read 2D RGB image, possibly a pyramid.

    ``levels``: ``(Y, X, 3)`` uint8 dask arrays, highest resolution first; ``mpp``: µm per pixel of level 0
    (``None`` when the file does not say); ``downsamples``: each level's factor relative to level 0; ``lazy``:
    whether pixels are read on demand (``False``: read whole when opened, see the module docstring).
    """

    levels: list[Any]
    name: str
    path: str
    mpp: float | None = None
    downsamples: list[float] = field(default_factory=lambda: [1.0])
    lazy: bool = True
    _handle: Any = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(Y, X)`` of level 0, px."""
        return int(self.levels[0].shape[0]), int(self.levels[0].shape[1])

    @property
    def scale(self) -> tuple[float, float]:
        """Pixel size of level 0 in µm as ``(y, x)``; ``(1.0, 1.0)`` (pixels) when ``mpp`` is unknown."""
        return (1.0, 1.0) if self.mpp is None else (float(self.mpp), float(self.mpp))

    @property
    def nbytes(self) -> int:
        """Bytes of level 0 as 8-bit RGB."""
        return self.shape[0] * self.shape[1] * 3

    def close(self) -> None:
        """Close the underlying file (TIFF); the dask arrays cannot be computed afterwards."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def is_ome_zarr_path(path: str | os.PathLike) -> bool:
    """True for a folder whose name ends in ``.zarr`` (``.ome.zarr`` included)."""
    return str(path).rstrip("/\\").lower().endswith(".zarr")


def open_slide(path: str | os.PathLike, max_eager_bytes: int = DEFAULT_MAX_BYTES) -> Slide:
    """Open a pyramidal TIFF/SVS or an OME-Zarr lazily (module docstring); other images are read whole when their
    RGB form fits ``max_eager_bytes``. Raises :class:`ImageReadError` (``"<file>: <problem>"``)."""
    path = require_input(path, "slide", ImageReadError)  # a FIFO or device is refused without being opened
    if path.is_dir():
        if not is_ome_zarr_path(path) and not _has_zarr_metadata(path):
            raise ImageReadError(path, "is a folder but not an OME-Zarr image (no zarr.json or .zattrs in it)")
        return _open_ome_zarr(path)
    size = path.stat().st_size
    if size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head in _TIFF_MAGIC:
        slide = _open_tiff(path, size)
        if slide is not None:
            return slide
    return _eager(path, max_eager_bytes)


def open_lazy_tiff(path: str | os.PathLike) -> Slide | None:
    """The lazy slide of a TIFF/SVS file, or ``None`` when it is not a TIFF or its pixel type is read eagerly
    (module docstring). Raises :class:`ImageReadError` for a damaged or truncated TIFF."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return None
    return _open_tiff(path, size) if head in _TIFF_MAGIC else None


def read_in_memory(path: str | os.PathLike, max_bytes: int) -> tuple[np.ndarray, float]:
    """``(image, downsample)``: the largest level of any image this module or
    :func:`~napari_domaingen.io.histology.read_histology` opens whose 8-bit RGB form fits ``max_bytes`` (or the
    smallest, reduced until it fits), as a ``(Y, X, 3)`` uint8 array, with its factor relative to full resolution.
    For a style image: its look, not every pixel, is needed."""
    path = Path(path)
    if not path.is_dir():
        image = read_histology(path, max_bytes=max_bytes)
        return image.data, float(image.downsamples[0])
    slide = open_slide(path)
    fitting = [i for i, level in enumerate(slide.levels) if level.shape[0] * level.shape[1] * 3 <= max_bytes]
    index = fitting[0] if fitting else len(slide.levels) - 1
    level = slide.levels[index]
    factor = 1
    while level.shape[0] // factor * (level.shape[1] // factor) * 3 > max_bytes and factor < min(level.shape[:2]):
        factor += 1
    data = np.asarray(level[::factor, ::factor].compute())
    return data, float(slide.downsamples[index] * factor)


def slide_levels_of(data: Any) -> list[Any]:
    """The levels of napari multiscale data (or ``[data]`` for one array)."""
    if isinstance(data, (list, tuple)) or type(data).__name__ == "MultiScaleData":
        return list(data)
    return [data]


# ------------------------------------------------------------------------------------------------- TIFF / SVS


def _open_tiff(path: Path, size: int) -> Slide | None:
    """The lazy slide of a TIFF, or ``None`` when its pixel type needs the eager reader."""
    import tifffile

    from .histology_tiff import quiet_tifffile

    try:
        with quiet_tifffile():  # our message below says what tifffile would log (e.g. "corrupted tag list")
            tif = tifffile.TiffFile(path)
            series = tif.series[0] if tif.series else None
            levels = list(series.levels) if series is not None else []
    except Exception as exc:  # a damaged or cut header
        raise ImageReadError(
            path, f"not a readable TIFF file, it may be truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        if not levels:
            raise ImageReadError(path, "the TIFF file contains no readable image (it may be truncated or corrupt)")
        layouts = [_tiff_layout(path, level) for level in levels]
        for index, (level, layout) in enumerate(zip(levels, layouts)):
            _check_complete(path, index, level, layout[0], size)
        if not all(_lazy_type(level, layout) for level, layout in zip(levels, layouts)):
            tif.close()
            return None
        arrays = [_tiff_level(path, series, index, layout) for index, layout in enumerate(layouts)]
        mpp = _tiff_mpp(tif, series)
    except BaseException:
        tif.close()
        raise
    full = arrays[0].shape
    downsamples = [float(np.mean([full[0] / a.shape[0], full[1] / a.shape[1]])) for a in arrays]
    return Slide(arrays, _image_name(path), str(path), mpp, downsamples, lazy=True, _handle=tif)


def _check_complete(path: Path, index: int, level: Any, shape: tuple[int, int], size: int) -> None:
    """Raise when a level's tiles/strips (offsets + byte counts) reach beyond the end of the file."""
    end = 0
    for page in level.pages:
        if page is None:
            continue
        offsets = np.asarray(getattr(page, "dataoffsets", ()) or (), dtype=np.int64)
        counts = np.asarray(getattr(page, "databytecounts", ()) or (), dtype=np.int64)
        if offsets.size and counts.size:
            used = counts > 0
            if used.any():
                end = max(end, int((offsets[used] + counts[used]).max()))
    if end > size:
        raise ImageReadError(
            path,
            f"level {index} ({shape[0]} × {shape[1]} px) is truncated: its tiles end at byte {end} but the file "
            f"has {size} bytes",
        )


def _lazy_type(level: Any, layout: tuple) -> bool:
    _, mode, _, _ = layout
    return np.dtype(level.dtype) == np.uint8 and mode in ("gray", "rgb", "rgba")


def _tiff_level(path: Path, series: Any, index: int, layout: tuple) -> Any:
    """``(Y, X, 3)`` uint8 dask array over the tiles of level ``index`` of a tifffile series."""
    import dask.array as da
    import zarr
    from tifffile import PHOTOMETRIC

    (rows, cols), mode, channels, first = layout
    level = series.levels[index]
    try:
        stored = zarr.open(series.aszarr(level=index), mode="r")
        if isinstance(stored, zarr.Group):  # tifffile gives a multiscale group for some layouts
            stored = stored[str(index)]
        array = da.from_zarr(stored)
    except Exception as exc:
        raise ImageReadError(path, f"its tiles cannot be read lazily ({type(exc).__name__}: {exc})") from exc
    array = array.reshape((channels, rows, cols) if first else (rows, cols, channels))
    if first:
        array = array.transpose(1, 2, 0)
    page = level.keyframe
    if mode == "gray":
        if page.photometric == PHOTOMETRIC.MINISWHITE:
            array = 255 - array
        return da.repeat(array, 3, axis=2)
    if mode == "rgba":
        premultiplied = bool(tuple(page.extrasamples)) and int(page.extrasamples[0]) == 1
        return array.map_blocks(_on_white, premultiplied, chunks=(*array.chunks[:2], (3,)), dtype=np.uint8)
    return array


def _on_white(block: np.ndarray, premultiplied: bool) -> np.ndarray:
    """RGBA uint8 → RGB uint8 composited on white (``rgb·a + 255·(1 − a)``, ``rgb + 255·(1 − a)`` when associated)."""
    alpha = block[..., 3:4].astype(np.float32) / 255.0
    colour = block[..., :3].astype(np.float32)
    out = colour + 255.0 * (1.0 - alpha) if premultiplied else colour * alpha + 255.0 * (1.0 - alpha)
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


def _eager(path: Path, max_eager_bytes: int) -> Slide:
    """Read an image whole (its RGB form must fit ``max_eager_bytes``) and wrap its levels in dask arrays."""
    import dask.array as da

    image = read_histology(path, max_bytes=max_eager_bytes)
    if image.downsamples[0] != 1:
        raise ImageReadError(
            path,
            f"is too large to read whole at full resolution (more than {max_eager_bytes / 2**20:.0f} MiB as 8-bit "
            "RGB) and is not a tiled 8-bit pyramid that can be read lazily: store it as a tiled pyramidal TIFF or "
            "an OME-Zarr",
        )
    levels = [da.from_array(level, chunks=(1024, 1024, 3)) for level in image.levels]
    return Slide(levels, image.name, str(path), image.mpp, list(image.downsamples), lazy=False)


# ------------------------------------------------------------------------------------------------- OME-Zarr


def _has_zarr_metadata(path: Path) -> bool:
    return any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))


def _multiscales(path: Path) -> tuple[Any, dict]:
    """The zarr group and its first ``multiscales`` entry (OME-NGFF 0.4 or 0.5)."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attributes = dict(group.attrs)
    except Exception as exc:
        raise ImageReadError(path, f"is not a readable Zarr group ({type(exc).__name__}: {exc})") from exc
    ome = attributes.get("ome", attributes)
    entries = ome.get("multiscales") if isinstance(ome, dict) else None
    if not entries or not isinstance(entries, list) or not entries[0].get("datasets"):
        raise ImageReadError(
            path, "has no OME-Zarr 'multiscales' metadata with datasets: not an OME-Zarr image (OME-NGFF 0.4/0.5)"
        )
    return group, entries[0]


def _open_ome_zarr(path: Path) -> Slide:
    import dask.array as da

    group, entry = _multiscales(path)
    axes = [a.get("name") if isinstance(a, dict) else str(a) for a in entry.get("axes", [])]
    units = {a.get("name"): a.get("unit") for a in entry.get("axes", []) if isinstance(a, dict)}
    levels, scales = [], []
    for index, dataset in enumerate(entry["datasets"]):
        name = str(dataset.get("path"))
        try:
            array = group[name]
        except Exception:
            raise ImageReadError(path, f"level {index}: its dataset '{name}' is missing") from None
        names = axes or (["y", "x", "c"] if array.ndim == 3 else ["y", "x"])[: array.ndim]
        if len(names) != array.ndim or "y" not in names or "x" not in names:
            raise ImageReadError(
                path, f"level {index}: shape {tuple(array.shape)} does not match the axes {names}; expected y and x"
            )
        if any(n == 0 for n in array.shape):
            raise ImageReadError(path, f"level {index}: the image has zero size {tuple(array.shape)}")
        if np.dtype(array.dtype) != np.uint8:
            raise ImageReadError(
                path, f"level {index} holds {array.dtype} values; only 8-bit (uint8) OME-Zarr images are read"
            )
        lazy = da.from_zarr(array)
        keep = [n for n in names if n in ("y", "x", "c")]
        extra = [(i, n) for i, n in enumerate(names) if n not in keep]
        if any(array.shape[i] != 1 for i, _ in extra):
            raise ImageReadError(
                path, f"has axes {names} of shape {tuple(array.shape)}; expected one 2D image (y, x and channels)"
            )
        lazy = lazy[tuple(0 if n not in keep else slice(None) for n in names)]
        order = [keep.index(n) for n in ("y", "x", "c") if n in keep]
        lazy = lazy.transpose(order) if "c" in keep else lazy.transpose(order)[..., None]
        channels = lazy.shape[2]
        if channels == 1:
            lazy = da.repeat(lazy, 3, axis=2)
        elif channels == 4:
            lazy = lazy.map_blocks(_on_white, False, chunks=(*lazy.chunks[:2], (3,)), dtype=np.uint8)
        elif channels != 3:
            raise ImageReadError(path, f"level {index} has {channels} channels; expected 1, 3 (RGB) or 4 (RGBA)")
        if lazy.chunks[2] != (3,):
            lazy = lazy.rechunk({2: 3})
        levels.append(lazy)
        scales.append(_dataset_scale(dataset, entry, names))
    full = levels[0].shape
    downsamples = [float(np.mean([full[0] / a.shape[0], full[1] / a.shape[1]])) for a in levels]
    mpp = None
    if scales[0] is not None:
        factor = _UNIT_TO_UM.get(str(units.get("x") or "micrometer").lower())
        value = scales[0][names.index("x")] if factor is not None else None
        mpp = None if value is None or not 0 < value * factor < 1e6 else float(value * factor)
    name = path.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Slide(levels, name, str(path), mpp, downsamples, lazy=True)


def _dataset_scale(dataset: dict, entry: dict, names: list[str]) -> list[float] | None:
    """The dataset's ``scale`` transformation times the multiscale-wide one, or ``None``."""
    scale = np.ones(len(names))
    found = False
    for transforms in (dataset.get("coordinateTransformations"), entry.get("coordinateTransformations")):
        for transform in transforms or []:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == len(names):
                scale *= np.asarray(transform["scale"], dtype=float)
                found = True
    return [float(s) for s in scale] if found else None
