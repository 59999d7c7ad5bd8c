"""``domaingen batch features|segment|compare COHORT --out DIR``: a single-case command over every case of a
cohort, on Dask (in-process, a local cluster, or any cluster by address), with ``DIR/results.csv``."""

from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    ba = commands.add_parser(
        "batch",
        help="run features, segment or compare over every case of a cohort (Dask), with results.csv",
        description="Run `domaingen features|segment|compare` on every case of COHORT (a folder of case folders or "
        "a CSV manifest, see `domaingen cohort`), writing each case's outputs to DIR/<case>/ exactly as the "
        "single-case command does, and one DIR/results.csv (case,status,error,seconds,worker and the job's "
        "figures). Options after the job's own (--a/--b/--contrast) are the single-case command's (e.g. --weights, "
        "--resample, --model). By default the cases run on a local Dask cluster sized to the machine (one worker "
        "per 4 cores; in this process below 8 cores); --workers 1 runs them in this process; --scheduler runs "
        "them on an existing Dask cluster. A failing case is recorded and the batch goes on; rerunning skips "
        "completed cases (--force redoes them).",
    )
    ba.add_argument("job", choices=["features", "segment", "compare"], help="the single-case command")
    ba.add_argument("cohort", metavar="COHORT", help="cohort folder or manifest .csv")
    ba.add_argument("--out", required=True, metavar="DIR", help="batch folder (DIR/<case>/ and DIR/results.csv)")
    ba.add_argument("--a", metavar="CONTRAST", help="compare: contrast of volume A (e.g. T1)")
    ba.add_argument("--b", metavar="CONTRAST", help="compare: contrast of volume B (e.g. FLAIR)")
    ba.add_argument("--contrast", metavar="CONTRAST", help="features/segment: the contrast to process (e.g. T2)")
    where = ba.add_mutually_exclusive_group()
    workers = "local worker processes (1: in this process; default: one per 4 cores)"
    where.add_argument("--workers", type=int, metavar="N", help=workers)
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    ba.add_argument("--threads", type=int, metavar="N", help="torch threads per worker (default: cores ÷ workers)")
    ba.add_argument("--force", action="store_true", help="redo cases completed by an earlier run")
    ba.set_defaults(func=run, forwarded=True)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core.batch import BatchSettings, run_batch
    from ..core.batch_jobs import job_named
    from ..io.cohort import read_cohort
    from ..progress import run as run_job

    roles = {"a": args.a, "b": args.b} if args.job == "compare" else {"image": args.contrast}
    job = job_named(args.job, roles, args.options)
    job.check()
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    cohort = read_cohort(args.cohort)
    settings = BatchSettings(Path(args.out), args.workers, args.scheduler, args.threads, args.force)
    rows = run_job(run_batch(cohort, job, settings), _print_case)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "skipped", "failed")}
    print(
        f"wrote {Path(args.out) / 'results.csv'}: {counts['ok']} ok, {counts['skipped']} skipped, "
        f"{counts['failed']} failed of {len(rows)} cases"
    )
    return 0 if counts["failed"] == 0 else 1


def _print_case(update) -> None:
    row = update.get("row")
    if row is None:
        return
    what = row["error"] if row["status"] == "failed" else f"{row.get('seconds', 0):.1f} s"
    print(f"[{update['message']}] {row['case']}: {row['status']} ({what})", file=sys.stdout, flush=True)
