"""Helpers for the benchmark scripts: shared data location, peak memory, child processes."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (the benchmarks use ../shared beside the checkout)")
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
