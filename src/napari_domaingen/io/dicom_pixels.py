"""DICOM pixel data: stored type, transfer syntax and decoders, rescaled voxel arrays ``(columns, rows, slices)``.

Used for series of single-frame files and, frame by frame, for multi-frame files (:mod:`.dicom_multiframe`).

Intensities
    ``RescaleSlope``/``RescaleIntercept`` are applied per slice or frame (CT → Hounsfield units). The result stays an
    integer type when every slope and intercept is integral (``int16`` if the values fit, else ``int32``;
    the stored type when there is no rescale at all) and is ``float32`` otherwise. Modality LUT sequences and
    vendor-private scalings are not applied.

Compressed pixel data need a decoder plugin for pydicom; without one the error names the transfer syntax and the
packages to install (:data:`DECODER_HINT`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian

from .errors import VolumeReadError

DECODER_HINT = "install a decoder: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or gdcm)"


def _voxels(members: list[tuple[Path, Dataset]]) -> np.ndarray:
    """Stored pixels of single-frame files → rescaled ``(columns, rows, slices)`` array."""
    decoder_checked: set[str] = set()
    stored, rescale = [], []
    for path, ds in members:
        ts = _transfer_syntax(ds)
        if ts not in decoder_checked:
            _require_decoder(ts, path)
            decoder_checked.add(ts)
        stored.append(_pixels(ds, ts, path))
        rescale.append(_rescale(ds))
    return _stack_rescaled(stored, rescale)


def _stack_rescaled(stored: list[np.ndarray], rescale: list[tuple[float, float]]) -> np.ndarray:
    """Stored slices ``(rows, columns)`` each with its ``(slope, intercept)`` → rescaled ``(columns, rows, slices)``.

    Integer results stay integer (``int16`` when they fit, else ``int32``; the stored type without any rescale),
    fractional slopes or intercepts give ``float32``.
    """
    slopes = np.array([s for s, _ in rescale])
    intercepts = np.array([i for _, i in rescale])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        out = np.stack(stored, axis=-1)
    elif np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)):
        low = min(int(s.min()) * int(m) if m >= 0 else int(s.max()) * int(m) for s, m in zip(stored, slopes)) + int(
            intercepts.min()
        )
        high = max(int(s.max()) * int(m) if m >= 0 else int(s.min()) * int(m) for s, m in zip(stored, slopes)) + int(
            intercepts.max()
        )
        info16 = np.iinfo(np.int16)
        dtype = np.int16 if info16.min <= low and high <= info16.max else np.int32
        out = np.stack(
            [(s.astype(np.int64) * int(m) + int(b)).astype(dtype) for s, m, b in zip(stored, slopes, intercepts)],
            axis=-1,
        )
    else:
        out = np.stack(
            [(s.astype(np.float64) * m + b).astype(np.float32) for s, m, b in zip(stored, slopes, intercepts)],
            axis=-1,
        )
    return np.transpose(out, (1, 0, 2))  # (rows, columns, slices) → (i=column, j=row, k=slice)


def _require_decoder(ts: UID, path: Path) -> None:
    if not _is_compressed(ts):
        return
    try:
        available = pydicom.pixels.get_decoder(ts).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise VolumeReadError(path, f"pixel data are compressed with {ts.name}; {DECODER_HINT}")


def _pixels(ds: Dataset, ts: UID, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise VolumeReadError(path, "has no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types for undecodable or truncated pixel data
        if _is_compressed(ts):
            try:
                plugins = ", ".join(pydicom.pixels.get_decoder(ts).available_plugins) or "none"
            except NotImplementedError:
                plugins = "none"
            raise VolumeReadError(
                path,
                f"pixel data are compressed with {ts.name} and the installed decoder ({plugins}) failed "
                f"({type(exc).__name__}: {_short(exc)}); the file may be damaged, or {DECODER_HINT}",
            ) from exc
        raise VolumeReadError(path, f"pixel data cannot be read ({type(exc).__name__}: {_short(exc)})") from exc


def _rescale(ds: Dataset) -> tuple[float, float]:
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0, float(intercept) if intercept not in (None, "") else 0.0)


def _stored_dtype(ds: Dataset) -> str:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    kind = "float" if bits == 32 and "FloatPixelData" in ds else ("int" if signed else "uint")
    text = f"{kind}{max(8, bits)}"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return text if samples == 1 else f"{text} × {samples} ({ds.get('PhotometricInterpretation', '')})"


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(uid)) if uid else ImplicitVRLittleEndian


def _is_compressed(ts: UID) -> bool:
    try:
        return bool(ts.is_compressed)
    except ValueError:  # not a transfer syntax pydicom knows
        return False


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
