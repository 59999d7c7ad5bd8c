"""``domaingen register`` / ``apply-transform`` on a real brain pair, and their refusals."""

import csv

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.cli import main

from .conftest import shared_file


@pytest.fixture(scope="module")
def brain_pair(tmp_path_factory):
    """T1 (fixed) and FLAIR moved by a known affine + smooth deformation, with tumour labels on each grid."""
    import sys
    from pathlib import Path

    folder = shared_file("data", "mri", "tcga-du-7294")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _register_cases import make_case

    t1, labels = folder / "TCGA-DU-7294_t1_bet.nii.gz", folder / "tcga-du-7294_seg-fusion-simple.nii.gz"
    moving, moving_labels, truth = make_case(
        t1, folder / "TCGA-DU-7294_fla_bet.nii.gz", labels, tmp_path_factory.mktemp("case")
    )
    return t1, labels, moving, moving_labels, truth


@pytest.mark.slow
def test_register_recovers_a_known_deformation_across_contrast(brain_pair, tmp_path, capsys):
    """The issue's acceptance, with the defaults: landmarks ≤ 1.5 mm over 20 points, tumour Dice ≥ 0.90, no folds;
    the written files, the moved image on the fixed file's grid, and apply-transform agreeing with them."""
    import SimpleITK as sitk
    from _register_cases import landmark_errors

    from napari_domaingen.core.transform import read_transform

    t1, labels, moving, moving_labels, truth = brain_pair
    out = tmp_path / "reg"
    args = [
        str(t1),
        str(moving),
        "--out",
        str(out),
        "--moving-labels",
        str(moving_labels),
        "--fixed-labels",
        str(labels),
    ]
    assert main(["register", *args, "--features", "mindssc", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mindssc features" in printed and "label Dice" in printed
    names = {p.name for p in out.iterdir()}
    assert {"flair_moved_known_moved.nii.gz", "labels_moved_known_moved.nii.gz", "affine.mat", "affine_inverse.mat",
            "warp.nii.gz", "warp_inverse.nii.gz", "metrics.csv"} <= names  # fmt: skip
    fixed_nii = nib.load(str(t1))
    moved_nii = nib.load(str(out / "flair_moved_known_moved.nii.gz"))
    assert moved_nii.shape == fixed_nii.shape and np.allclose(moved_nii.affine, fixed_nii.affine)
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert row["features"] == "mindssc" and int(row["folds"]) == 0
    assert float(row["dice_all_before"]) < 0.7 and float(row["dice_all"]) >= 0.90, row
    fixed = sitk.ReadImage(str(t1), sitk.sitkFloat32)
    errors = landmark_errors(fixed, read_transform(out).itk(), truth)
    assert errors.mean() <= 1.5, errors
    # apply-transform reproduces the moved labels from the written files
    again = tmp_path / "again.nii.gz"
    assert main(["apply-transform", str(moving_labels), "--reference", str(t1), "--transform", str(out),
                 "--out", str(again), "--labels"]) == 0  # fmt: skip
    first = np.asarray(nib.load(str(out / "labels_moved_known_moved.nii.gz")).dataobj)
    assert np.mean(np.asarray(nib.load(str(again)).dataobj) == first) > 0.999


def test_register_refusals_name_the_file_and_the_problem(brain_pair, tmp_path, capsys):
    t1, labels, moving, moving_labels, _ = brain_pair
    # labels on another grid than their image
    small = tmp_path / "small_labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), str(small))
    assert main(["register", str(t1), str(moving), "--out", str(tmp_path / "o"), "--moving-labels", str(small)]) != 0
    assert "small_labels.nii.gz: the labels are not on the grid" in capsys.readouterr().err
    # a 4D volume
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.float32), np.eye(4)), str(four))
    assert main(["register", str(t1), str(four), "--out", str(tmp_path / "o")]) != 0
    assert "four.nii.gz" in capsys.readouterr().err
    # an output "folder" that is an input file: refused before any work
    assert main(["register", str(t1), str(moving), "--out", str(moving)]) != 0
    assert f"{moving}: is a file; the output must be a folder" in capsys.readouterr().err
    # no stage given
    assert main(["register", str(t1), str(moving), "--out", str(tmp_path / "o"), "--transform", "warp"]) != 0
    assert "stages must be some of" in capsys.readouterr().err
    # a transform file of another kind
    assert main(["apply-transform", str(moving), "--reference", str(t1), "--transform", str(t1),
                 "--out", str(tmp_path / "x.nii.gz")]) != 0  # fmt: skip
    assert "not a displacement field" in capsys.readouterr().err
