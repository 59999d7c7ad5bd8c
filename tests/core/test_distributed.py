"""Multi-process training (core.distributed): real gloo process groups on 127.0.0.1 (two processes, one thread
each), and ``torchrun`` runs of ``domaingen train`` / ``swap-train``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from napari_domaingen.core.distributed import Launch, launch, replicas, training_device
from napari_domaingen.core.training import fit, run_state, seeded_torch, step_seed
from napari_domaingen.models.checkpoints import read_checkpoint
from napari_domaingen.progress import run
from tests.core.test_training import SETTINGS, Toy

TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    """What torchrun sets for a worker, on 127.0.0.1; one thread (two processes share two cores)."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    os.environ.update(env, WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def _spawn(worker, *args, world: int = 2) -> None:
    mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=True)


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------------------- one process, no group


def test_launch_reads_torchrun_s_environment(monkeypatch, no_torchrun):
    assert launch() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launch() is None  # torchrun with one process: a plain single process
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch() == Launch(rank=3, local_rank=1, world_size=4)
    assert training_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ValueError, match="set by torchrun"):
        launch()


def test_a_single_process_is_unchanged(no_torchrun):
    # rank 0 (and a single process) draws exactly what it always drew; other ranks their own streams
    assert step_seed(7, 11, stream=3) == (7 * 1_000_003 + 11 * 7_919 + 3 * 104_729) % (2**31 - 1)
    assert step_seed(7, 11, 3) == step_seed(7, 11, 3, rank=0)
    others = {step_seed(7, 11, 3, rank=r) for r in range(1, 9)}
    assert len(others) == 8 and step_seed(7, 11, 3) not in others and step_seed(7, 11, 3, rank=1) in others
    module = torch.nn.Linear(2, 1)
    with replicas(module) as group:
        assert (group.size, group.rank, group.main, group.describe()) == (1, 0, True, "1 process")
        loss = Toy().loss
        assert group.step(module, loss) is loss
        agreed = group.agree(False, "", 0.5, {"half": 0.25})
        assert (agreed.cancelled, agreed.skipped, agreed.loss, agreed.parts) == (False, "", 0.5, {"half": 0.25})
        assert group.from_main("why") == "why"
    assert not dist.is_initialized()


# ------------------------------------------------------------------------------------------- two gloo processes


