"""The three batch jobs — features, segment, compare — as one case each: the single-case command run on a case's
volumes into ``DIR/<case>/``, and the figures read back from what it wrote.

A case runs **the single-case command itself** (its parser and ``run``), so its outputs are exactly those of
``domaingen features|segment|compare`` with the same options; the batch only chooses the inputs and the output
names. Figures are always read from the written files, so a case skipped because an earlier run completed it
reports the same figures.

* features (``--contrast``): ``features.nii.gz``; figures ``features`` (path), ``shape``.
* segment (``--contrast``): ``labels.nii.gz`` (+ ``labels.json``/``labels.txt``), ``stats.csv``; figures
  ``<class>_voxels``, ``<class>_mm3`` per class.
* compare (``--a``, ``--b``): the renderings, ``cosine_similarity.nii.gz``, ``summary.json``; figures
  ``cka_features``, ``cka_intensity``, ``mean_cosine``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JOBS", "BatchJob", "job_named"]

#: options the batch sets itself; refused among the forwarded single-case options
RESERVED = ("--out", "--json", "--quiet", "--stats", "--probabilities")


@dataclass(frozen=True)
class BatchJob:
    """One job: ``name`` (the single-case command), the contrast of each input ``roles`` (``{"image": "T2"}`` or
    ``{"a": "T1", "b": "FLAIR"}``) and the single-case ``options`` forwarded verbatim."""

    name: str
    roles: tuple[tuple[str, str], ...]
    options: tuple[str, ...] = ()

    def argv(self, inputs: dict[str, str], case_dir: Path) -> list[str]:
        """The single-case command line for a case's input paths (by role)."""
        if self.name == "features":
            return ["features", inputs["image"], "--out", str(case_dir / "features.nii.gz"), "--quiet", *self.options]
        if self.name == "segment":
            return [
                "segment",
                inputs["image"],
                "--out",
                str(case_dir / "labels.nii.gz"),
                "--stats",
                str(case_dir / "stats.csv"),
                "--quiet",
                *self.options,
            ]
        return ["compare", inputs["a"], inputs["b"], "--out", str(case_dir), "--quiet", *self.options]

    def outputs(self, case_dir: Path) -> list[Path]:
        """Files whose presence (with the batch's completion record) means the case is done."""
        return {
            "features": [case_dir / "features.nii.gz"],
            "segment": [case_dir / "labels.nii.gz", case_dir / "stats.csv"],
            "compare": [case_dir / "summary.json", case_dir / "cosine_similarity.nii.gz"],
        }[self.name]

    def check(self) -> None:
        """Parse the command line of a made-up case: a typo in the forwarded options fails before any case runs
        (``ValueError`` with argparse's message)."""
        reserved = [o for o in self.options if o.split("=")[0] in RESERVED]
        if reserved:
            raise ValueError(f"batch {self.name}: {', '.join(reserved)} is set by the batch for every case")
        from ..cli import build_parser

        parser = build_parser()
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parser.parse_args(self.argv({role: "x.nii.gz" for role, _ in self.roles}, Path("case")))
        except SystemExit:
            message = errors.getvalue().strip().splitlines()[-1:] or ["invalid options"]
            raise ValueError(f"batch {self.name}: {message[0]}") from None

    def run(self, inputs: dict[str, str], case_dir: Path) -> None:
        """Run the single-case command (raises what it raises; its printed lines go to ``case_dir/log.txt``)."""
        from ..cli import build_parser
        from ..io.atomic import atomic_write_text

        args = build_parser().parse_args(self.argv(inputs, case_dir))
        case_dir.mkdir(parents=True, exist_ok=True)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = args.func(args)
        atomic_write_text(case_dir / "log.txt", printed.getvalue())
        if status:
            raise RuntimeError(f"domaingen {self.name} ended with status {status}")

    def figures(self, case_dir: Path) -> dict[str, Any]:
        """The case's figures, read from its outputs."""
        if self.name == "compare":
            summary = json.loads((case_dir / "summary.json").read_text())
            return {key: summary[key] for key in ("cka_features", "cka_intensity", "mean_cosine")}
        if self.name == "segment":
            with open(case_dir / "stats.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            figures: dict[str, Any] = {}
            for row in rows:
                figures[f"{row['name']}_voxels"] = int(row["voxels"])
                figures[f"{row['name']}_mm3"] = float(row["volume_mm3"])
            return figures
        import nibabel as nib

        path = case_dir / "features.nii.gz"
        return {"features": str(path), "shape": "x".join(str(n) for n in nib.load(str(path)).shape)}


def job_named(name: str, contrasts: dict[str, str], options: list[str] | tuple[str, ...] = ()) -> BatchJob:
    """A :class:`BatchJob` for ``name`` with contrast names by role (canonicalised), options forwarded."""
    from ..io.cohort import canonical_contrast

    wanted = {"features": ("image",), "segment": ("image",), "compare": ("a", "b")}.get(name)
    if wanted is None:
        raise ValueError(f"unknown batch job {name!r}; choose features, segment or compare")
    missing = [role for role in wanted if not contrasts.get(role)]
    if missing:
        raise ValueError(f"batch {name} needs the contrast of {', '.join(missing)}")
    roles = tuple((role, canonical_contrast(contrasts[role])) for role in wanted)
    return BatchJob(name, roles, tuple(options))


JOBS = ("features", "segment", "compare")
