"""Shared test helpers: the real data in ../shared (tests skip cleanly when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MRI = SHARED / "data" / "mri"
HISTOLOGY = SHARED / "data" / "histology"
FIXTURES = SHARED / "fixtures"


def shared_file(*parts: str) -> Path:
    """Path under ../shared, or skip the test with a reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return path


def mri_files() -> list[Path]:
    return sorted(MRI.glob("*/*.nii.gz")) if MRI.is_dir() else []


@pytest.fixture(scope="session")
def anatomix_weights(tmp_path_factory) -> Path:
    """The reference fixture's state dict (random anatomix weights, the real key layout) as a ``.pth`` file."""
    import torch

    reference = FIXTURES / "anatomix_reference.pt"
    if not reference.is_file():
        pytest.skip(f"shared fixtures not available: {reference}")
    path = tmp_path_factory.mktemp("weights") / "anatomix.pth"
    torch.save(torch.load(reference, weights_only=True)["state_dict"], path)
    return path


@pytest.fixture
def fresh_feature_caches(monkeypatch):
    """No features or models left over from other tests."""
    from collections import OrderedDict

    from napari_domaingen.core import features

    features.FEATURE_CACHE.clear()
    monkeypatch.setattr(features, "_MODEL_CACHE", OrderedDict())
    yield
    features.FEATURE_CACHE.clear()
