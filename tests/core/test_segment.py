"""Segmenting with a trained checkpoint: labels on the image grid, NIfTI with the image's affine, feature modes,
ablation, probabilities, extractor checks."""

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_domaingen.core.maskgen import ModelCompatibilityError
from napari_domaingen.core.maskgen_training import TrainSettings, train
from napari_domaingen.core.segment import SegmentSettings, segment, spacing_warning
from napari_domaingen.core.segmentation_data import labelled_volume
from napari_domaingen.progress import Cancelled, run

from ..conftest import tcga_tumour_region


@pytest.fixture(autouse=True)
def _fresh(fresh_feature_caches):
    """No extractors left over from other tests."""


@pytest.fixture(scope="module")
def case():
    """A 56×48×40 crop of the TCGA T1 around the tumour, its labels, and its source geometry."""
    image, labels, region = tcga_tumour_region((28, 24, 20))
    return image, image.data[region], labels.data[region]


@pytest.fixture(scope="module")
def trained(case, tmp_path_factory, anatomix_weights):
    """A MaskGen and an ERM model, trained a few steps on the crop."""
    _, image, labels = case
    volume = labelled_volume(image, labels, "tcga crop")
    folder = tmp_path_factory.mktemp("models")
    common = {
        "base": 4,
        "levels": 2,
        "crop": 32,
        "steps": 8,
        "lr": 3e-3,
        "augment": False,
        "device": "cpu",
        "class_names": ("background", "necrosis/edema", "enhancing"),
    }
    maskgen = run(train([volume], folder / "maskgen.pt", TrainSettings(weights=str(anatomix_weights), **common)))
    erm = run(train([volume], folder / "erm.pt", TrainSettings(use_features=False, **common)))
    return maskgen.checkpoint, erm.checkpoint


