"""Batches over a real cohort (BraTS and TCGA crops from ../shared, a corrupt case, a case without FLAIR): in this
process, on a local Dask cluster started by the test, with a worker killed mid-batch, and rerun."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.cli import main
from napari_domaingen.core.batch import BatchSettings, run_batch
from napari_domaingen.core.batch_jobs import job_named
from napari_domaingen.core.features import FeatureSettings
from napari_domaingen.core.jobs import CompareSettings
from napari_domaingen.io.cohort import read_cohort
from napari_domaingen.progress import Cancelled, run

from ..conftest import shared_file

CASES = {
    "brats": ("brats23-gli-00001-000", "BraTS-GLI-00001-000-t1n.nii.gz", "BraTS-GLI-00001-000-t2f.nii.gz"),
    "tcga": ("tcga-du-7294", "TCGA-DU-7294_t1_bet.nii.gz", "TCGA-DU-7294_fla_bet.nii.gz"),
}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    """brats/ and tcga/ (T1 + FLAIR crops, 40×40×32 around the volume's centre), corrupt/ (a cut T1),
    noflair/ (a T1 only)."""
    root = tmp_path_factory.mktemp("cohort")
    for name, (folder, t1, flair) in CASES.items():
        for file, tag in ((t1, "t1"), (flair, "flair")):
            image = nib.load(shared_file("data", "mri", folder, file))
            c = [s // 2 for s in image.shape]
            crop = image.slicer[c[0] - 20 : c[0] + 20, c[1] - 20 : c[1] + 20, c[2] - 16 : c[2] + 16]
            (root / name).mkdir(exist_ok=True)
            out = nib.Nifti1Image(np.asarray(crop.dataobj).astype(np.float32), crop.affine)
            nib.save(out, root / name / f"{name}_{tag}.nii.gz")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "corrupt_t1.nii.gz").write_bytes((root / "brats" / "brats_t1.nii.gz").read_bytes()[:-4000])
    shutil.copy(root / "brats" / "brats_flair.nii.gz", root / "corrupt" / "corrupt_flair.nii.gz")
    (root / "offgrid").mkdir()  # a FLAIR on another grid than its T1
    shutil.copy(root / "tcga" / "tcga_t1.nii.gz", root / "offgrid" / "offgrid_t1.nii.gz")
    flair = nib.load(root / "tcga" / "tcga_flair.nii.gz")
    nib.save(flair.slicer[2:, :, :], root / "offgrid" / "offgrid_flair.nii.gz")
    (root / "noflair").mkdir()
    shutil.copy(root / "tcga" / "tcga_t1.nii.gz", root / "noflair" / "noflair_t1.nii.gz")
    return root


def _job(anatomix_weights):
    settings = CompareSettings(FeatureSettings(weights=str(anatomix_weights)))
    return job_named("compare", {"a": "t1", "b": "FLAIR"}, settings)


def _rows(path):
    with open(path, newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def _figures(row):
    return {k: float(row[k]) for k in ("cka_features", "cka_intensity", "mean_cosine")}


def test_in_process_batch_rows_statuses_and_rerun(cohort_dir, anatomix_weights, tmp_path, capsys):
    out = tmp_path / "out"
    rows = run(run_batch(read_cohort(cohort_dir), _job(anatomix_weights), BatchSettings(out, workers=1, threads=1)))
    assert [(r["case"], r["status"]) for r in rows] == [
        ("brats", "ok"),
        ("corrupt", "failed"),
        ("noflair", "failed"),
        ("offgrid", "failed"),
        ("tcga", "ok"),
    ]
    table = _rows(out / "results.csv")
    assert list(table["brats"])[:8] == [
        "case", "status", "error", "seconds", "worker", "cka_features", "cka_intensity", "mean_cosine"
    ]  # fmt: skip
    # issue 27.6: not "has no T1 volume (it has FLAIR) (…t1.nii.gz: not a readable NIfTI file)", a contradiction
    assert table["corrupt"]["error"].startswith("case corrupt: its T1 file cannot be used: ")
    assert "corrupt_t1.nii.gz: not a readable NIfTI file" in table["corrupt"]["error"]
    assert table["corrupt"]["error"].count("not a readable NIfTI file") == 1
    assert "grid" in table["offgrid"]["error"] and table["offgrid"]["worker"] == "local"
    assert table["noflair"]["error"] == "case noflair has no FLAIR volume (it has T1)"
    # each case's outputs are exactly the single-case command's
    single = tmp_path / "single"
    argv = ["compare", str(cohort_dir / "tcga" / "tcga_t1.nii.gz"), str(cohort_dir / "tcga" / "tcga_flair.nii.gz")]
    assert main([*argv, "--weights", str(anatomix_weights), "--out", str(single), "--quiet"]) == 0
    assert sorted(p.name for p in single.iterdir()) == sorted(
        p.name for p in (out / "tcga").iterdir() if p.name not in ("batch.json", "log.txt")
    )
    summary = json.loads((single / "summary.json").read_text())
    assert _figures(table["tcga"]) == pytest.approx({k: summary[k] for k in _figures(table["tcga"])}, abs=1e-6)

    # a rerun skips the completed cases with the same figures and retries the failed ones; --force redoes all
    again = run(run_batch(read_cohort(cohort_dir), _job(anatomix_weights), BatchSettings(out, workers=1, threads=1)))
    assert [r["status"] for r in again] == ["skipped", "failed", "failed", "failed", "skipped"]
    assert _figures(_rows(out / "results.csv")["brats"]) == _figures(table["brats"])
    forced = BatchSettings(out, workers=1, threads=1, force=True)
    # a redo cancelled after its first case keeps the rows of the cases whose earlier outputs are still there
    stop = {"now": False}
    updates = run_batch(read_cohort(cohort_dir), _job(anatomix_weights), forced, cancel=lambda: stop["now"])
    with pytest.raises(Cancelled):
        for update in updates:
            if update["row"]["case"] == "brats" and update["row"]["status"] == "ok":
                stop["now"] = True
    kept = _rows(out / "results.csv")
    assert kept["brats"]["status"] == "ok" and kept["tcga"]["status"] == "skipped"
    assert _figures(kept["tcga"]) == _figures(table["tcga"])
    assert [r["status"] for r in run(run_batch(read_cohort(cohort_dir), _job(anatomix_weights), forced))][0] == "ok"


@pytest.mark.slow
def test_batch_on_a_scheduler_survives_a_killed_worker(cohort_dir, anatomix_weights, tmp_path):
    from distributed import Client, LocalCluster

    reference = tmp_path / "reference"
    run(run_batch(read_cohort(cohort_dir), _job(anatomix_weights), BatchSettings(reference, workers=1, threads=1)))
    # more cases, so the batch is still running when a worker is killed
    many = tmp_path / "many"
    for copy in range(3):
        for name in CASES:
            shutil.copytree(cohort_dir / name, many / f"{name}{copy}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        client = Client(cluster)
        pids = client.run(os.getpid)
        killed = []

        def kill_one_busy_worker():
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                busy = [address for address, keys in client.processing().items() if keys]
                if busy and (tmp_path / "out").exists():
                    time.sleep(0.3)
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_busy_worker)
        killer.start()
        settings = BatchSettings(tmp_path / "out", scheduler=cluster.scheduler_address, threads=1)
        rows = run(run_batch(read_cohort(many), _job(anatomix_weights), settings))
        killer.join()
        client.close()
    assert killed, "no worker was killed: the test did not test anything"
    assert [r["status"] for r in rows] == ["ok"] * 6  # the killed worker's case ran again elsewhere
    expected = _rows(reference / "results.csv")
    for row in rows:  # identical figures on the cluster as in this process
        assert _figures(row) == pytest.approx(_figures(expected[row["case"][:-1]]), abs=1e-9)
    assert all(r["worker"].startswith("tcp://127.0.0.1:") for r in rows)


def test_an_unreachable_scheduler_is_reported_quickly(cohort_dir, anatomix_weights, tmp_path, capsys):
    start = time.perf_counter()
    argv = ["batch", "compare", str(cohort_dir), "--out", str(tmp_path / "o"), "--a", "T1", "--b", "FLAIR"]
    assert main([*argv, "--weights", str(anatomix_weights), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert time.perf_counter() - start < 15
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 10 s" in capsys.readouterr().err
