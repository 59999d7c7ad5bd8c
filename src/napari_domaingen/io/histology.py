"""Read 2D histology images (PNG, JPEG, BMP, TIFF, Aperio SVS) as 8-bit RGB, pyramids included.

Every image comes back as :class:`HistologyImage`: a list of ``(Y, X, 3)`` uint8 arrays, highest resolution
first (one array for a flat image, several for a pyramidal TIFF/SVS, ready for a napari multiscale layer),
with the pixel size in microns when the file states it.

Conversion to 8-bit RGB (the same rules for every format):

* **Grayscale** is repeated into three identical channels. TIFF ``MinIsWhite`` grayscale is inverted first,
  palette images are looked up in their colour map, CMYK is converted naively (``R = (1 - C)(1 - K)``).
* **Alpha** is composited on white: ``rgb * a + 255 * (1 - a)``. Opaque images (all alpha = 255, e.g. the
  RGBA tiles many tools write) are therefore unchanged: the alpha channel is simply dropped. Transparent
  padding shows as white, like an empty glass slide, rather than black.
* **Integers wider than 8 bits** (16-bit, 32-bit; negatives clipped to 0) are divided by the full range of
  their *effective bit depth*: ``2**b - 1`` with ``b = max(8, bits needed for the image's maximum)``. A 12-bit
  camera image stored as uint16 (max ≤ 4095) uses its 12-bit range and is not left almost black, a full
  16-bit image uses 65535, and a 16-bit file holding 8-bit values is not stretched. One divisor is used for all
  pyramid levels and all colour channels, so colour balance is kept.
* **Floats** within ``[0, 1]`` are multiplied by 255; other floats are min-max scaled over their finite
  values. NaN becomes 0. Booleans become 0/255.
* Pixels are returned as stored: a JPEG's EXIF orientation tag is not applied.

Size limit: an image whose 8-bit RGB form would exceed ``max_bytes`` is not loaded at full resolution. For a
pyramid the largest stored level that fits is the first level kept (the smaller ones follow). When no stored
level fits (a flat image, or a pyramid whose smallest level is still too big), the smallest one is reduced by
an integer factor ``k`` (mean of ``k × k`` blocks; large TIFF levels are decoded through a temporary
memory-mapped file so RAM use stays bounded). ``downsamples`` records the factor of each kept level relative
to the file's full resolution, and ``mpp`` is the pixel size of ``levels[0]``.

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageReadError

HISTOLOGY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".bmp")
DEFAULT_MAX_BYTES = 512 * 2**20
#: Resolution tags coarser than this (µm per pixel) are not a microscope's: e.g. the 72/300 dpi defaults that
#: image editors write. They are ignored (``mpp`` stays ``None``).
MAX_PLAUSIBLE_MPP = 50.0

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_STRIP_BYTES = 32 * 2**20  # float32 working memory per strip while converting / reducing
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


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
    """Read a PNG/JPEG/BMP/TIFF/SVS image as 8-bit RGB (see the module docstring for the conversion rules).

    The format is recognised from the file's content (TIFF magic bytes → ``tifffile``, anything else →
    Pillow), so a mis-named file still reads. For TIFF/SVS only the first series is read: the main image or
    pyramid, not an Aperio thumbnail, label or macro image. ``max_bytes`` bounds the uint8 RGB size of
    ``levels[0]``. Raises :class:`ImageReadError` (``"<file>: <problem>"``) for a missing, empty, unreadable or
    non-2D image.
    """
    if max_bytes < 3:
        raise ValueError(f"max_bytes must allow at least one RGB pixel (3 bytes), got {max_bytes}")
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    if not path.is_file():
        raise ImageReadError(path, "no such file")
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


# --------------------------------------------------------------------------------------------------------------
# Stored pixels → uint8 RGB


@dataclass
class _Pixels:
    """One level's stored pixels as ``(Y, X, C)`` (possibly a memmap) and how they map to RGB.

    ``mode``: ``gray``, ``gray+alpha``, ``rgb``, ``rgba``, ``cmyk`` or ``palette`` (``colormap`` (N, 3) uint8).
    """

    array: np.ndarray
    mode: str
    colormap: np.ndarray | None = None
    inverted: bool = False  # TIFF MinIsWhite
    premultiplied: bool = False  # associated alpha

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("gray+alpha", "rgba")

    @property
    def colour_channels(self) -> int:
        return {"gray": 1, "gray+alpha": 1, "rgb": 3, "rgba": 3, "cmyk": 4, "palette": 1}[self.mode]


def _row_strips(n_rows: int, row_bytes: int, multiple: int = 1):
    """``(start, stop)`` row ranges of about ``_STRIP_BYTES`` each, starting on multiples of ``multiple``."""
    rows = max(multiple, (_STRIP_BYTES // max(row_bytes, 1)) // multiple * multiple)
    for start in range(0, n_rows, rows):
        yield start, min(start + rows, n_rows)


def _intensity_range(pixels: _Pixels) -> tuple[float, float]:
    """``(low, high)`` of the colour channels mapped to ``[0, 255]`` (rules in the module docstring)."""
    array = pixels.array
    kind = array.dtype.kind
    if pixels.mode == "palette" or kind == "b":
        return 0.0, 1.0
    if kind == "u" and array.dtype.itemsize == 1:
        return 0.0, 255.0
    channels = pixels.colour_channels
    row_bytes = array.shape[1] * array.shape[2] * 4
    if kind in "iu":
        top = 0
        for start, stop in _row_strips(array.shape[0], row_bytes):
            strip = np.asarray(array[start:stop, :, :channels])
            if strip.size:
                top = max(top, int(strip.max()))
        bits = max(8, int(top).bit_length())
        bits = min(bits, array.dtype.itemsize * 8 - (1 if kind == "i" else 0))
        return 0.0, float(2**bits - 1)
    if kind == "f":
        low, high = math.inf, -math.inf
        for start, stop in _row_strips(array.shape[0], row_bytes):
            strip = np.asarray(array[start:stop, :, :channels], dtype=np.float64)
            finite = strip[np.isfinite(strip)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        if not math.isfinite(low):
            return 0.0, 1.0
        if low >= 0.0 and high <= 1.0:
            return 0.0, 1.0
        return low, (high if high > low else low + 1.0)
    raise TypeError(f"unsupported pixel type {array.dtype}")


def _alpha_max(dtype: np.dtype) -> float:
    if dtype.kind == "b":
        return 1.0
    if dtype.kind in "iu":
        return float(np.iinfo(dtype).max)
    return 1.0


def _strip_to_rgb(strip: np.ndarray, pixels: _Pixels, low: float, high: float) -> np.ndarray:
    """A ``(h, w, C)`` strip of stored pixels → ``(h, w, 3)`` float32 in ``[0, 255]``."""
    channels = pixels.colour_channels
    if pixels.mode == "palette":
        assert pixels.colormap is not None
        index = np.clip(strip[..., 0].astype(np.int64), 0, len(pixels.colormap) - 1)
        rgb = pixels.colormap[index].astype(np.float32)
    else:
        colour = strip[..., :channels].astype(np.float32)
        colour = np.nan_to_num(colour, nan=low, posinf=high, neginf=low)
        colour = np.clip((colour - np.float32(low)) * np.float32(255.0 / (high - low)), 0.0, 255.0)
        if pixels.inverted:
            colour = 255.0 - colour
        if pixels.mode == "cmyk":
            ink = colour / 255.0
            rgb = 255.0 * (1.0 - ink[..., :3]) * (1.0 - ink[..., 3:4])
        elif channels == 1:
            rgb = np.repeat(colour, 3, axis=2)
        else:
            rgb = colour
    if pixels.has_alpha:
        alpha = np.clip(strip[..., -1:].astype(np.float32) / np.float32(_alpha_max(strip.dtype)), 0.0, 1.0)
        if pixels.premultiplied:
            rgb = rgb + 255.0 * (1.0 - alpha)
        else:
            rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    return rgb.astype(np.float32, copy=False)


def _block_mean(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor × factor`` blocks (a partial last block is averaged over the pixels it has)."""
    if factor == 1:
        return rgb
    out = rgb
    for axis in (0, 1):
        n = out.shape[axis]
        starts = np.arange(0, n, factor)
        counts = np.diff(np.append(starts, n)).astype(np.float32)
        out = np.add.reduceat(out, starts, axis=axis)
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        out = out / counts.reshape(shape)
    return out


