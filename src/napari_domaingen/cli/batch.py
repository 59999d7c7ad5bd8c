"""``domaingen batch features|segment|compare|register COHORT --out DIR``: a single-case command over every case of a
cohort, on Dask (in-process, a local cluster, or any cluster by address), with ``DIR/results.csv``."""

from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    ba = commands.add_parser(
        "batch",
        help="run features, segment, compare or register over every case of a cohort (Dask), with results.csv",
        description="Run `domaingen features|segment|compare|register` on every case of COHORT (a folder of case "
        "folders or a CSV manifest, see `domaingen cohort`), writing each case's outputs to DIR/<case>/ exactly "
        "as the single-case command does, and one DIR/results.csv (case,status,error,seconds,worker and the job's "
        "figures). COHORT may be a DICOMweb query: each study is a case, its series fetched into the cache when the "
        "case runs, and with --send the labels go back to the server as DICOM-SEG. Options after the job's own "
        "(--a/--b/--contrast/--fixed/--moving) are the single-case "
        "command's (e.g. --weights, --resample, --model, --transform). By default the cases run on a local Dask "
        "cluster sized to the machine (one worker per 4 cores; in this process below 8 cores); --workers 1 runs "
        "them in this process; --scheduler runs them on an existing Dask cluster. A failing case is recorded and "
        "the batch goes on; rerunning skips "
        "completed cases (--force redoes them).",
    )
    ba.add_argument("job", choices=["features", "segment", "compare", "register"], help="the single-case command")
    ba.add_argument(
        "cohort",
        metavar="COHORT",
        help="cohort folder, manifest .csv, or a DICOMweb query (dicomweb+http://host/dicom-web?ModalitiesInStudy=MR)",
    )
    ba.add_argument("--out", required=True, metavar="DIR", help="batch folder (DIR/<case>/ and DIR/results.csv)")
    ba.add_argument("--a", metavar="CONTRAST", help="compare: contrast of volume A (e.g. T1)")
    ba.add_argument("--b", metavar="CONTRAST", help="compare: contrast of volume B (e.g. FLAIR)")
    ba.add_argument("--contrast", metavar="CONTRAST", help="features/segment: the contrast to process (e.g. T2)")
    ba.add_argument("--fixed", metavar="CONTRAST", help="register: contrast of the fixed volume (e.g. T1)")
    ba.add_argument("--moving", metavar="CONTRAST", help="register: contrast of the moving volume (e.g. FLAIR)")
    where = ba.add_mutually_exclusive_group()
    workers = "local worker processes (1: in this process; default: one per 4 cores)"
    where.add_argument("--workers", type=int, metavar="N", help=workers)
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    ba.add_argument("--threads", type=int, metavar="N", help="torch threads per worker (default: cores ÷ workers)")
    ba.add_argument("--force", action="store_true", help="redo cases completed by an earlier run")
    ba.add_argument(
        "--send",
        action="store_true",
        help="segment on a DICOMweb cohort: store each case's labels back on the server as a DICOM-SEG (labels.dcm)",
    )
    ba.set_defaults(func=run, forwarded=True)


#: options the batch sets itself; refused among the forwarded single-case options
RESERVED = ("--out", "--json", "--quiet", "--stats", "--probabilities")
#: made-up inputs and outputs, so that the single-case parser reads only the forwarded options
_PLACEHOLDERS = {
    "features": ["IMAGE.nii.gz", "--out", "OUT.nii.gz"],
    "segment": ["IMAGE.nii.gz", "--out", "OUT.nii.gz"],
    "compare": ["A.nii.gz", "B.nii.gz"],
    "register": ["FIXED.nii.gz", "MOVING.nii.gz", "--out", "OUT"],
}


def forwarded_settings(job: str, options: list[str]):
    """The typed settings of ``job`` from the single-case options forwarded to it, read by that command's own
    parser (a typo fails here, before any case runs: ``ValueError`` with argparse's message)."""
    import contextlib
    import io

    from . import compare, features, register, segment

    reserved = [o for o in options if o.split("=")[0] in RESERVED]
    if reserved:
        raise ValueError(f"batch {job}: {', '.join(reserved)} is set by the batch for every case")
    module = {"features": features, "segment": segment, "compare": compare, "register": register}[job]
    parser = argparse.ArgumentParser(prog="domaingen")
    module.add_parser(parser.add_subparsers())
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args([job, *_PLACEHOLDERS[job], *options])
    except SystemExit:
        message = errors.getvalue().strip().splitlines()[-1:] or ["invalid options"]
        raise ValueError(f"batch {job}: {message[0]}") from None
    return module.settings_from_args(args)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core.batch import BatchSettings, run_batch
    from ..core.batch_jobs import job_named
    from ..io.cohort import read_cohort

    roles = {"image": args.contrast}
    if args.job == "compare":
        roles = {"a": args.a, "b": args.b}
    elif args.job == "register":
        roles = {"fixed": args.fixed, "moving": args.moving}
    job = job_named(args.job, roles, forwarded_settings(args.job, list(args.options)), send=args.send)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    cohort = read_cohort(args.cohort)
    if args.send and not cohort.remote:
        raise ValueError(f"{args.cohort}: --send stores labels on the server the series came from; give a DICOMweb "
                         "query as the cohort (dicomweb+http://host/dicom-web?…)")  # fmt: skip
    settings = BatchSettings(Path(args.out), args.workers, args.scheduler, args.threads, args.force)
    batch = run_batch(cohort, job, settings)
    finished: dict[str, str] = {}
    try:
        while True:
            try:
                update = next(batch)
            except StopIteration as stop:
                rows = stop.value
                break
            if update.get("row") is not None:
                finished[update["row"]["case"]] = update["row"]["status"]
            _print_case(update)
    except KeyboardInterrupt:
        batch.close()  # the generator's cleanup: the local Dask cluster is closed
        done = sum(status in ("ok", "skipped") for status in finished.values())
        print(
            f"interrupted: {done} of {len(cohort.cases)} cases done; rerun the same command to go on",
            file=sys.stderr,
            flush=True,
        )
        return 130
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
