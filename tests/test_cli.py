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


def test_every_command_prints_its_help(capsys):
    from napari_domaingen.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert "pretrain-extractor" in commands
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "napari_domaingen", "demo", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--out" in result.stdout and "--gui" in result.stdout


@pytest.fixture
def fixture_weights(anatomix_weights):
    return anatomix_weights


@pytest.fixture
def quick_demo(monkeypatch):
    """The demo's segmentation part on a 4 mm copy of the brain (one window) instead of 2 mm: same code, faster."""
    from napari_domaingen.cli import demo

    monkeypatch.setattr(demo, "DEMO_SPACING_MM", 4.0)


@pytest.mark.slow
def test_demo_writes_samples(tmp_path, capsys, offline, quick_demo):
    assert main(["demo", "--out", str(tmp_path), "--train-steps", "1"]) == 0
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
    # without the weights the demo trains the ERM baseline, says so, and names its files honestly
    assert "ERM baseline (image only) instead of MaskGen" in out and "no-weights" in out and "NOT a good model" in out
    predicted = nib.load(str(tmp_path / "mni152_t1_erm_labels.nii.gz"))
    assert predicted.shape == t1.shape and np.array_equal(predicted.affine, t1.affine)
    assert set(np.unique(np.asanyarray(predicted.dataobj))) <= {0, 1, 2, 3}
    assert (tmp_path / "mni152_t1_erm_model.pt").is_file()
    assert imread(str(tmp_path / "mni152_t1_erm_labels_preview.png")).shape[2] == 3
    assert not (tmp_path / "mni152_t1_maskgen_labels.nii.gz").exists()
    # issue 27.9: the label files carry their class names (JSON and ITK-SNAP sidecars), as any save from napari does
    from napari_domaingen.io.label_table import read_label_sidecars

    tissue = read_label_sidecars(tmp_path / "mni152_tissue_labels.nii.gz")
    assert tissue is not None and tissue.names()[2] == "white matter"
    assert (tmp_path / "mni152_tissue_labels.txt").is_file()
    model = read_label_sidecars(tmp_path / "mni152_t1_erm_labels.nii.gz")
    assert model is not None and model.names()[1] == "grey matter" and model.algorithm["name"] == "ERM"


@pytest.mark.slow
def test_demo_with_weights_extracts_features(tmp_path, fixture_weights, quick_demo):
    assert main(["demo", "--out", str(tmp_path), "--weights", str(fixture_weights), "--train-steps", "1"]) == 0
    features = nib.load(str(tmp_path / "mni152_t1_features.nii.gz"))
    t1 = nib.load(str(tmp_path / "mni152_t1.nii.gz"))
    assert features.shape == t1.shape + (16,)
    assert np.array_equal(features.affine, t1.affine)
    assert imread(str(tmp_path / "mni152_t1_features_rgb.png")).shape[2] == 3
    # with the weights the demo trains MaskGen
    predicted = nib.load(str(tmp_path / "mni152_t1_maskgen_labels.nii.gz"))
    assert predicted.shape == t1.shape and np.array_equal(predicted.affine, t1.affine)
    assert (tmp_path / "mni152_t1_maskgen_model.pt").is_file()
    assert imread(str(tmp_path / "mni152_t1_maskgen_labels_preview.png")).shape[2] == 3


def _small_volume(tmp_path):
    from ._oblique import oblique_affine

    data = np.random.default_rng(0).integers(0, 1000, size=(30, 26, 20)).astype(np.int16)
    path = tmp_path / "small_t1.nii.gz"
    nib.save(nib.Nifti1Image(data, oblique_affine("LPS")), str(path))
    return path


def test_features_command_writes_4d_nifti_with_source_affine(tmp_path, fixture_weights, capsys):
    image = _small_volume(tmp_path)
    out = tmp_path / "feats.nii.gz"
    assert (
        main(
            [
                "features",
                str(image),
                "--out",
                str(out),
                "--weights",
                str(fixture_weights),
                "--layer",
                "penultimate",
                "--precision",
                "fp32",
                "--quiet",
            ]
        )
        == 0
    )
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


