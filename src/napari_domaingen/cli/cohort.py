"""``domaingen cohort``: what a cohort folder or manifest holds, per case, without processing anything."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    co = commands.add_parser(
        "cohort",
        help="list the cases of a cohort folder or CSV manifest (contrasts, grids, problems)",
        description="Print what PATH holds: per case its volumes by contrast (recognised from file names as "
        "Load volumes does: t1, t1c, t2, flair/t2f/fla, seg/label/mask; DICOM series too) with their grids, and "
        "its problems. PATH is a folder with one sub-folder per case, or a CSV manifest with a 'case' column and "
        "one column per contrast (T1, T1c, T2, FLAIR, labels, image, label) holding paths. Nothing is processed.",
    )
    co.add_argument("path", metavar="PATH", help="cohort folder or manifest .csv")
    co.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.cohort import read_cohort

    cohort = read_cohort(args.path)
    print(cohort.describe())
    with_problems = sum(bool(case.problems) for case in cohort.cases)
    print(f"{len(cohort.cases)} cases, {with_problems} with problems")
    return 0
