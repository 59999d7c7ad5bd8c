"""Run a batch job over a cohort on Dask: one task per case, one row per case in ``DIR/results.csv``.

* **Where it runs**: ``workers=1`` (and no scheduler) runs every case in this process, one after the other;
  otherwise a local Dask cluster of ``workers`` worker processes (default :func:`default_workers`: one per 4
  cores), one task at a time each with ``threads`` torch threads (default: the cores shared out), or an
  existing cluster at ``scheduler`` (``tcp://host:port``; a
  cluster started with ``dask scheduler`` + ``dask worker``, or by dask-jobqueue on SLURM/PBS/SGE), unchanged.
* **Faults**: a case that raises (corrupt file, missing contrast, grids that differ, out of memory) is a row
  with ``status=failed`` and the error, and the batch goes on. A worker that dies has its case run again on
  another worker by the Dask scheduler (its ``allowed-failures`` setting, 3 by default); a case that kills
  every worker it lands on is recorded as failed.
* **Rerun**: a case whose completion record ``DIR/<case>/batch.json`` matches the job (command, inputs,
  settings) and whose outputs exist is ``skipped``, its figures read again from its outputs; ``force`` redoes it,
  and until it is redone (a cancelled redo) its row stays ``skipped`` with the earlier outputs' figures. The record
  is written last and every output atomically, so an interrupted case never counts as done.
* **Guard**: before anything is created, ``DIR`` is refused when it is the cohort folder, lies in a case folder or
  holds a case's file (:func:`~napari_domaingen.io.output_guard.check_batch_out`); a case whose name could leave
  ``DIR`` fails without running; each case's outputs are proved to lie in ``DIR/<case>/`` and checked against all
  of the case's files (:meth:`~.batch_jobs.BatchJob.run`).
* ``results.csv`` (``case,status,error,seconds,worker`` and the job's figures) is rewritten atomically after every
  finished case, so an interrupted batch keeps the rows it had.

:func:`run_batch` is a job (a generator of progress updates returning the rows), for the CLI and the Batch dock.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_text
from ..io.cohort import Case, Cohort
from ..io.output_guard import OutputError, check_batch_out, check_case_name, require_inside
from ..progress import Cancelled, Progress
from .batch_jobs import BatchJob

__all__ = ["BASE_COLUMNS", "BatchSettings", "case_task", "default_workers", "run_batch", "write_results"]

BASE_COLUMNS = ("case", "status", "error", "seconds", "worker")
RECORD = "batch.json"
#: seconds to wait for a scheduler given by address before saying it cannot be reached
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class BatchSettings:
    """``out``: the batch folder; ``workers``: local worker processes (``None``: the machine's cores, ``1``: in
    this process); ``scheduler``: an existing cluster's address; ``threads``: torch threads per worker (``None``:
    cores ÷ workers); ``force``: redo completed cases."""

    out: Path
    workers: int | None = None
    scheduler: str | None = None
    threads: int | None = None
    force: bool = False


def _inputs(job: BatchJob, case: Case) -> dict[str, str]:
    return {role: case.path_of(contrast) for role, contrast in job.roles}


def _record(job: BatchJob, inputs: dict[str, str]) -> dict[str, Any]:
    return {"command": job.name, "inputs": inputs, "settings": job.record()}


def _completed(job: BatchJob, inputs: dict[str, str], case_dir: Path) -> bool:
    record = case_dir / RECORD
    try:
        stored = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    same = {k: stored.get(k) for k in ("command", "inputs", "settings")} == _record(job, inputs)
    return same and all(path.is_file() for path in job.outputs(case_dir))


def case_task(
    job: BatchJob, name: str, inputs: dict[str, str], out: str, threads: int, case_files: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run one case (in a Dask worker or in this process) and return its row; never raises for the case's own
    errors (they are the row's ``error``). ``case_files``: all of the case's volumes, never written over."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    row: dict[str, Any] = {"case": name, "worker": _worker_name()}
    try:
        case_dir = require_inside(Path(out) / check_case_name(name), out, "the batch folder")
        job.run(inputs, case_dir, case_files)
        row.update(job.figures(case_dir))
        atomic_write_text(case_dir / RECORD, json.dumps(_record(job, inputs), indent=2) + "\n")
        row["status"], row["error"] = "ok", ""
    except Exception as exc:  # the case's own failure: recorded, the batch goes on
        row["status"], row["error"] = "failed", _one_line(exc)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = f"out of memory ({text})"
    elif not getattr(exc, "__module__", "").startswith("napari_domaingen") and not isinstance(
        exc, (ValueError, OSError)
    ):
        text = f"{type(exc).__name__}: {text}"
    return text


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def write_results(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``results.csv``: :data:`BASE_COLUMNS` then the figures' columns in order of first appearance."""
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


#: torch threads per default worker: below about 4, one process with all the cores is faster than several
#: processes (measured on 2 cores: 1 process × 2 threads 230 cases/h, 2 × 1 thread 147 cases/h; docs/cohort.md)
THREADS_PER_WORKER = 4