def _render(pixels: _Pixels, low: float, high: float, factor: int = 1) -> np.ndarray:
    """Stored pixels → ``(ceil(Y / factor), ceil(X / factor), 3)`` uint8 RGB."""
    array = pixels.array
    plain = pixels.mode in ("gray", "rgb") and not pixels.inverted and array.dtype == np.uint8
    if plain and factor == 1:
        if pixels.mode == "rgb":
            return np.array(array[..., :3], order="C", copy=isinstance(array, np.memmap) or None)
        return np.repeat(np.asarray(array[..., :1]), 3, axis=2)
    n_rows, n_cols = array.shape[:2]
    out = np.empty((-(-n_rows // factor), -(-n_cols // factor), 3), dtype=np.uint8)
    for start, stop in _row_strips(n_rows, n_cols * max(array.shape[2], 3) * 4, multiple=factor):
        rgb = _block_mean(_strip_to_rgb(np.asarray(array[start:stop]), pixels, low, high), factor)
        out[start // factor : start // factor + rgb.shape[0]] = np.rint(np.clip(rgb, 0.0, 255.0))
    return out


def _reduction_factor(shape: tuple[int, int], max_bytes: int) -> int:
    """Smallest integer ``k`` for which the ``ceil(Y/k) × ceil(X/k)`` uint8 RGB image fits in ``max_bytes``."""
    rows, cols = shape
    factor = max(1, int(math.sqrt(rows * cols * 3 / max_bytes)))
    while -(-rows // factor) * -(-cols // factor) * 3 > max_bytes:
        factor += 1
    return factor


# --------------------------------------------------------------------------------------------------------------
# Flat images: PNG, JPEG, BMP (and anything else Pillow reads)


def _read_flat(path: Path, max_bytes: int) -> tuple[list[np.ndarray], float | None, list[float]]:
    from PIL import Image, UnidentifiedImageError  # Pillow: a dependency of scikit-image and imageio

    try:
        with Image.open(path) as image:
            frames = int(getattr(image, "n_frames", 1) or 1)
            if frames > 1:
                raise ImageReadError(path, f"has {frames} frames; expected a single 2D image, not a stack or animation")
            image.load()
            pixels = _pillow_pixels(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image file that can be read (expected PNG, JPEG, BMP, TIFF or SVS)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            path, f"is too large to read as a flat image ({exc}); save it as a tiled pyramidal TIFF instead"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(
            path, f"image data cannot be read, the file may be truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    _check_2d(path, pixels.array)
    low, high = _intensity_range(pixels)
    factor = _reduction_factor(pixels.array.shape[:2], max_bytes)
    return [_render(pixels, low, high, factor)], None, [float(factor)]


def _pillow_pixels(image) -> _Pixels:
    mode = image.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    elif mode not in ("1", "L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "F", "I") and not mode.startswith("I;16"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
        mode = image.mode
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if mode in ("1", "L", "F", "I") or mode.startswith("I;16"):
        return _Pixels(array, "gray")
    if mode in ("LA", "La"):
        return _Pixels(array, "gray+alpha", premultiplied=mode == "La")
    if mode in ("RGBA", "RGBa"):
        return _Pixels(array, "rgba", premultiplied=mode == "RGBa")
    return _Pixels(array[..., :3], "rgb")


def _check_2d(path: Path, array: np.ndarray) -> None:
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(path, f"the image has zero size {tuple(array.shape[:2])}")


# --------------------------------------------------------------------------------------------------------------
# TIFF / SVS


def _read_tiff(path: Path, max_bytes: int) -> tuple[list[np.ndarray], float | None, list[float]]:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # TiffFileError, struct errors, ... for a damaged header
        raise ImageReadError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    with tif:
        try:
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
