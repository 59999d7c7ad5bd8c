"""Read TIFF/SVS images (first series, pyramid levels included) as ``(Y, X, 3)`` uint8 RGB levels, with the
pixel size in µm from Aperio, OME, ImageJ or resolution tags."""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import ImageReadError
from .histology_rgb import _intensity_range, _Pixels, _reduction_factor, _render

#: Resolution tags coarser than this (µm per pixel) are not a microscope's: e.g. the 72/300 dpi defaults that
#: image editors write. They are ignored (``mpp`` stays ``None``).
MAX_PLAUSIBLE_MPP = 50.0

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """tifffile's own log lines (e.g. ``generic series raised TiffFileError('corrupted tag list …')``) held back
    while we read headers and give our own message about the same problem."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_tiff(path: Path, max_bytes: int) -> tuple[list[np.ndarray], float | None, list[float]]:
    import tifffile

    try:
        with quiet_tifffile():
            tif = tifffile.TiffFile(path)
    except Exception as exc:  # TiffFileError, struct errors, ... for a damaged header
        raise ImageReadError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    with tif:
        try:
            with quiet_tifffile():
                series = tif.series[0] if tif.series else None
        except Exception as exc:
            raise ImageReadError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
        if series is None or not series.levels:
            raise ImageReadError(path, "the TIFF file contains no readable image (it may be truncated or corrupt)")
        levels = list(series.levels)
        layouts = [_tiff_layout(path, level) for level in levels]
        shapes = [layout[0] for layout in layouts]
        full = shapes[0]
        fitting = [i for i, (rows, cols) in enumerate(shapes) if rows * cols * 3 <= max_bytes]
        if fitting:
            chosen, factor = list(range(fitting[0], len(levels))), 1
        else:
            chosen = [len(levels) - 1]
            factor = _reduction_factor(shapes[chosen[0]], max_bytes)
        pixel_levels = [_tiff_pixels(path, levels[i], layouts[i], max_bytes) for i in chosen]
        low, high = _intensity_range(pixel_levels[0])
        rendered = [_render(pixels, low, high, factor if n == 0 else 1) for n, pixels in enumerate(pixel_levels)]
        downsamples = [
            float(np.mean([full[0] / shapes[i][0], full[1] / shapes[i][1]])) * (factor if n == 0 else 1)
            for n, i in enumerate(chosen)
        ]
        base_mpp = _tiff_mpp(tif, series)
    mpp = None if base_mpp is None else base_mpp * downsamples[0]
    return rendered, mpp, downsamples


def _tiff_layout(path: Path, level) -> tuple[tuple[int, int], str, int, bool]:
    """``((Y, X), mode, channels, channels_first)`` of a tifffile series level, or a clear error."""
    from tifffile import PHOTOMETRIC

    shape, axes = tuple(level.shape), str(level.axes)
    if any(n == 0 for n in shape):
        raise ImageReadError(path, f"the image has zero size {shape} (axes {axes})")
    kept = [(axis, n) for axis, n in zip(axes, shape) if n != 1 or axis in "YX"]
    names = "".join(axis for axis, _ in kept)
    if names == "YX":
        channels, first = 1, False
    elif names in ("YXS", "YXC"):
        channels, first = kept[-1][1], False
    elif names in ("SYX", "CYX"):
        channels, first = kept[0][1], True
    else:
        raise ImageReadError(
            path,
            f"has shape {shape} (axes {axes}); expected one 2D grayscale or RGB image, "
            "not a stack, time series or multi-channel volume",
        )
    rows, cols = (n for axis, n in kept if axis in "YX")
    page = level.keyframe
    photometric = page.photometric
    if photometric == PHOTOMETRIC.PALETTE and channels == 1:
        mode = "palette"
    elif photometric == PHOTOMETRIC.SEPARATED and channels == 4:
        mode = "cmyk"
    elif channels == 1:
        mode = "gray"
    elif channels == 2 and tuple(int(e) for e in page.extrasamples) in ((1,), (2,)):
        mode = "gray+alpha"  # extra sample declared as (associated or unassociated) alpha
    elif channels == 3:
        mode = "rgb"
    elif channels == 4:
        mode = "rgba"
    else:
        raise ImageReadError(
            path, f"has {channels} channels (shape {shape}, axes {axes}); expected 1 (grayscale), 3 (RGB) or 4 (RGBA)"
        )
    if photometric in (PHOTOMETRIC.CIELAB, PHOTOMETRIC.ICCLAB, PHOTOMETRIC.ITULAB, PHOTOMETRIC.LOGLUV):
        raise ImageReadError(path, f"uses the {photometric.name} colour space, which is not supported")
    return (rows, cols), mode, channels, first


def _tiff_pixels(path: Path, level, layout, max_bytes: int) -> _Pixels:
    from tifffile import PHOTOMETRIC

    (rows, cols), mode, channels, first = layout
    raw_bytes = int(np.prod(level.shape)) * np.dtype(level.dtype).itemsize
    try:
        array = level.asarray(out="memmap" if raw_bytes > max_bytes else None)
    except Exception as exc:
        if "imagecodecs" in str(exc):
            raise ImageReadError(
                path,
                f"its tiles are {_compression_name(level)}-compressed, and decoding them needs the 'imagecodecs' "
                "package (pip install imagecodecs)",
            ) from exc
        raise ImageReadError(
            path, f"image data cannot be decoded, the file may be truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    array = array.reshape((channels, rows, cols) if first else (rows, cols, channels))
    if first:
        array = np.moveaxis(array, 0, -1)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    page = level.keyframe
    colormap = None
    if mode == "palette":
        colormap = _palette(path, page)
    extrasamples = tuple(page.extrasamples)
    return _Pixels(
        array,
        mode,
        colormap=colormap,
        inverted=page.photometric == PHOTOMETRIC.MINISWHITE and mode in ("gray", "gray+alpha"),
        premultiplied=bool(extrasamples) and int(extrasamples[0]) == 1,
    )


def _palette(path: Path, page) -> np.ndarray:
    colormap = page.colormap
    if colormap is None:
        raise ImageReadError(path, "is a palette image without a colour map")
    colormap = np.asarray(colormap, dtype=np.float64)
    if colormap.ndim == 1:  # grayscale colour map
        colormap = np.stack([colormap] * 3)
    if colormap.max() > 255:
        colormap = colormap / 65535.0 * 255.0
    return np.rint(np.clip(colormap.T, 0, 255)).astype(np.uint8)


def _compression_name(level) -> str:
    compression = level.keyframe.compression
    return getattr(compression, "name", str(compression))


def _tiff_mpp(tif, series) -> float | None:
    """Microns per pixel of the series' full resolution: Aperio ``MPP``, OME ``PhysicalSizeX``, ImageJ or tags."""
    page = series.keyframe
    description = page.description or ""
    if "aperio" in description.lower():
        match = re.search(r"\|\s*MPP\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", description)
        if match:
            return _plausible(float(match.group(1)))
    if tif.is_ome and tif.ome_metadata:
        match = re.search(r'PhysicalSizeX="([^"]+)"', tif.ome_metadata)
        if match:
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
            factor = _UNIT_TO_UM.get(unit.group(1) if unit else "µm")
            try:
                value = float(match.group(1))
            except ValueError:
                value = None
            if factor is not None and value is not None:
                return _plausible(value * factor)
    try:
        x_resolution = float(page.resolution[0])
        unit = int(page.resolutionunit)
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
    if x_resolution <= 0:
        return None
    if unit == 1 and tif.is_imagej:  # ImageJ: pixels per `unit` with the unit in its metadata
        imagej_unit = str((tif.imagej_metadata or {}).get("unit", "")).replace("\\u00B5", "µ")
        factor = _UNIT_TO_UM.get(imagej_unit)
        return None if factor is None else _plausible(factor / x_resolution)
    if unit == 2:  # inch
        return _plausible(25400.0 / x_resolution)
    if unit == 3:  # centimetre
        return _plausible(10000.0 / x_resolution)
    return None


def _plausible(mpp: float) -> float | None:
    return mpp if math.isfinite(mpp) and 0.0 < mpp <= MAX_PLAUSIBLE_MPP else None