def default_workers(cases: int) -> int:
    """Local workers when none is asked: one per :data:`THREADS_PER_WORKER` cores, at most one per case (1 on
    machines with fewer than 8 cores: the batch then runs in this process)."""
    return max(1, min((os.cpu_count() or 1) // THREADS_PER_WORKER, cases))


def _threads(settings: BatchSettings, workers: int) -> int:
    return settings.threads or max(1, (os.cpu_count() or 1) // max(1, workers))


def _client(settings: BatchSettings, workers: int, threads: int):
    """A Dask client of a new local cluster, or of the cluster at ``settings.scheduler``."""
    from distributed import Client, LocalCluster

    if settings.scheduler:
        try:
            return Client(settings.scheduler, timeout=f"{CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at {settings.scheduler} within {CONNECT_TIMEOUT} s ({exc})"
            ) from None
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,  # the workers' warnings (e.g. tasks cancelled by Ctrl-C) are not the user's
        env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )
    return Client(cluster)


def run_batch(
    cohort: Cohort, job: BatchJob, settings: BatchSettings, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, list[dict[str, Any]]]:
    """Run ``job`` over ``cohort`` (module docstring); yields one update per finished case (``row``, ``done``,
    ``failed``, ``total``, ``eta``) and returns the rows in the cohort's order."""
    cancel = cancel or (lambda: False)
    out = Path(settings.out)
    files = {case.name: tuple(case.path_of(contrast) for contrast in case.volumes) for case in cohort.cases}
    check_batch_out(out, cohort.source, [path for paths in files.values() for path in paths])
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    rows: dict[str, dict[str, Any]] = {}
    pending: list[tuple[str, dict[str, str]]] = []
    for case in cohort.cases:
        try:
            check_case_name(case.name)
            inputs = _inputs(job, case)
        except (ValueError, OutputError) as exc:
            others = [problem for problem in case.problems if problem not in str(exc)]  # each reason once
            problems = f" ({'; '.join(others)})" if others else ""
            rows[case.name] = {"case": case.name, "status": "failed", "error": f"{exc}{problems}", "seconds": 0.0}
            continue
        if _completed(job, inputs, out / case.name):
            try:
                figures = job.figures(out / case.name)
            except (OSError, ValueError, KeyError):
                figures = None
            if figures is not None:  # its outputs stay listed until they are redone (a cancelled redo keeps them)
                rows[case.name] = {"case": case.name, "status": "skipped", "error": "", "seconds": 0.0, **figures}
                if not settings.force:
                    continue
        pending.append((case.name, inputs))
    total, start = len(cohort.cases), time.perf_counter()
    remaining = {name for name, _ in pending}

    def update(name: str, where: str = "") -> Progress:
        ordered = [rows[c.name] for c in cohort.cases if c.name in rows]
        write_results(results, ordered)
        done = total - len(remaining)
        ran = len(pending) - len(remaining)
        elapsed = time.perf_counter() - start
        eta = elapsed / ran * (total - done) if ran > 0 else None
        failed = sum(r["status"] == "failed" for r in rows.values())
        eta_text = f", about {eta:.0f} s left" if eta is not None and done < total else ""
        return {
            "stage": "batch",
            "fraction": done / max(total, 1),
            "message": f"{done}/{total} cases ({failed} failed){eta_text}{where}",
            "row": rows[name],
            "done": done,
            "failed": failed,
            "total": total,
            "eta": eta,
        }

    for name in list(rows):
        yield update(name)
    workers = settings.workers or default_workers(len(pending))
    threads = _threads(settings, workers)
    if not pending:
        write_results(results, [rows[c.name] for c in cohort.cases])
    elif settings.scheduler is None and workers == 1:
        for name, inputs in pending:
            if cancel():
                raise Cancelled("batch cancelled")
            rows[name] = case_task(job, name, inputs, str(out), threads, files[name])
            remaining.discard(name)
            yield update(name)
    else:
        yield from _run_on_dask(job, pending, files, settings, workers, threads, out, rows, remaining, update, cancel)
    return [rows[c.name] for c in cohort.cases]


def _run_on_dask(job, pending, files, settings, workers, threads, out, rows, remaining, update, cancel):
    from distributed import as_completed

    client = _client(settings, workers, threads)
    try:
        link = client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
        where = f"; Dask dashboard {link}" if link else ""
        futures = {
            client.submit(
                case_task, job, name, inputs, str(out), threads, files[name], key=f"case-{name}-{time.time_ns()}"
            ): name
            for name, inputs in pending
        }
        for future in as_completed(futures):
            name = futures[future]
            try:
                rows[name] = future.result()
            except Exception as exc:  # the worker died every time (KilledWorker), or the scheduler went away
                error = f"the case's worker died ({_one_line(exc)})" if "KilledWorker" in type(exc).__name__ else ""
                rows[name] = {"case": name, "status": "failed", "error": error or _one_line(exc), "seconds": 0.0}
            remaining.discard(name)
            yield update(name, where)
            if cancel():
                client.cancel(list(futures))
                raise Cancelled("batch cancelled")
    finally:
        cluster = None if settings.scheduler else client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