@pytest.mark.slow
def test_pretrain_extractor_then_use_it(tmp_path, capsys):
    model = tmp_path / "mine.pt"
    tiny = [
        "--width",
        "4",
        "--crop",
        "32",
        "--batch",
        "1",
        "--voxels",
        "128",
        "--checkpoint-every",
        "2",
        "--calibration-volumes",
        "2",
    ]
    assert main(["pretrain-extractor", "--out", str(model), "--steps", "3", *tiny, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {model}: AnatomixUNet width 4" in out and "3 steps, final loss" in out
    # finished: resuming without more steps writes nothing and says so; more steps continue it
    before = model.read_bytes()
    assert main(["pretrain-extractor", "--resume", str(model), "--quiet"]) == 0
    assert "nothing trained, nothing written" in capsys.readouterr().out and model.read_bytes() == before
    assert main(["pretrain-extractor", "--resume", str(model), "--steps", "4", "--quiet"]) == 0
    assert "4 steps, final loss" in capsys.readouterr().out
    image = _small_volume(tmp_path)
    out = tmp_path / "f.nii.gz"
    assert main(["features", str(image), "--out", str(out), "--weights", str(model), "--quiet"]) == 0
    assert nib.load(str(out)).shape[:3] == nib.load(str(image)).shape


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
    brain = (nib.load(str(a)).get_fdata() != 0) & (nib.load(str(b)).get_fdata() != 0)
    assert 0 < numbers["foreground_voxels"] - brain.sum() < 0.01 * brain.sum() + 1  # the brain (holes filled)
    assert numbers["foreground_voxels"] < brain.size and numbers["nan_voxels_a"] == numbers["nan_voxels_b"] == 0


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
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("hello")
    assert main(["convert", str(tmp_path / "notes"), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "no DICOM" in capsys.readouterr().err
    # an output inside the input folder is refused before anything is read
    assert main(["convert", str(tmp_path / "notes"), "--out", str(tmp_path / "notes" / "x.nii.gz")]) == 2
    assert "lies inside the input folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- train / segment


def _tumour_crop(tmp_path, size=40):
    """A ``size``³ crop around the tumour of a real TCGA case: T1 + fused tumour labels (values 0, 1, 2), written
    as NIfTI files with the crop's affine (nibabel's slicer keeps it right)."""
    folder = ("data", "mri", "tcga-du-7294")
    t1 = nib.load(str(shared_file(*folder, "TCGA-DU-7294_t1_bet.nii.gz")))
    seg = nib.load(str(shared_file(*folder, "tcga-du-7294_seg-fusion-simple.nii.gz")))
    centre = [int(np.mean(axis)) for axis in np.nonzero(np.asanyarray(seg.dataobj))]
    region = tuple(slice(c - size // 2, c - size // 2 + size) for c in centre)
    paths = []
    for image, name in ((t1, "t1_crop.nii.gz"), (seg, "t1_crop_seg.nii.gz")):
        crop = image.slicer[region]
        out = nib.Nifti1Image(np.asanyarray(crop.dataobj), crop.affine)
        out.set_qform(crop.affine, code=1)
        out.set_sform(crop.affine, code=1)
        nib.save(out, str(tmp_path / name))
        paths.append(tmp_path / name)
    return paths


_FAST = ["--preset", "cpu", "--crop", "32", "--batch-size", "1"]


@pytest.mark.slow
def test_train_interrupted_resumed_then_segment(tmp_path, fixture_weights, capsys, monkeypatch):
    from napari_domaingen.cli._report import TrainPrinter
    from napari_domaingen.core.maskgen import read_model_file

    image, labels = _tumour_crop(tmp_path)
    model = tmp_path / "model.pt"
    command = [
        "train",
        "--image",
        str(image),
        "--label",
        str(labels),
        "--out",
        str(model),
        "--weights",
        str(fixture_weights),
        *_FAST,
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--class-names",
        "background,tumour core,oedema",
    ]

    # Ctrl-C right after the checkpoint of step 2: the command stops cleanly and names the checkpoint kept
    printer = TrainPrinter.__call__

    def interrupt_after_step_2(self, update):
        printer(self, update)
        if update.get("checkpoint_step") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainPrinter, "__call__", interrupt_after_step_2)
    assert main(command) == 130
    captured = capsys.readouterr()
    assert "step 1/4" in captured.out and "s/step" in captured.out and "ETA" in captured.out
    assert f"{model} (step 2 of 4) is intact" in captured.err and f"--resume {model}" in captured.err
    assert read_model_file(model)["training"]["step"] == 2
    monkeypatch.undo()

    # --resume continues the same run to its end (the model file defaults to the resumed one)
    resume = [a for a in command if a not in ("--out", str(model))] + ["--resume", str(model)]
    assert main(resume) == 0
    out = capsys.readouterr().out
    assert "Resuming" in out and "at step 2 of 4" in out and f"wrote {model}: MaskGen" in out
    stored = read_model_file(model)
    assert stored["training"]["step"] == 4 and len(stored["training"]["history"]["loss"]) == 4
    assert stored["spec"]["class_names"] == ["background", "tumour core", "oedema"]
    history = (tmp_path / "model.history.csv").read_text().splitlines()
    assert history[0].startswith("step,loss,lr,seconds,val_score") and len(history) == 5

    # the finished run resumed into another file: nothing to do without more steps (nothing written, said so) …
    other = tmp_path / "longer.pt"
    before = model.read_bytes()
    resume_to_other = [*resume, "--out", str(other)]
    assert main(resume_to_other) == 0
    out = capsys.readouterr().out
    assert "already finished all 4 steps; nothing to train and nothing written" in out
    assert "wrote" not in out and "saved" not in out and not other.exists() and model.read_bytes() == before
    # … and with more steps it trains on into --out, leaving the resumed file as it was
    assert main([*resume_to_other, "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "step 6/6" in out and f"wrote {other}" in out and f"{model} stays as it is" in out
    assert read_model_file(other)["training"]["step"] == 6 and model.read_bytes() == before

    # segment: labels on the image's grid with the image's affine, only the model's label values
    seg, prob = tmp_path / "seg.nii.gz", tmp_path / "prob.nii.gz"
    assert (
        main(["segment", str(image), "--model", str(model), "--out", str(seg), "--probabilities", str(prob), "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert "MaskGen" in out and "label values: 0 = background, 1 = tumour core, 2 = oedema" in out
    source, written, probabilities = nib.load(str(image)), nib.load(str(seg)), nib.load(str(prob))
    assert written.shape == source.shape and np.array_equal(written.affine, source.affine)
    assert set(np.unique(np.asanyarray(written.dataobj))) <= {0, 1, 2}
    assert probabilities.shape == source.shape + (3,) and np.array_equal(probabilities.affine, source.affine)
    assert np.allclose(probabilities.get_fdata().sum(axis=-1), 1.0, atol=1e-4)


def test_train_keeps_the_best_model_and_the_history_with_validation(tmp_path, capsys):
    image, labels = _tumour_crop(tmp_path, size=32)
    model = tmp_path / "erm.pt"
    assert (
        main(
            [
                "train",
                "--image",
                str(image),
                "--label",
                str(labels),
                "--val-image",
                str(image),
                "--val-label",
                str(labels),
                "--out",
                str(model),
                "--baseline",
                "erm",
                *_FAST,
                "--steps",
                "4",
                "--validate-every",
                "2",
                "--patience",
                "3",
                "--no-augment",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "validation Dice" in out and "best model (validation score" in out
    assert f"segment with: domaingen segment IMAGE.nii.gz --model {tmp_path / 'erm.best.pt'}" in out
    rows = (tmp_path / "erm.history.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[2].split(",")[4] != "" and rows[1].split(",")[4] == ""  # val_score at step 2


def test_train_erm_baseline_needs_no_weights(tmp_path, capsys, offline):
    from napari_domaingen.core.maskgen import read_model_file

    image, labels = _tumour_crop(tmp_path)
    model = tmp_path / "erm.pt"
    base = ["train", "--image", str(image), "--label", str(labels), "--out", str(model), *_FAST, "--steps", "2"]
    # offline, MaskGen says which weights file to put where, and that the ERM baseline needs none
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "anatomix.pth" in err and "--baseline erm" in err and not model.exists()

    assert main([*base, "--baseline", "erm", "--no-augment", "--quiet"]) == 0
    assert f"wrote {model}: ERM (image only)" in capsys.readouterr().out
    assert read_model_file(model)["spec"]["features"] is None
    seg = tmp_path / "seg.nii.gz"
    assert main(["segment", str(image), "--model", str(model), "--out", str(seg), "--quiet"]) == 0
    assert np.array_equal(nib.load(str(seg)).affine, nib.load(str(image)).affine)
    # ablation is for MaskGen models (image + features)
    assert main(["segment", str(image), "--model", str(model), "--out", str(seg), "--ablate", "features"]) == 2
    assert "ERM baseline" in capsys.readouterr().err


def test_train_and_segment_refuse_bad_inputs(tmp_path, fixture_weights, capsys):
    image, labels = _tumour_crop(tmp_path)
    source = nib.load(str(labels))
    model = tmp_path / "model.pt"
    common = ["--out", str(model), "--weights", str(fixture_weights), *_FAST, "--steps", "2"]

    def refused(argv, *expected):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"domaingen {argv[0]}: error:"), err
        for text in expected:
            assert text in err, err
        assert not model.exists()

    smaller = tmp_path / "smaller_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(source.dataobj)[:, :, :36], source.affine), str(smaller))
    refused(["train", "--image", str(image), "--label", str(smaller), *common], "labels grid", "smaller_seg.nii.gz")
    empty = tmp_path / "empty_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(source.shape, np.uint8), source.affine), str(empty))
    refused(["train", "--image", str(image), "--label", str(empty), *common], "labels are empty")
    refused(
        ["train", "--image", str(image), "--image", str(image), "--label", str(labels), *common],
        "2 --image but 1 --label",
    )
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((40, 40), np.int16), np.eye(4)), str(flat))
    refused(["train", "--image", str(flat), "--label", str(labels), *common], "flat.nii.gz", "dimensions")
    # the anatomix weights are a feature extractor, not a segmentation model
    refused(
        ["train", "--image", str(image), "--label", str(labels), *common, "--init", str(fixture_weights)],
        "not a MaskGen/ERM segmentation model",
        "feature extractor",
    )
    seg = tmp_path / "seg.nii.gz"
    refused(
        ["segment", str(image), "--model", str(fixture_weights), "--out", str(seg)],
        "not a MaskGen/ERM segmentation model",
    )
    refused(["segment", str(flat), "--model", str(fixture_weights), "--out", str(seg)], "dimensions")
    assert not seg.exists()
