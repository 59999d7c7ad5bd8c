"""The C runtime under PyTorch tuned for tensor jobs: the heap keeps freed blocks, only the computing thread keeps
OpenMP workers. Each check runs in a fresh process: both are per-process settings."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from napari_domaingen.cpu_runtime import keep_freed_memory, trim_heap

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _fresh(script: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not GLIBC, reason="the heap tuning is glibc's mallopt")
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    """A 40 MB tensor made and freed ten times: about 100 000 page faults with glibc's defaults (every block fresh
    from the kernel), none once the heap keeps freed memory (in a fresh process: the setting is per process)."""
    script = """
import resource, torch
from napari_domaingen.core.device import keep_freed_memory, resolve_device
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(40 << 20, dtype=torch.uint8).fill_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
default = faults()
resolve_device("cpu")  # every tensor job resolves its device: that tunes the heap
faults()
print(default, faults(), keep_freed_memory())
"""
    default, tuned, applied = _fresh(script)
    assert applied == "True"
    assert int(default) > 20_000 and int(tuned) < 1_000


def test_heap_calls_are_harmless_everywhere():
    assert keep_freed_memory() is GLIBC
    assert keep_freed_memory() is GLIBC  # once per process, then cached
    trim_heap()


@pytest.mark.skipif(platform.system() != "Linux" or torch.get_num_threads() < 2, reason="needs Linux and 2 threads")
def test_a_waiting_thread_lets_go_of_its_openmp_workers():
    """After a parallel operation the thread keeps its OpenMP workers (more OS threads in the process); released,
    they are gone, and the next parallel operation makes them again."""
    script = """
import os, torch
from napari_domaingen.cpu_runtime import release_cpu_threads
threads = lambda: len(os.listdir("/proc/self/task"))
torch.set_num_threads(2)
torch.ones(1 << 24).mul_(2)
kept = threads()
found = release_cpu_threads()
released = threads()
torch.ones(1 << 24).mul_(2)
print(kept, released, threads(), found)
"""
    kept, released, again, found = _fresh(script)
    assert found == "True" and int(released) == int(kept) - 1 and int(again) == int(kept)


def test_the_job_driver_releases_the_waiting_threads_workers(monkeypatch):
    """``in_background``: the thread that waits lets go of its workers while the helper computes."""
    from napari_domaingen import progress

    calls = []
    monkeypatch.setattr("napari_domaingen.cpu_runtime.release_cpu_threads", lambda: calls.append(1) or True)
    assert progress.run(progress.in_background(lambda: 7, dict, lambda: None)) == 7
    assert calls == [1]
