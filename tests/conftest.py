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


@pytest.fixture(autouse=True)
def _own_settings(monkeypatch, tmp_path_factory):
    """Settings (e.g. the radiological/neurological view) read from and written to a folder of the test's own,
    never the user's configuration; no choice carried over from another test."""
    from napari_domaingen._napari import view

    monkeypatch.setenv(view.ENV_CONFIG_DIR, str(tmp_path_factory.mktemp("config")))
    monkeypatch.delenv(view.ENV_VIEW, raising=False)
    monkeypatch.setattr(view, "_session", {})


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
def offline(monkeypatch, tmp_path):
    """No weights on disk and no hub: registry names cannot be resolved."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline (test)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DOMAINGEN_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture
def fresh_feature_caches(monkeypatch):
    """No features or models left over from other tests."""
    from collections import OrderedDict

    from napari_domaingen.core import features

    features.FEATURE_CACHE.clear()
    monkeypatch.setattr(features, "_MODEL_CACHE", OrderedDict())
    yield
    features.FEATURE_CACHE.clear()


def tcga_tumour_region(half: int | tuple[int, int, int]):
    """The TCGA-DU-7294 T1 and its fused tumour labels (0 background, 1 and 2 tumour sub-regions; 240×240×155,
    1 mm) as display-order Volumes, and the slices of a region ``±half`` voxels around the tumour's centre.
    Skips the test when ../shared is absent."""
    import numpy as np

    from napari_domaingen.io.nifti import read_nifti

    folder = ("data", "mri", "tcga-du-7294")
    image = read_nifti(shared_file(*folder, "TCGA-DU-7294_t1_bet.nii.gz"))
    labels = read_nifti(shared_file(*folder, "tcga-du-7294_seg-fusion-simple.nii.gz"), as_label=True)
    halves = (half,) * 3 if isinstance(half, int) else half
    centre = [int(np.mean(axis)) for axis in np.nonzero(labels.data)]
    return image, labels, tuple(slice(c - h, c + h) for c, h in zip(centre, halves))


def tiny_erm_model(path: Path, class_names=("background", "core", "edema"), spacing=(1.0, 1.0, 1.0)) -> Path:
    """An untrained ERM segmentation model (base 4, 2 levels, 16³ windows, 3 classes): a real model file, fast."""
    import torch

    from napari_domaingen.core.maskgen import ModelSpec, save_model
    from napari_domaingen.models.segunet import SegUNet

    torch.manual_seed(0)
    spec = ModelSpec(
        unet={"in_channels": 1, "num_classes": 3, "base": 4, "levels": 2},
        crop=(16, 16, 16),
        label_values=(0, 1, 2),
        class_names=tuple(class_names),
        features=None,
        mask_rate=0.0,
        spacing=spacing,
    )
    return save_model(path, SegUNet(**spec.unet), spec)


from ._orthanc import orthanc, pacs_env  # noqa: E402, F401  (a real Orthanc for the DICOMweb tests)