@pytest.mark.slow
def test_segment_gives_labels_on_the_image_grid_written_with_its_affine(case, trained, tmp_path):
    from napari_domaingen.io.nifti import read_nifti, write_nifti

    source, image, _ = case
    result = run(segment(image, trained[0], SegmentSettings(probabilities=True)))
    assert result.labels.shape == image.shape and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert result.probabilities.shape == (3, *image.shape)
    assert np.allclose(result.probabilities.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(result.probabilities.argmax(0), result.labels)
    assert "enhancing" in result.describe() and result.spec.method == "MaskGen"
    # a whole (uncropped) prediction written back lands on the file grid with the original affine
    full = np.zeros(source.data.shape, np.uint8)
    full[: image.shape[0], : image.shape[1], : image.shape[2]] = result.labels
    path = write_nifti(tmp_path / "seg.nii.gz", full, source=source.source, is_label=True)
    written, original = nib.load(str(path)), nib.load(source.source.path)
    assert np.array_equal(written.affine, original.affine) and written.shape == original.shape
    assert np.array_equal(read_nifti(path, as_label=True).data, full)


@pytest.mark.slow
def test_whole_volume_window_for_erm_only(case, trained):
    """Issue 28: an ERM model runs over the whole volume on request (one window, padded to 2**levels); its labels
    stay close to the training-crop ones on this crop; a MaskGen model refuses it (its features are normalised per
    training crop). bf16 (the default where fast) agrees with fp32."""
    _, image, _ = case
    crop = run(segment(image, trained[1], SegmentSettings(precision="fp32")))
    whole = run(segment(image, trained[1], SegmentSettings(window="whole", precision="fp32")))
    assert (crop.window, whole.window) == ("12 windows of 32×32×32", "whole volume")
    assert (crop.labels == whole.labels).mean() > 0.9
    with pytest.raises(ValueError, match="MaskGen model.*training-crop window"):
        run(segment(image, trained[0], SegmentSettings(window="whole")))
    bf16 = run(segment(image, trained[1], SegmentSettings(precision="bf16")))
    assert bf16.precision == "bf16" and (bf16.labels == crop.labels).mean() > 0.99


@pytest.mark.slow
def test_shared_features_agree_with_per_window_features(case, trained, monkeypatch):
    _, image, _ = case
    shared = run(segment(image, trained[0], SegmentSettings(feature_mode="shared", probabilities=True)))
    per_window = run(segment(image, trained[0], SegmentSettings(feature_mode="per-window", probabilities=True)))
    assert (shared.feature_mode, per_window.feature_mode) == ("shared", "per-window")
    assert (shared.labels == per_window.labels).mean() > 0.97
    assert np.abs(shared.probabilities - per_window.probabilities).mean() < 0.05
    # auto: shared when the whole-volume features fit in memory, per window otherwise
    assert run(segment(image, trained[0])).feature_mode == "shared"
    from napari_domaingen.core import segment as segment_module

    monkeypatch.setattr(segment_module, "available_memory_bytes", lambda device: 1_000_000)
    assert run(segment(image, trained[0])).feature_mode == "per-window"


@pytest.mark.slow
def test_ablation_changes_what_the_model_sees(case, trained):
    _, image, _ = case
    base = run(segment(image, trained[0], SegmentSettings(probabilities=True)))
    for mode in ("image", "features"):
        ablated = run(segment(image, trained[0], SegmentSettings(ablation=mode, probabilities=True)))
        assert ablated.labels.shape == image.shape
        assert not np.allclose(ablated.probabilities, base.probabilities)
        assert f"{mode} zeroed" in ablated.describe()
    with pytest.raises(ModelCompatibilityError, match="ERM"):
        run(segment(image, trained[1], SegmentSettings(ablation="features")))


def test_erm_model_segments_without_an_extractor(case, trained):
    _, image, _ = case
    result = run(segment(image, trained[1]))
    assert result.spec.method == "ERM" and result.labels.shape == image.shape and result.feature_mode == "none"


def test_another_extractor_is_refused_and_bad_images_too(case, trained, tmp_path, anatomix_weights):
    _, image, _ = case
    state = torch.load(anatomix_weights, weights_only=True)
    other = tmp_path / "other.pth"
    torch.save({k: (v * 0.5 if v.is_floating_point() else v) for k, v in state.items()}, other)
    with pytest.raises(ModelCompatibilityError, match="another extractor"):
        run(segment(image, trained[0], SegmentSettings(weights=str(other))))
    with pytest.raises(ValueError, match="expected a 3D volume"):
        run(segment(image[0], trained[0]))
    with pytest.raises(ValueError, match="NaN"):
        run(segment(np.full(image.shape, np.nan, np.float32), trained[0]))


def test_a_moved_extractor_file_is_asked_for_by_name(case, trained, tmp_path, anatomix_weights):
    import shutil

    _, image, _ = case
    moved = tmp_path / "moved.pth"
    shutil.copy(anatomix_weights, moved)
    from napari_domaingen.core.maskgen import extractor_location, load_model

    _, spec = load_model(trained[0])
    gone = spec.__class__(
        **{
            **spec.__dict__,
            "features": spec.features.__class__(**{**spec.features.__dict__, "weights": str(tmp_path / "gone.pth")}),
        }
    )
    with pytest.raises(ModelCompatibilityError, match="gone.pth, which is not on this machine"):
        extractor_location(gone)
    assert extractor_location(gone, str(moved)) == str(moved)
    result = run(segment(image, trained[0], SegmentSettings(weights=str(moved))))  # same weights elsewhere: fine
    assert result.labels.shape == image.shape


def test_cancel_stops_segmentation(case, trained):
    _, image, _ = case
    calls = []
    with pytest.raises(Cancelled):
        run(
            segment(image, trained[0], SegmentSettings(feature_mode="per-window"), cancel=lambda: len(calls) > 2),
            calls.append,
        )


def test_spacing_warning(trained):
    from napari_domaingen.core.maskgen import load_model

    _, spec = load_model(trained[0])
    assert spacing_warning(spec, (1.0, 1.0, 1.0)) is None
    assert "differ from the training data" in spacing_warning(spec, (3.0, 1.0, 1.0))
    # the advice names the model's own spacing (a 2 mm model: not the 1 mm Load volumes used to offer)
    two_mm = dataclasses.replace(spec, spacing=(2.0, 2.0, 2.0))
    assert "resample the image to 2 mm voxels (Load volumes ▸ isotropic, set to 2 mm)" in spacing_warning(
        two_mm, (1.0, 1.0, 1.0)
    )
    anisotropic = dataclasses.replace(spec, spacing=(3.0, 1.0, 1.0))
    assert "resample the image onto 3 × 1 × 1 mm voxels" in spacing_warning(anisotropic, (1.0, 1.0, 1.0))


def test_class_indices_is_argmax_with_ties_to_the_first_class():
    from napari_domaingen.core.segment import class_indices

    logits = torch.randn(4, 5, 6, 7)
    logits[2, 0, 0, 0] = logits[1, 0, 0, 0]  # a tie: argmax takes the first
    logits[:, 1, 1, 1] = 0.5
    index = class_indices(logits)
    assert index.dtype == torch.uint8 and torch.equal(index.long(), logits.argmax(0))


def test_uniform_windows_run_the_network_once_with_the_same_logits(trained, monkeypatch):
    """Windows whose every channel is constant (the zero background around a skull-stripped brain) give the same
    output: the network runs once for all of them, and the logits are those of running it every time."""
    from napari_domaingen.core import segment as segment_module
    from napari_domaingen.core.segment import cached_model, predict_logits, uniform_key

    assert uniform_key(torch.zeros(1, 2, 4, 4, 4)) == ((1, 2, 4, 4, 4), "torch.float32", 0.0, 0.0)
    assert uniform_key(torch.arange(8.0).reshape(1, 1, 2, 2, 2)) is None
    model, _spec = cached_model(trained[1], "cpu")
    volume = torch.zeros(1, 1, 64, 64, 96)
    volume[..., 40:, 40:, 70:] = torch.rand(24, 24, 26)  # one corner holds tissue
    calls = []

    class Counted(torch.nn.Module):
        def __init__(self, form):
            super().__init__()
            self.form = form

        def forward(self, x):
            calls.append(1)
            return self.form(x)

    counted = Counted(segment_module.inference_form(model))
    monkeypatch.setattr(segment_module, "inference_form", lambda _model: counted)
    windows = []
    logits = predict_logits(model, lambda w: w, volume, (32, 32, 32), 0.5, on_window=lambda: windows.append(1))
    assert len(windows) == 3 * 3 * 5 and 1 < len(calls) < len(windows)
    monkeypatch.setattr(segment_module, "uniform_key", lambda _x: None)
    calls.clear()
    again = predict_logits(model, lambda w: w, volume, (32, 32, 32), 0.5)
    assert len(calls) == len(windows) and torch.equal(logits, again)
