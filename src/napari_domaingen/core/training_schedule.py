"""What happens at step ``k`` of a training run, the same for every model and every resume: the seeds of its
random draws, its learning rate and whether it writes a checkpoint (or validates).

A resumed run continues bit-exactly because every random draw of step ``k`` comes from generators seeded with
:func:`step_seed` ``(seed, k)``, never from a generator carried across steps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from .distributed import rank as process_rank

__all__ = ["checkpoint_due", "lr_factor", "seeded_init", "seeded_torch", "step_seed"]


def step_seed(seed: int, step: int, stream: int = 0, rank: int | None = None) -> int:
    """A 31-bit seed for the random draws of ``step`` of a run seeded with ``seed`` (``stream`` separates uses).

    ``rank``: the process of a multi-process run drawing (default: this one's,
    :func:`~napari_domaingen.core.distributed.rank`; 0 in a single process). Rank 0 draws what a single process
    draws; every other rank its own stream (deterministic in seed, step, stream and rank)."""
    seed_ = (int(seed) * 1_000_003 + int(step) * 7_919 + int(stream) * 104_729) % (2**31 - 1)
    rank = process_rank() if rank is None else int(rank)
    if rank == 0:
        return seed_
    return int(np.random.SeedSequence([seed_, rank]).generate_state(1)[0]) % (2**31 - 1)


def checkpoint_due(done: int, steps: int, every: int) -> bool:
    """Whether a run of ``steps`` steps writes its checkpoint after step ``done``: every ``every`` steps (0:
    never in between) and always at the end."""
    return done == steps or bool(every and done % every == 0)


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's global CPU (and CUDA) generators for the block, restoring their previous state afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def seeded_init(seed: int) -> contextlib.AbstractContextManager[None]:
    """The block where a run seeded with ``seed`` builds its network (same weights for the same seed, on every
    process)."""
    return seeded_torch(step_seed(seed, -1, rank=0))


def lr_factor(step: int, steps: int, warmup: int = 0) -> float:
    """Learning-rate multiplier of step ``step`` (0-based) of ``steps``: ``(step + 1) / (warmup + 1)`` during the
    warm-up, then cosine from 1 to 0 over the remaining steps."""
    warmup = max(0, min(int(warmup), steps - 1))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
