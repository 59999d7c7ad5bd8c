import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from skimage.io import imread

from napari_domaingen.cli import main

from .conftest import FIXTURES


def test_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "napari_domaingen", "demo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--out" in result.stdout and "--gui" in result.stdout


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No weights on disk and no hub: registry names cannot be resolved."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline (test)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DOMAINGEN_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture(scope="module")
def fixture_weights(tmp_path_factory):
    import torch

    path = FIXTURES / "anatomix_reference.pt"
    if not path.exists():
        pytest.skip(f"reference fixture not available: {path}")
    weights = tmp_path_factory.mktemp("weights") / "anatomix.pth"
    torch.save(torch.load(path, weights_only=True)["state_dict"], weights)
    return weights


def test_demo_writes_samples(tmp_path, capsys, offline):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    t1 = nib.load(str(tmp_path / "mni152_t1.nii.gz"))
    labels = nib.load(str(tmp_path / "mni152_tissue_labels.nii.gz"))
    flair = nib.load(str(tmp_path / "mni152_flair_like_synthetic.nii.gz"))
    assert t1.shape == labels.shape == flair.shape == (197, 233, 189)
    assert np.array_equal(t1.affine, labels.affine) and np.array_equal(t1.affine, flair.affine)
    assert set(np.unique(np.asanyarray(labels.dataobj))) == {0, 1, 2, 3}
    for name in ("mni152_t1_preview.png", "ihc.png", "he_like_restain_synthetic.png"):
        image = imread(str(tmp_path / name))
        assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0
    out = capsys.readouterr().out
    assert "wrote" in out
    assert "Skipping feature extraction" in out and "anatomix.pth" in out


def test_demo_with_weights_extracts_features(tmp_path, fixture_weights):
    assert main(["demo", "--out", str(tmp_path), "--weights", str(fixture_weights)]) == 0
    features = nib.load(str(tmp_path / "mni152_t1_features.nii.gz"))
    t1 = nib.load(str(tmp_path / "mni152_t1.nii.gz"))
    assert features.shape == t1.shape + (16,)
    assert np.array_equal(features.affine, t1.affine)
    assert imread(str(tmp_path / "mni152_t1_features_rgb.png")).shape[2] == 3


def _small_volume(tmp_path):
    from ._oblique import oblique_affine

    data = np.random.default_rng(0).integers(0, 1000, size=(30, 26, 20)).astype(np.int16)
    path = tmp_path / "small_t1.nii.gz"
    nib.save(nib.Nifti1Image(data, oblique_affine("LPS")), str(path))
    return path


def test_features_command_writes_4d_nifti_with_source_affine(tmp_path, fixture_weights, capsys):
    image = _small_volume(tmp_path)
    out = tmp_path / "feats.nii.gz"
    assert main(["features", str(image), "--out", str(out), "--weights", str(fixture_weights), "--layer",
                 "penultimate", "--precision", "fp32", "--quiet"]) == 0
    written, source = nib.load(str(out)), nib.load(str(image))
    assert written.shape == source.shape + (16,)
    assert np.array_equal(written.affine, source.affine)
    assert np.isfinite(written.get_fdata()).all()
    assert "16 channels (penultimate" in capsys.readouterr().out


def test_features_command_offline_says_where_to_put_the_weights(tmp_path, capsys, offline):
    image = _small_volume(tmp_path)
    assert main(["features", str(image), "--out", str(tmp_path / "f.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "anatomix.pth" in err and "huggingface.co/neeldey/anatomix" in err and "no-weights" in err
    assert not (tmp_path / "f.nii.gz").exists()


def test_features_command_refuses_a_bad_checkpoint(tmp_path, capsys):
    image = _small_volume(tmp_path)
    bogus = tmp_path / "model.pth"
    bogus.write_text("not a checkpoint")
    assert main(["features", str(image), "--out", str(tmp_path / "f.nii.gz"), "--weights", str(bogus)]) == 2
    assert "model.pth" in capsys.readouterr().err
