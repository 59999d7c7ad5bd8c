"""Multi-process training with torchrun: one model trained by N processes (DistributedDataParallel); rank 0 writes.

``torchrun --nproc-per-node N $(which domaingen) train …`` starts N copies of the command and gives each its
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (:func:`launch`).
:func:`~napari_domaingen.core.training.fit` then trains inside :func:`replicas` (docs/training.md, "Multi-process
training"):

* the process group: gloo for a model on the CPU, NCCL for a model on CUDA, one GPU per process
  (``cuda:LOCAL_RANK``, :func:`training_device`);
* a step's loss is computed through ``DistributedDataParallel`` (:meth:`Replicas.step`), so its backward leaves
  every process the mean of the processes' gradients, and every process applies the same update;
* each process draws its own crops, masks, mixes and dropout: :func:`rank` is mixed into every
  :func:`~napari_domaingen.core.training.step_seed` (rank 0 draws what a single process draws);
* one small all-reduce per step for what all processes must agree on (:meth:`Replicas.agree`): cancelled, skipped,
  a non-finite loss, and the mean loss (and loss parts) that is logged;
* rank 0 alone validates, writes the checkpoints, the history and the best model, and prints; it tells the others
  whether the run stops (:meth:`Replicas.from_main`).

Without torchrun (no ``WORLD_SIZE`` above 1 and no process group) :func:`replicas` gives a single process, which
changes nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .device import resolve_device

__all__ = ["Agreement", "Launch", "Replicas", "launch", "rank", "replicas", "training_device"]

#: How long a process waits at a collective for the others (rank 0 validates and writes alone meanwhile).
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int
    local_rank: int
    world_size: int


def launch() -> Launch | None:
    """torchrun's environment when this process is one of several (``WORLD_SIZE`` > 1), else ``None``."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank_ = int(os.environ["RANK"])
        return Launch(rank_, int(os.environ.get("LOCAL_RANK", rank_)), world)
    except (KeyError, ValueError):
        raise ValueError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers set by torchrun "
            f"(got WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}, RANK={os.environ.get('RANK')!r})"
        ) from None


def rank() -> int:
    """This process's rank in its training process group (0 in a single process or before the group exists)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def training_device(name: str | torch.device | None) -> torch.device:
    """The device a training process uses: :func:`~napari_domaingen.core.device.resolve_device`, and under
    torchrun the GPU of this process's ``LOCAL_RANK`` (made the current CUDA device). Multi-process training runs
    on CPUs (gloo) or CUDA GPUs (NCCL) only."""
    device = resolve_device(name)
    launched = launch()
    if launched is None:
        return device
    if device.type == "cuda":
        if device.index not in (None, launched.local_rank):
            raise ValueError(
                f"under torchrun each process trains on the GPU of its LOCAL_RANK (cuda:{launched.local_rank}), "
                f"not {device}: pass --device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs"
            )
        if launched.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {launched.local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): start "
                "at most one process per GPU (torchrun --nproc-per-node), or pass --device cpu"
            )
        device = torch.device("cuda", launched.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(
            f"multi-process training runs on CPUs (gloo) or CUDA GPUs (NCCL), not on {device.type}: pass --device cpu"
        )
    return device


@dataclass
class Agreement:
    """What all processes of a step agreed on: ``cancelled`` (by any), ``skipped`` (why; ``""``: not skipped),
    ``loss``: the mean over the processes (NaN if any was not finite), ``parts``: mean loss parts."""

    cancelled: bool
    skipped: str
    loss: float
    parts: dict[str, float] = field(default_factory=dict)


class _Step(torch.nn.Module):
    """A task's loss of one step as a module, so that DDP wraps the whole step: a task may run its network
    several times before the backward (the swap re-encodes its renders)."""

    def __init__(self, network: torch.nn.Module, loss: Callable[[int], Any]) -> None:
        super().__init__()
        self.network, self.loss = network, loss

    def forward(self, step: int) -> Any:
        return self.loss(step)


class Replicas:
    """The processes training one model: ``size`` of them, this one ``rank`` (``main``: rank 0), on ``backend``
    (``""`` for a single process, where every method returns its input)."""

    def __init__(self, size: int = 1, rank_: int = 0, backend: str = "", device: torch.device | None = None) -> None:
        self.size, self.rank, self.backend = size, rank_, backend
        self.device = device or torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """``"2 processes (DDP, gloo)"``; ``"1 process"``."""
        return f"{self.size} processes (DDP, {self.backend})" if self.size > 1 else "1 process"

    def step(self, module: torch.nn.Module, loss: Callable[[int], Any]) -> Callable[[int], Any]:
        """``loss`` (a task's loss of a step) itself in a single process; otherwise run through
        ``DistributedDataParallel`` over ``module`` (broadcasting rank 0's weights now), so that a backward of
        its result averages the gradients of ``module``'s parameters over the processes."""
        if self.size == 1:
            return loss
        ids = [self.device.index] if self.device.type == "cuda" else None
        # channels-last weights with one input channel have two equally valid strides; DDP copies such a gradient
        # into its bucket (a few bytes) and warns at every step
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        return torch.nn.parallel.DistributedDataParallel(_Step(module, loss), device_ids=ids)

    def agree(self, cancelled: bool, skipped: str, loss: float, parts: dict[str, float]) -> Agreement:
        """Every process's view of a step combined (one all-reduce; a second for the loss parts): so that all
        take the same path — cancel, skip, stop on a non-finite loss, or step — and log the same mean loss."""
        if self.size == 1:
            return Agreement(cancelled, skipped, loss, parts)
        finite = bool(skipped) or math.isfinite(loss)
        local = [float(cancelled), float(bool(skipped)), float(not finite), loss if finite and not skipped else 0.0]
        total = self._sum(local)
        if total[2]:
            return Agreement(bool(total[0]), "", loss if not finite else math.nan)
        if total[1]:
            reason = skipped or "another process's batch was skipped"
            return Agreement(bool(total[0]), f"{reason}; {total[1]:.0f} of {self.size} processes", math.nan)
        names = sorted(parts)
        means = [v / self.size for v in self._sum([parts[k] for k in names])] if names else []
        return Agreement(bool(total[0]), "", total[3] / self.size, dict(zip(names, means)))

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every process."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def _sum(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()


@contextlib.contextmanager
def replicas(module: torch.nn.Module) -> Iterator[Replicas]:
    """The processes training ``module``: under torchrun the process group is created here (gloo for a CPU model,
    NCCL for a CUDA one; an existing group is used as it is) and destroyed at the end, after every process has
    finished; without torchrun, a single process."""
    device = next(module.parameters()).device
    created = False
    if not (dist.is_available() and dist.is_initialized()):
        launched = launch()
        if launched is None:
            yield Replicas(device=device)
            return
        if not dist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed: multi-process training is unavailable")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        created = True
    try:
        group = Replicas(dist.get_world_size(), dist.get_rank(), str(dist.get_backend()), device)
        yield group
        if group.size > 1:
            dist.barrier()  # rank 0 has written the last checkpoint when every process leaves
    finally:
        if created:
            dist.destroy_process_group()