class Tiny:
    """A two-layer network and a batch per (step, rank): different inputs in every process."""

    def __init__(self) -> None:
        with seeded_torch(0):
            self.module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))

    def loss(self, step: int, rank: int | None = None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(step_seed(0, step, rank=rank))
        x = torch.randn(2, 3, generator=generator)
        return torch.nn.functional.mse_loss(self.module(x), x.sum(1, keepdim=True))


def _gradient_worker(rank: int, world: int, port: int) -> None:
    _join(rank, world, port)
    task = Tiny()
    parameters = list(task.module.parameters())
    per_rank = []
    for r in range(world):  # each process's own gradient, computed here without DDP
        task.module.zero_grad(set_to_none=True)
        task.loss(0, rank=r).backward()
        per_rank.append([p.grad.clone() for p in parameters])
    mean = [torch.stack(grads).mean(0) for grads in zip(*per_rank)]
    task.module.zero_grad(set_to_none=True)
    with replicas(task.module) as group:
        assert (group.size, group.rank, group.describe()) == (world, rank, f"{world} processes (DDP, gloo)")
        assert step_seed(0, 0) == step_seed(0, 0, rank=rank)  # inside the group, draws follow this process's rank
        step = group.step(task.module, task.loss)  # keep it: DDP's gradient hooks live as long as it does
        step(0).backward()
        for parameter, expected, own in zip(parameters, mean, per_rank[rank], strict=True):
            torch.testing.assert_close(parameter.grad, expected, rtol=1e-6, atol=1e-7)
            assert not torch.allclose(own, expected)  # the processes' inputs differ
    assert not dist.is_initialized()


@pytest.mark.slow
def test_after_a_ddp_backward_every_rank_holds_the_mean_of_the_ranks_gradients():
    _spawn(_gradient_worker)


class Recording(Toy):
    """The toy task, remembering its own (this process's) loss of every step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.own: list[float] = []

    def loss(self, step):
        result = super().loss(step)
        self.own.append(float(result["loss"].detach()))
        return result


def _fit_worker(rank: int, world: int, port: int, folder: str) -> None:
    _join(rank, world, port)
    task = Recording(scores=[1, 2, 1, 1])  # validation: best at step 4, then two worse scores: patience stops at 8
    updates: list[dict] = []
    result = run(fit(task, replace(SETTINGS, patience=2), Path(folder) / "m.pt"), updates.append)
    report = {
        "first": updates[0]["message"],
        "validations": sum(u.get("stage") == "validate" for u in updates),
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "history_file": str(result.history_file) if result.history_file else None,
        "loss": result.history["loss"],
        "own": task.own,
        "stopped": result.stopped,
        "steps_done": result.steps_done,
        "weights": [float(v) for v in torch.cat([p.detach().flatten() for p in task.module.parameters()])],
    }
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_fit_on_two_processes_then_resumed_on_one(tmp_path, no_torchrun):
    _spawn(_fit_worker, str(tmp_path))
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert "2 processes (DDP, gloo)" in main["first"]
    # rank 0 alone validates and writes; its stop (patience) stops every process at the same step
    assert main["validations"] == 4 and other["validations"] == 0
    assert main["checkpoint"] == str(tmp_path / "m.pt") and other["checkpoint"] is None
    assert main["history_file"] and other["history_file"] is None
    assert main["steps_done"] == other["steps_done"] == 8 and main["stopped"] == other["stopped"] != ""
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["m.best.pt", "m.history.csv", "m.pt", "rank0.json", "rank1.json"]
    # the logged loss is the mean of the processes' losses; the processes drew different batches, the same weights
    np.testing.assert_allclose(main["loss"], (np.array(main["own"]) + np.array(other["own"])) / 2, rtol=1e-6)
    assert main["loss"] == other["loss"] and main["own"] != other["own"] and main["weights"] == other["weights"]
    stored = read_checkpoint(tmp_path / "m.pt")
    assert stored["training"]["world_size"] == 2 and stored["training"]["step"] == 8

    # resumed by one process (further than the stored steps): it says so and records world_size 1
    state = run_state(stored, tmp_path / "m.pt")
    task = Toy()
    task.module.load_state_dict(stored["state_dict"])
    updates: list[dict] = []
    settings = replace(SETTINGS, validate_every=0, steps=12)
    result = run(fit(task, settings, tmp_path / "m.pt", state, tmp_path / "m.pt"), updates.append)
    assert "(resumed at step 8; trained so far with 2 processes)" in updates[0]["message"]
    assert "processes (DDP" not in updates[0]["message"] and result.steps_done == 12
    assert read_checkpoint(tmp_path / "m.pt")["training"]["world_size"] == 1


# ------------------------------------------------------------------------------------------- torchrun, the CLI


def _torchrun(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 $(which domaingen) COMMAND`` on 127.0.0.1, offline, in ``tmp_path``."""
    domaingen = Path(sys.executable).with_name("domaingen")
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(HF_HUB_OFFLINE="1", DOMAINGEN_WEIGHTS_DIR=str(tmp_path / "no-weights"))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    return subprocess.run(
        [*launcher, "--master-port", str(free_port()), str(domaingen), *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_torchrun_train_writes_one_checkpoint_that_segments_and_resumes_on_one_process(tmp_path, capsys, offline):
    from napari_domaingen.cli import main
    from napari_domaingen.core.maskgen import read_model_file
    from tests.test_cli import _FAST, _tumour_crop

    image, labels = _tumour_crop(tmp_path, size=32)
    model = tmp_path / "erm.pt"
    data = ["--image", str(image), "--label", str(labels), *_FAST, "--baseline", "erm", "--no-augment"]
    done = _torchrun(tmp_path, "train", *data, "--out", str(model), "--steps", "2")
    assert done.returncode == 0, done.stderr
    # one process speaks (rank 0), and its first training line says how the run trains
    assert done.stdout.count("2 processes (DDP, gloo)") == 1 and done.stdout.count(f"wrote {model}") == 1
    assert "Reading 1 training" in done.stdout and done.stdout.count("Reading") == 1
    stored = read_model_file(model)
    assert stored["training"]["world_size"] == 2 and stored["training"]["step"] == 2
    assert len((tmp_path / "erm.history.csv").read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.glob("erm*")) == ["erm.history.csv", "erm.pt"]

    seg = tmp_path / "seg.nii.gz"
    assert main(["segment", str(image), "--model", str(model), "--out", str(seg), "--quiet"]) == 0
    assert nib.load(str(seg)).shape == nib.load(str(image)).shape

    capsys.readouterr()
    assert main(["train", *data, "--resume", str(model), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "(resumed at step 2; trained so far with 2 processes)" in out and "step 3/3" in out
    stored = read_model_file(model)
    assert stored["training"]["world_size"] == 1 and stored["training"]["step"] == 3


@pytest.mark.slow
def test_torchrun_swap_train(tmp_path):
    from skimage.io import imsave

    from napari_domaingen.core.swap_model import read_swap_file
    from napari_domaingen.io import samples

    image = tmp_path / "ihc.png"
    imsave(str(image), samples.ihc().data[:160, :160], check_contrast=False)
    out = tmp_path / "swap.pt"
    command = ["swap-train", str(image), "--out", str(out), "--steps", "2", "--batch", "1", "--mixes", "1"]
    done = _torchrun(tmp_path, *command, "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"wrote {out}") == 1
    training = read_swap_file(out)["training"]
    assert training["world_size"] == 2 and training["step"] == 2 and len(training["history"]["anatomy"]) == 2
