"""Device choice."""

from __future__ import annotations

import pytest
import torch

from napari_domaingen.core.device import resolve_device


def test_resolve_device_checks_explicit_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
