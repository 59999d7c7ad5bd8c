"""Helpers for the benchmark scripts: shared data location, peak memory, child processes."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (the benchmarks use ../shared beside the checkout)")
    return path


#: the anatomix reference architecture with fixed random weights (``../shared/fixtures``): the real extractor's cost
ANATOMIX_FIXTURE = SHARED / "fixtures" / "anatomix_reference.pt"


def reference_weights(path: Path) -> Path:
    """Write the weights of :data:`ANATOMIX_FIXTURE` as an anatomix ``.pth`` state dict to ``path``; returns it."""
    import torch

    torch.save(torch.load(require(ANATOMIX_FIXTURE), weights_only=True)["state_dict"], path)
    return path


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_child(script: Path, *args: str) -> dict:
    """Run ``script --child ARGS`` in a fresh interpreter (so its peak memory is its own); parse its JSON line."""
    result = subprocess.run([sys.executable, str(script), "--child", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"child {args} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(work: Callable[[], object], repeats: int, warmups: int) -> dict:
    """Wall times of ``work()`` after ``warmups`` untimed calls: ``{median_s, min_s, max_s, runs}``."""
    for _ in range(warmups):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def read_histology_rgb(path: Path) -> np.ndarray:
    """``(Y, X, 3)`` uint8 of a histology file as the plugin reads it (RGBA on white, 16-bit scaled, …)."""
    from napari_domaingen.io.histology import read_histology

    return np.ascontiguousarray(read_histology(require(path)).data[..., :3])
