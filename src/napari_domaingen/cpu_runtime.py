"""The C runtime under PyTorch on a CPU, tuned for tensor jobs: the heap keeps freed blocks for reuse, and only the
thread that computes keeps OpenMP worker threads.

Both are process-wide settings of the C libraries (glibc's ``malloc``, the OpenMP runtime PyTorch loaded), made
through ``ctypes``; where those libraries are not there (macOS, Windows, musl) every function here does nothing.
No torch import: :mod:`napari_domaingen.progress` uses this module too.
"""

from __future__ import annotations

import ctypes
import functools
import platform

__all__ = ["HEAP_REUSE_BYTES", "HEAP_TRIM_BYTES", "keep_freed_memory", "release_cpu_threads", "trim_heap"]

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: freed blocks up to this size stay in the heap for reuse
HEAP_REUSE_BYTES = 64 << 20
#: free memory at the top of the heap beyond this is returned to the system
HEAP_TRIM_BYTES = 256 << 20
#: ``omp_pause_soft`` of OpenMP 5.0's ``omp_pause_resource_t``
_OMP_PAUSE_SOFT = 1


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks of up to 64 MB instead of returning them to the kernel.

    A CPU forward pass allocates and frees the same few-MB activations for every window. With glibc's defaults
    (blocks over a dynamic threshold of at most 32 MB come from ``mmap`` and go back on ``free``; the heap top is
    trimmed beyond twice that) each window's activations are fresh zero pages from the kernel: about a million page
    faults and 2–3 s of system time per brain segmentation here. Fixed thresholds (``M_MMAP_THRESHOLD`` 64 MB,
    ``M_TRIM_THRESHOLD`` 256 MB) keep them in the heap; at most 256 MB of freed memory stays with the process.
    Applied once per process; returns whether it was (False where the C library is not glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_REUSE_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_BYTES)
    )


def trim_heap() -> None:
    """Hand the heap's free memory back to the system now (glibc ``malloc_trim``; nothing elsewhere): after each
    block of a long job, so that the resident size does not creep up as the heap fragments over hundreds of blocks
    (a slide swap: +0.04 GB per 2048 px block without it, flat with it)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def release_cpu_threads() -> bool:
    """Let go of the calling thread's OpenMP worker threads (``omp_pause_resource_all``; the thread gets new ones
    at its next parallel operation). Returns whether an OpenMP runtime was found.

    A thread that ran a parallel PyTorch operation keeps its OpenMP workers for as long as it lives. GNU libgomp
    keeps workers spinning between parallel regions only while it manages no more threads than there are CPUs: once
    a second thread has computed in parallel (the main thread, then a job's worker thread), every region's end puts
    the workers to sleep and wakes them through the kernel. On 2 cores that made the segmentation UNet's windows
    about 20 % slower on a job's thread than on the main thread (26 000 context switches per 100 windows instead of
    none). A thread that is about to wait while another one computes calls this first.
    """
    runtime = _openmp()
    if runtime is None:
        return False
    runtime.omp_pause_resource_all(_OMP_PAUSE_SOFT)
    return True


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (Linux), else ``None``."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_found: list[ctypes.CDLL] = []  # the OpenMP runtime, once found


def _openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime loaded in this process (PyTorch's ``libgomp``/``libomp``/``libiomp5``; Linux), if any and
    if it has ``omp_pause_resource_all``; looked for again while none is (PyTorch may be imported later)."""
    if not _found:
        path = _loaded_openmp_path()
        try:
            library = None if path is None else ctypes.CDLL(path)  # already loaded: the same library, no copy
        except OSError:
            library = None
        if library is not None and hasattr(library, "omp_pause_resource_all"):
            _found.append(library)
    return _found[0] if _found else None


def _loaded_openmp_path() -> str | None:
    if platform.system() != "Linux":
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith(("libgomp", "libomp", "libiomp5")) and ".so" in name:
                    return path
    except OSError:
        return None
    return None
