"""Device and precision choice for inference (CUDA / Apple MPS / CPU), and the memory available there."""

from __future__ import annotations

import functools
from typing import Literal

import torch

from ..cpu_runtime import keep_freed_memory

DeviceName = Literal["auto", "cpu", "cuda", "mps"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` → CUDA if present, else MPS, else CPU; an explicit name is checked, not silently replaced.

    Every job that runs tensors resolves its device here, so this is also where the heap is tuned for tensor work
    (:func:`~napari_domaingen.cpu_runtime.keep_freed_memory`)."""
    keep_freed_memory()
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but PyTorch sees no CUDA GPU (use 'auto' or 'cpu')")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available (use 'auto' or 'cpu')")
    return resolved


def available_devices() -> list[str]:
    """Device names a user can pick here, ``"auto"`` first."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def memory_format(device: torch.device) -> torch.memory_format:
    """The tensor layout 3D convolutions run fastest in on ``device``: ``channels_last_3d`` on CPU (oneDNN; about
    2× faster for the anatomix and segmentation UNets on this project's benchmark CPU, same values to 1e-6),
    the default contiguous layout elsewhere. Apply it to the model *and* its inputs."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def resolve_precision(precision: str, device: torch.device, allow_bf16: bool = True) -> str:
    """``"fp32"``/``"bf16"`` as asked, or for ``"auto"``: bf16 where it is fast (:func:`fast_bf16`) and
    ``allow_bf16`` (a model that bf16 makes too inaccurate passes False), fp32 otherwise."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        return "bf16" if allow_bf16 and fast_bf16(device) else "fp32"
    return precision


def fast_bf16(device: torch.device) -> bool:
    """True where bf16 autocast speeds up convolutions: CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere, which means "no fast bf16"."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free device memory; otherwise available system RAM)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)
