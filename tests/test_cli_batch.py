"""``domaingen cohort`` and ``domaingen batch``: the three jobs through the CLI, and what bad input says."""

from __future__ import annotations

import csv

import nibabel as nib
import pytest

from napari_domaingen.cli import main

from .core.test_batch import cohort_dir  # noqa: F401 (the module-scoped cohort fixture)
from .core.test_jobs import count_loads  # noqa: F401 (counts segmentation-model loads)
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


# ------------------------------------------------------------------------------ guard, names, model, Ctrl-C


@pytest.fixture
def seg_cohort(tmp_path):
    """A cohort of three cases (T1 + ground-truth ``labels.nii.gz``) and a tiny ERM model beside it."""
    from .core.test_jobs import tiny_model, write_case

    root = tmp_path / "cohort"
    for name in ("case1", "case2", "case3"):
        _image, seg = write_case(root / name, name)
        seg.rename(root / name / "labels.nii.gz")
    return root, tiny_model(tmp_path / "erm.pt")


def _segment(cohort, out, model, *extra):
    return ["batch", "segment", str(cohort), "--out", str(out), "--contrast", "T1", "--model", str(model),
            "--workers", "1", "--threads", "1", *extra]  # fmt: skip


def test_batch_never_writes_into_the_cohort(seg_cohort, capsys):
    from .core.test_jobs import sha256

    cohort, model = seg_cohort
    truth = cohort / "case1" / "labels.nii.gz"
    before = sha256(truth)
    assert main(_segment(cohort, cohort, model)) == 2
    assert "is the cohort folder" in capsys.readouterr().err
    assert main(_segment(cohort, cohort / "case1", model)) == 2
    assert "lies inside the cohort folder" in capsys.readouterr().err
    manifest = cohort.parent / "cohort.csv"  # a manifest: its data folder holds the cases' files
    manifest.write_text("case,T1,labels\ncase1,cohort/case1/case1_t1.nii.gz,cohort/case1/labels.nii.gz\n")
    assert main(_segment(manifest, cohort, model)) == 2
    assert "holds the case input" in capsys.readouterr().err
    assert sha256(truth) == before and not (cohort / "results.csv").exists()
    assert sorted(p.name for p in (cohort / "case1").iterdir()) == ["case1_t1.nii.gz", "labels.nii.gz"]


def test_a_case_never_writes_over_its_own_files(seg_cohort):
    from napari_domaingen.core.batch_jobs import job_named
    from napari_domaingen.core.jobs import SegmentOptions
    from napari_domaingen.io.output_guard import OutputError

    from .core.test_jobs import sha256

    cohort, model = seg_cohort
    case = cohort / "case1"
    truth = case / "labels.nii.gz"
    before = sha256(truth)
    job = job_named("segment", {"image": "T1"}, SegmentOptions(model))
    with pytest.raises(OutputError, match="would overwrite the input"):
        job.run({"image": str(case / "case1_t1.nii.gz")}, case, [str(truth)])
    assert sha256(truth) == before


@pytest.mark.parametrize("name", ["../../escaped_case", "/tmp/escaped_case", "."])
def test_case_names_that_escape_are_refused(tmp_path, seg_cohort, capsys, name):
    cohort, model = seg_cohort
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case,T1\n{name},cohort/case1/case1_t1.nii.gz\n")
    assert main(["cohort", str(manifest)]) == 2
    assert f"row 2: case name {name!r}" in capsys.readouterr().err
    assert main(_segment(manifest, tmp_path / "out", model)) == 2
    assert f"row 2: case name {name!r}" in capsys.readouterr().err
    assert not (tmp_path / "escaped_case").exists() and not (tmp_path / "out").exists()


def test_a_batch_loads_the_model_once_per_worker(seg_cohort, tmp_path, capsys, count_loads):  # noqa: F811
    cohort, model = seg_cohort
    assert main(_segment(cohort, tmp_path / "out", model, "--device", "cpu")) == 0
    assert len(count_loads) == 1
    rows = _rows(tmp_path / "out" / "results.csv")
    assert [rows[c]["status"] for c in ("case1", "case2", "case3")] == ["ok"] * 3
    assert "wrote " in (tmp_path / "out" / "case2" / "log.txt").read_text()
    assert "3 ok, 0 skipped, 0 failed of 3 cases" in capsys.readouterr().out


def test_ctrl_c_stops_the_batch_with_one_line(seg_cohort, tmp_path, capsys, monkeypatch):
    from napari_domaingen.core import batch

    cohort, model = seg_cohort
    real, calls = batch.case_task, []

    def interrupted_second_case(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "case_task", interrupted_second_case)
    assert main(_segment(cohort, tmp_path / "out", model)) == 130
    err = capsys.readouterr().err
    assert err == "interrupted: 1 of 3 cases done; rerun the same command to go on\n"
    assert list(_rows(tmp_path / "out" / "results.csv")) == ["case1"]
    assert not (tmp_path / "out" / "case2" / "batch.json").exists()
    monkeypatch.setattr(batch, "case_task", real)  # the same command goes on: case1 skipped
    assert main(_segment(cohort, tmp_path / "out", model)) == 0
    assert "2 ok, 1 skipped, 0 failed of 3 cases" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_closes_the_local_dask_cluster(seg_cohort, tmp_path, capfd, monkeypatch):
    import distributed

    from napari_domaingen.cli import batch as cli_batch

    cohort, model = seg_cohort
    clusters = []

    class Recorded(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clusters.append(self)

    def interrupt(update):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "LocalCluster", Recorded)
    monkeypatch.setattr(cli_batch, "_print_case", interrupt)
    argv = _segment(cohort, tmp_path / "out", model)
    argv[argv.index("--workers") + 1] = "2"
    assert main(argv) == 130
    err = capfd.readouterr().err  # the worker processes' too: no warning about the cancelled case
    assert err.startswith("interrupted: 1 of 3 cases done") and len(err.strip().splitlines()) == 1, err
    assert clusters and all(str(c.status.name) == "closed" for c in clusters)


def test_batch_register_writes_each_case_and_its_figures(cohort_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "register"
    argv = ["batch", "register", str(cohort_dir), "--out", str(out), "--fixed", "T1", "--moving", "FLAIR"]
    fast = ["--features", "mindssc", "--transform", "rigid,affine", "--grid", "3", "--linear-iterations", "20,10"]
    assert main([*argv, "--workers", "1", "--threads", "1", *fast]) == 1  # corrupt/ and noflair/ fail
    rows = _rows(out / "results.csv")
    for case in ("brats", "tcga", "offgrid"):
        assert rows[case]["status"] == "ok", rows[case]
        assert rows[case]["features"] == "mindssc" and rows[case]["stages"] == "rigid+affine"
        assert (out / case / "affine.mat").is_file() and (out / case / "metrics.csv").is_file()
    assert rows["noflair"]["status"] == "failed" and rows["corrupt"]["status"] == "failed"
