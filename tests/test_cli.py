import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from skimage.io import imread

from napari_domaingen.cli import main

from .conftest import shared_file


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





@pytest.fixture
def fixture_weights(anatomix_weights):
    return anatomix_weights


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


def _brats_crop(tmp_path, contrast, shift=0):
    """A crop of the real BraTS case (nibabel's slicer keeps the affine right)."""
    path = shared_file("data", "mri", "brats23-gli-00001-000", f"BraTS-GLI-00001-000-{contrast}.nii.gz")
    crop = nib.load(str(path)).slicer[60 + shift : 156 + shift, 70:166, 40:104]
    out = tmp_path / f"{contrast}_crop{shift}.nii.gz"
    nib.save(crop, str(out))
    return out


def test_compare_command_on_the_brats_case(tmp_path, fixture_weights, capsys):
    import json

    a, b = _brats_crop(tmp_path, "t1n"), _brats_crop(tmp_path, "t2f")
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--weights", str(fixture_weights), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "feature CKA" in printed and "intensity CKA" in printed
    source = nib.load(str(a))
    for name in ("t1n_crop0_features_rgb.nii.gz", "t2f_crop0_features_rgb.nii.gz"):
        rgb = nib.load(str(out / name))
        assert rgb.shape == source.shape + (3,) and np.array_equal(rgb.affine, source.affine)
        assert rgb.get_data_dtype() == np.uint8
    cosine = nib.load(str(out / "cosine_similarity.nii.gz"))
    assert cosine.shape == source.shape and np.array_equal(cosine.affine, source.affine)
    for name in ("t1n_crop0_features_rgb.png", "cosine_similarity.png"):
        assert imread(str(out / name)).ndim == 3
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["cka_features"] <= 1 and 0 <= summary["cka_intensity"] <= 1
    # cached features: the JSON form reuses nothing across processes but runs the same numbers
    assert main(["compare", str(a), str(b), "--weights", str(fixture_weights), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert numbers["cka_features"] == pytest.approx(summary["cka_features"])


def test_compare_command_checks_grids_and_resamples(tmp_path, fixture_weights, capsys):
    a, b = _brats_crop(tmp_path, "t1n"), _brats_crop(tmp_path, "t2f", shift=4)
    assert main(["compare", str(a), str(b), "--weights", str(fixture_weights), "--quiet"]) == 2
    assert "not on one voxel grid" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--weights", str(fixture_weights), "--resample", "--json"]) == 0


def test_compare_command_refuses_an_empty_volume(tmp_path, fixture_weights, capsys):
    a = _brats_crop(tmp_path, "t1n")
    source = nib.load(str(a))
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(source.shape, np.int16), source.affine), str(empty))
    assert main(["compare", str(a), str(empty), "--weights", str(fixture_weights), "--quiet"]) == 2
    assert "constant" in capsys.readouterr().err


def _ct_dicom(tmp_path):
    from .io.test_dicom import write_series

    path = shared_file("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz")
    crop = nib.load(str(path)).slicer[96:160, 100:164, 40:72]
    nifti = tmp_path / "ct_crop.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(crop.dataobj), crop.affine), str(nifti))
    write_series(tmp_path / "dicom", np.asarray(crop.dataobj), crop.affine, intercept=-1024, description="CT head")
    return nifti, tmp_path / "dicom"


def test_info_and_convert_round_trip_a_dicom_series(tmp_path, capsys):
    nifti, folder = _ct_dicom(tmp_path)
    assert main(["info", str(folder)]) == 0
    assert "CT head" in capsys.readouterr().out
    out = tmp_path / "converted.nii.gz"
    assert main(["convert", str(folder), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    converted, original = nib.load(str(out)), nib.load(str(nifti))
    corners = np.array([[i, j, k, 1] for i in (0, 63) for j in (0, 63) for k in (0, 31)], float)
    error = np.abs((converted.affine @ corners.T) - (original.affine @ corners.T)).max()
    assert error <= 1e-3
    assert np.array_equal(np.asanyarray(converted.dataobj), np.asanyarray(original.dataobj))
    assert main(["info", str(out), "--json"]) == 0
    assert '"dims"' in capsys.readouterr().out


def test_convert_a_folder_without_dicom(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["convert", str(tmp_path), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "no DICOM" in capsys.readouterr().err
