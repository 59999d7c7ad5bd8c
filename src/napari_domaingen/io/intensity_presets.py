"""Display contrast limits from presets: fixed CT Hounsfield windows, MRI percentile clips, the full range.

The data are never changed; large volumes are sampled (at most 2M values).
"""

from __future__ import annotations

import math

import numpy as np

from .intensity import CT_WINDOWS

_CT_PRESETS = {"CT brain": "brain", "CT subdural": "subdural", "CT bone": "bone", "CT soft tissue": "soft tissue"}
_PERCENTILE_PRESETS = {"MRI 1–99 %": (1.0, 99.0), "MRI 0.5–99.5 %": (0.5, 99.5)}
PRESETS: tuple[str, ...] = ("full range", *_PERCENTILE_PRESETS, *_CT_PRESETS)
#: the contrast every volume opens with, however it is opened (File ▸ Open, Load volumes, the samples)
DEFAULT_PRESET = "MRI 1–99 %"
_MAX_SAMPLES = 2_000_000


def _ct_window(preset: str) -> tuple[float, float]:
    low, high = CT_WINDOWS[_CT_PRESETS[preset]]
    return float(low), float(high)


def _finite_values(data: np.ndarray, sample: bool = True) -> np.ndarray:
    """The finite values of ``data``, flat: a regular sample of at most 2M of them when ``sample``."""
    flat = np.asarray(data).reshape(-1)
    if sample and flat.size > _MAX_SAMPLES:
        flat = flat[:: int(math.ceil(flat.size / _MAX_SAMPLES))]
    return flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat


def contrast_limits_for(data: np.ndarray, preset: str) -> tuple[float, float]:
    """Display contrast limits ``(low, high)`` for a preset of :data:`PRESETS`; the data are not changed.

    CT presets are fixed Hounsfield windows; MRI presets are percentiles of the non-zero voxels (a regular
    sample of at most 2M voxels); ``"full range"`` is the finite min and max.
    """
    if preset in _CT_PRESETS:
        return _ct_window(preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown intensity preset {preset!r}; choose one of {', '.join(PRESETS)}")
    flat = _finite_values(data, sample=preset in _PERCENTILE_PRESETS)
    if preset in _PERCENTILE_PRESETS:
        nonzero = flat[flat != 0]
        values = nonzero if nonzero.size else flat
        if values.size == 0:
            return 0.0, 1.0
        low, high = (float(v) for v in np.percentile(values, _PERCENTILE_PRESETS[preset]))
    else:
        if flat.size == 0:
            return 0.0, 1.0
        low, high = float(flat.min()), float(flat.max())
    if high <= low:
        high = low + 1.0
    return low, high


#: real CT has air near −1000 HU; a volume whose darkest voxels are brighter than this holds no air in HU
_HU_AIR_CEILING = -500.0


def preset_problem(data: np.ndarray, preset: str, name: str = "the volume") -> str | None:
    """Why ``preset`` does not fit ``data`` (``None`` when it does): a CT preset is a Hounsfield-unit window, and
    data without any air-dark voxel (e.g. uint8 0…255) are not in HU, so the window would show nothing useful."""
    if preset not in _CT_PRESETS:
        return None
    flat = _finite_values(data)
    if flat.size == 0:
        return None
    low, high = float(flat.min()), float(flat.max())
    if low <= _HU_AIR_CEILING:
        return None
    window_low, window_high = _ct_window(preset)
    return (
        f"'{name}' holds {low:g} … {high:g} ({np.asarray(data).dtype}), not Hounsfield units (CT air is near "
        f"−1000 HU): the {preset} window ({window_low:g}–{window_high:g} HU) may show nothing useful; use an MRI "
        "preset or 'full range' for these data"
    )
