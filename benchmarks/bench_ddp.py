"""Multi-process training (torchrun + DDP) against one process with the same effective batch: loss curves and time.

Data: TCGA-DU-7294 T1 with its fused tumour labels (../shared/data/mri), read by ``domaingen train`` itself (the
CLI's own loading). Model: the ERM baseline (needs no weights; MaskGen adds the frozen features per process),
UNet preset cpu, the paper's augmentations, the same ``--steps``, ``--crop`` and ``--seed`` on both sides:

* DDP: ``torchrun --nproc-per-node 2 domaingen train … --batch-size 1`` — 2 processes (gloo), 1 thread each
  (torchrun's default), each drawing its own crop; the gradients are averaged: an effective batch of 2;
* one process: ``domaingen train … --batch-size 2`` with torch's default thread count (the machine's cores);
* for reference, what one DDP process costs alone: ``domaingen train … --batch-size 1`` with 1 thread.

Both use the whole machine. Same effective batch, same schedule; not the same crops (rank 0 draws the single
process's first crop, rank 1 its own) and batch norm sees 1 crop per process instead of 2, so the curves agree in
trend, not value by value. Reported: wall time of each command (start-up included), training time and s/step from
the run's history, the loss every ``--every`` steps and the mean loss of the last ``--every`` steps.

Usage: python benchmarks/bench_ddp.py [--steps 40] [--crop 48] [--every 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED, require

TCGA = SHARED / "data" / "mri" / "tcga-du-7294"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: Path, processes: int, batch: int, args: argparse.Namespace, threads: int | None = None) -> dict:
    """Run ``domaingen train`` (under torchrun when ``processes`` > 1); wall time and the history's columns."""
    domaingen = str(Path(sys.executable).with_name("domaingen"))
    command = [
        "train",
        "--image",
        str(require(TCGA / "TCGA-DU-7294_t1_bet.nii.gz")),
        "--label",
        str(require(TCGA / "tcga-du-7294_seg-fusion-simple.nii.gz")),
        "--baseline",
        "erm",
        "--preset",
        "cpu",
        "--crop",
        str(args.crop),
        "--batch-size",
        str(batch),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--checkpoint-every",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}"]
        command = [*launcher, "--master-addr=127.0.0.1", f"--master-port={_free_port()}", domaingen, *command]
    else:
        command = [domaingen, *command]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "OMP_NUM_THREADS")}
    env["HF_HUB_OFFLINE"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    first = next(line.strip() for line in done.stdout.splitlines() if line.strip().startswith("training "))
    with open(out.with_name(f"{out.stem}.history.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    losses = [float(r["loss"]) if r["loss"] else math.nan for r in rows]
    seconds = float(rows[-1]["seconds"])
    return {"wall_s": wall, "train_s": seconds, "s_per_step": seconds / len(rows), "loss": losses, "first": first}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--every", type=int, default=10, help="report the loss every N steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    print(
        f"ERM, UNet preset cpu, crop {args.crop}³, {args.steps} steps, seed {args.seed}, CPU with "
        f"{os.cpu_count()} cores; torch {torch.__version__}; effective batch 2 on both sides"
    )
    with tempfile.TemporaryDirectory() as folder:
        ddp = _train(Path(folder) / "ddp.pt", 2, 1, args)
        single = _train(Path(folder) / "single.pt", 1, 2, args)
        alone = _train(Path(folder) / "alone.pt", 1, 1, args, threads=1)
    print(f"  DDP first line: {ddp['first']}")
    print(f"  1 process first line: {single['first']}")
    print()
    print(f"{'':28s}{'2 processes × batch 1':>24s}{'1 process × batch 2':>22s}")
    print(f"{'wall time (start-up incl.)':28s}{ddp['wall_s']:>22.1f} s{single['wall_s']:>20.1f} s")
    print(f"{'training time':28s}{ddp['train_s']:>22.1f} s{single['train_s']:>20.1f} s")
    print(f"{'s/step':28s}{ddp['s_per_step']:>24.3f}{single['s_per_step']:>22.3f}")
    print(
        f"reference, 1 process × batch 1 on 1 thread (one DDP process's work alone): {alone['s_per_step']:.3f} s/step, "
        f"so DDP's own cost (all-reduce, agreement, 2 processes sharing the machine) is "
        f"{ddp['s_per_step'] / alone['s_per_step']:.2f}× that"
    )
    print()
    print(f"loss (mean of the {args.every} steps up to the step; the history's loss, DDP: mean over the processes)")
    print(f"{'step':>6s}{'2 × 1':>10s}{'1 × 2':>10s}")
    for end in range(args.every, args.steps + 1, args.every):
        window = slice(end - args.every, end)
        print(f"{end:>6d}{_mean(ddp['loss'][window]):>10.4f}{_mean(single['loss'][window]):>10.4f}")
    print(
        f"final mean loss (last {args.every} steps): 2 × 1 {_mean(ddp['loss'][-args.every :]):.4f}, "
        f"1 × 2 {_mean(single['loss'][-args.every :]):.4f}; training time DDP / 1 process "
        f"{ddp['train_s'] / single['train_s']:.2f}×"
    )


if __name__ == "__main__":
    main()
