"""Read flat images (PNG, JPEG, BMP and anything else Pillow reads) as one ``(Y, X, 3)`` uint8 RGB level."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ImageReadError
from .histology_rgb import _intensity_range, _Pixels, _reduction_factor, _render


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
