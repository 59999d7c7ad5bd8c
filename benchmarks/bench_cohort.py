"""Cohort throughput of ``domaingen batch compare`` (T1 vs FLAIR) on this machine: 1 vs 2 local workers, where the
time goes, and the same batch on a separately started ``dask scheduler`` + ``dask worker`` on 127.0.0.1 giving
identical figures.

Cases: the BraTS and TCGA T1/FLAIR pairs of ../shared (240 × 240 × 155, 1 mm), repeated to ``--cases`` case
folders (symbolic links, nothing copied); features from the anatomix reference fixture's weights (random
weights with the real architecture: the same computation as the published weights). Each configuration runs in
a fresh batch folder; torch threads per worker = cores ÷ workers.

    python benchmarks/bench_cohort.py [--cases 4] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import reference_weights, require

SHARED = Path(__file__).resolve().parents[2] / "shared"
PAIRS = {
    "brats": (
        "mri/brats23-gli-00001-000/BraTS-GLI-00001-000-t1n.nii.gz",
        "mri/brats23-gli-00001-000/BraTS-GLI-00001-000-t2f.nii.gz",
    ),
    "tcga": ("mri/tcga-du-7294/TCGA-DU-7294_t1_bet.nii.gz", "mri/tcga-du-7294/TCGA-DU-7294_fla_bet.nii.gz"),
}
FIGURES = ("cka_features", "cka_intensity", "mean_cosine")


def _cohort(root: Path, cases: int) -> Path:
    names = list(PAIRS)
    for index in range(cases):
        name = names[index % len(names)]
        folder = root / "cohort" / f"{name}-{index:02d}"
        folder.mkdir(parents=True)
        t1, flair = PAIRS[name]
        (folder / "case_t1.nii.gz").symlink_to(SHARED / "data" / t1)
        (folder / "case_flair.nii.gz").symlink_to(SHARED / "data" / flair)
    return root / "cohort"


def _weights(root: Path) -> Path:
    return reference_weights(root / "anatomix.pth")


def _batch(cohort: Path, out: Path, weights: Path, *where: str) -> tuple[float, dict[str, dict[str, str]]]:
    argv = [str(Path(sys.executable).parent / "domaingen"), "batch", "compare", str(cohort), "--out", str(out)]
    argv += ["--a", "T1", "--b", "FLAIR", "--weights", str(weights), *where]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"batch failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    with open(out / "results.csv", newline="") as handle:
        return seconds, {row["case"]: row for row in csv.DictReader(handle)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _report(label: str, seconds: float, rows: dict[str, dict[str, str]], workers: int) -> None:
    case_seconds = [float(r["seconds"]) for r in rows.values()]
    busy = sum(case_seconds) / workers
    print(
        f"{label:<34} {len(rows)} cases in {seconds:6.1f} s = {3600 * len(rows) / seconds:6.1f} cases/h; "
        f"per case {min(case_seconds):.1f}–{max(case_seconds):.1f} s (mean {sum(case_seconds) / len(rows):.1f}); "
        f"startup, scheduling and idle {max(seconds - busy, 0):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    inputs = [SHARED / "data" / p for pair in PAIRS.values() for p in pair]
    for path in [SHARED / "fixtures" / "anatomix_reference.pt", *inputs]:
        require(path)
    root = Path(tempfile.mkdtemp(prefix="bench_cohort."))
    cores = os.cpu_count() or 1
    print(f"{args.cases} cases (BraTS/TCGA T1 vs FLAIR, 240×240×155), {cores} cores, batch compare")
    try:
        cohort, weights = _cohort(root, args.cases), _weights(root)
        t1, rows1 = _batch(cohort, root / "one", weights, "--workers", "1")
        _report("1 worker (in this process)", t1, rows1, 1)
        t2, rows2 = _batch(cohort, root / "two", weights, "--workers", "2")
        _report("2 workers (local Dask cluster)", t2, rows2, 2)
        print(f"speed-up 2 vs 1 workers: {t1 / t2:.2f}×")

        port = _free_port()
        address = f"tcp://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // 2))}
        scheduler = subprocess.Popen(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        worker = subprocess.Popen(
            ["dask", "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            time.sleep(5)
            t3, rows3 = _batch(
                cohort, root / "cluster", weights, "--scheduler", address, "--threads", str(max(1, cores // 2))
            )
        finally:
            worker.terminate()
            scheduler.terminate()
            worker.wait(30)
            scheduler.wait(30)
        _report(f"dask scheduler + 2 workers ({address})", t3, rows3, 2)
        worst = max(
            abs(float(rows3[c][k]) - float(rows2[c][k])) for c in rows2 for k in FIGURES if rows2[c]["status"] == "ok"
        )
        same_statuses = {c: r["status"] for c, r in rows3.items()} == {c: r["status"] for c, r in rows2.items()}
        print(f"external vs local cluster: statuses identical {same_statuses}, largest figure difference {worst:.2e}")
        deviation = max(
            abs(float(rows1[c][k]) - float(rows2[c][k])) for c in rows1 for k in FIGURES if rows1[c]["status"] == "ok"
        )
        print(f"1 worker (2 torch threads) vs 2 workers (1 thread each): largest figure difference {deviation:.2e}")
        for case, row in sorted(rows2.items()):
            print(f"  {case}: " + ", ".join(f"{k} {float(row[k]):.4f}" for k in FIGURES))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
