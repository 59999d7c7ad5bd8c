"""Intensity conventions shared by readers, presets and models (no torch, no Qt)."""

from __future__ import annotations

import numpy as np

CT_WINDOWS: dict[str, tuple[float, float]] = {
    # Hounsfield-unit windows (low, high), clipped before min-max scaling
    "brain": (0.0, 80.0),
    "subdural": (-20.0, 180.0),
    "soft tissue": (-160.0, 240.0),
    "bone": (-800.0, 2000.0),
    "full": (-1024.0, 3071.0),
}


def label_dtype(top: int) -> type:
    """The smallest unsigned integer type that holds label values up to ``top``."""
    return np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
