"""``domaingen cohort`` and ``domaingen batch``: the three jobs through the CLI, and what bad input says."""

from __future__ import annotations

import csv

import nibabel as nib
import pytest

from napari_domaingen.cli import main

from .core.test_batch import cohort_dir  # noqa: F401 (the module-scoped cohort fixture)
from .test_cli import _FAST, _tumour_crop


def _rows(path):
    with open(path, newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_cohort_lists_cases_without_processing(cohort_dir, capsys, tmp_path):  # noqa: F811
    assert main(["cohort", str(cohort_dir)]) == 0
    out = capsys.readouterr().out
    assert "brats\n    T1      40×40×32" in out and "FLAIR" in out
    assert "problem:" in out and "corrupt_t1.nii.gz" in out and "5 cases, 1 with problems" in out
    assert not any(p.name in ("results.csv",) for p in cohort_dir.iterdir())


def test_batch_features_writes_each_case_and_its_shape(cohort_dir, anatomix_weights, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "features"
    argv = ["batch", "features", str(cohort_dir), "--out", str(out), "--contrast", "FLAIR", "--workers", "1"]
    assert main([*argv, "--weights", str(anatomix_weights), "--threads", "1"]) == 1  # two cases have no FLAIR
    rows = _rows(out / "results.csv")
    assert rows["tcga"]["status"] == "ok" and rows["tcga"]["shape"] == "40x40x32x16"
    assert nib.load(rows["tcga"]["features"]).shape == (40, 40, 32, 16)
    assert rows["noflair"]["status"] == "failed"
    assert "1 skipped" not in capsys.readouterr().out


@pytest.mark.slow
def test_batch_segment_reports_voxels_and_volumes(tmp_path, capsys, offline):
    image, labels = _tumour_crop(tmp_path, size=32)
    model = tmp_path / "erm.pt"
    train = ["train", "--image", str(image), "--label", str(labels), "--out", str(model), *_FAST, "--steps", "2"]
    assert main([*train, "--baseline", "erm", "--no-augment", "--quiet", "--class-names", "bg,core,edema"]) == 0
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"case,T1\none,{image}\ntwo,{image}\n")
    out = tmp_path / "seg"
    assert main(["batch", "segment", str(manifest), "--out", str(out), "--contrast", "t1", "--model", str(model),
                 "--workers", "1"]) == 0  # fmt: skip
    rows = _rows(out / "results.csv")
    assert set(rows) == {"one", "two"} and rows["one"]["status"] == "ok"
    assert {"core_voxels", "core_mm3", "edema_voxels", "edema_mm3"} <= set(rows["one"])
    assert (out / "one" / "labels.nii.gz").is_file() and (out / "one" / "labels.json").is_file()


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        ("empty", [], "contains no case folders"),
        ("duplicate", [], "appears twice"),
        ("columns", [], "unknown column(s) dwi"),
        ("ok", ["--weightz", "x"], "batch compare: "),
        ("ok", ["--json"], "--json is set by the batch for every case"),
        ("ok", ["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_batch_input_says_what_is_wrong(tmp_path, capsys, make, argv, message):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    if make == "duplicate":
        cohort = tmp_path / "m.csv"
        cohort.write_text("case,T1\nA,a.nii.gz\nA,b.nii.gz\n")
    elif make == "columns":
        cohort = tmp_path / "m.csv"
        cohort.write_text("case,T1,dwi\nA,a.nii.gz,b.nii.gz\n")
    elif make == "ok":
        (cohort / "A").mkdir()
    code = main(["batch", "compare", str(cohort), "--out", str(tmp_path / "o"), "--a", "T1", "--b", "FLAIR", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.csv").exists()
