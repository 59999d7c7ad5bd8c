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
