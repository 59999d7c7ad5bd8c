"""Helpers shared by the training loops."""

from __future__ import annotations

import pytest
import torch

from napari_domaingen.core.training import cosine_scheduler


def _lrs(steps: int, warmup: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_scheduler(optimizer, steps, warmup_steps=warmup)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_cosine_without_warmup_starts_at_lr_and_decays_to_zero():
    lrs = _lrs(100, 0)
    assert lrs[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] < 1e-3


def test_warmup_rises_linearly_then_follows_the_cosine():
    lrs = _lrs(100, 10)
    assert lrs[0] == pytest.approx(0.1 * _lrs(100, 0)[0])
    assert lrs[:10] == sorted(lrs[:10]) and lrs[9] > 0.9
    assert lrs[10:] == pytest.approx(_lrs(100, 0)[10:])


def test_warmup_scheduler_state_resumes_exactly():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_scheduler(optimizer, 50, warmup_steps=5)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    other_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    other_optimizer.load_state_dict(optimizer.state_dict())
    other = cosine_scheduler(other_optimizer, 50, warmup_steps=5)
    other.load_state_dict(state)
    optimizer.step(), scheduler.step()
    other_optimizer.step(), other.step()
    assert other_optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
