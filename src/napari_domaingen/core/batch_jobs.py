"""The three batch jobs — features, segment, compare — as one case each: the single-case job (:mod:`.jobs`) run on
a case's volumes into ``DIR/<case>/``, and the figures read back from what it wrote.

A case runs **the single-case run function itself** with the batch's typed settings (the same dataclasses the
commands and the docks build), so its outputs are exactly those of ``domaingen features|segment|compare`` with the
same options; the batch only chooses the inputs and the output names. Every output is proved to lie in
``DIR/<case>/`` and checked against all of the case's files (its ground-truth labels included) before the case
runs. Figures are always read from the written files, so a case skipped because an earlier run completed it
reports the same figures. Models load once per process (:func:`~napari_domaingen.core.segment.cached_model`, the
extractor cache), so a worker loads each once however many cases it runs.

* features (``--contrast``): ``features.nii.gz``; figures ``features`` (path), ``shape``.
* segment (``--contrast``): ``labels.nii.gz`` (+ ``labels.json``/``labels.txt``), ``stats.csv``; figures
  ``<class>_voxels``, ``<class>_mm3`` per class.
* compare (``--a``, ``--b``): the renderings, ``cosine_similarity.nii.gz``, ``summary.json``; figures
  ``cka_features``, ``cka_intensity``, ``mean_cosine``.
* register (``--fixed``, ``--moving``): the moved image, ``affine.mat`` (+ warps), ``metrics.csv``; figures
  ``features``, ``stages``, ``seconds``, ``folds``.

A case's volume may be a series on a DICOMweb server (a cohort from a PACS query): it is fetched into the cache
(:func:`~napari_domaingen.io.dicomweb.get_series`) when the case runs, in whichever worker runs it. With ``send``
(segment only) the case's labels are also written as ``labels.dcm`` (a DICOM-SEG referencing the series) and
stored in the series' study on that server; ``sent.json`` records the stored UIDs, figures ``seg_series_uid``,
``seg_instance_uid``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.dicomweb import is_dicomweb
from ..io.output_guard import check_outputs, require_inside
from .features import FeatureSettings
from .jobs import (
    CompareJob,
    CompareSettings,
    FeaturesJob,
    JobResult,
    RegisterJob,
    SegmentJob,
    SegmentOptions,
    run_compare,
    run_features,
    run_register,
    run_segment,
)
from .register import RegisterSettings

__all__ = ["JOBS", "BatchJob", "BatchSettingsType", "job_named"]

JOBS = ("features", "segment", "compare", "register")
#: the input roles of each job
ROLES = {"features": ("image",), "segment": ("image",), "compare": ("a", "b"), "register": ("fixed", "moving")}
#: the typed settings of each job (the single-case job's, minus its inputs and outputs)
SETTINGS = {
    "features": FeatureSettings,
    "segment": SegmentOptions,
    "compare": CompareSettings,
    "register": RegisterSettings,
}
#: the record of a case's labels stored on the server (``send``)
SENT = "sent.json"
BatchSettingsType = FeatureSettings | SegmentOptions | CompareSettings | RegisterSettings


def _jsonable(value: Any) -> Any:
    """A settings dataclass as plain JSON values (paths as text, tuples as lists), for the completion record."""
    return json.loads(json.dumps(dataclasses.asdict(value), default=str))


@dataclass(frozen=True)
class BatchJob:
    """One job: ``name`` (features, segment or compare), the contrast of each input ``roles`` (``(("image",
    "T2"),)`` or ``(("a", "T1"), ("b", "FLAIR"))``) and the typed ``settings`` shared by every case
    (:data:`SETTINGS`). Checked when built."""

    name: str
    roles: tuple[tuple[str, str], ...]
    settings: BatchSettingsType
    send: bool = False

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """The job's name, roles and settings type agree (``ValueError``/``TypeError`` otherwise)."""
        if self.name not in JOBS:
            raise ValueError(f"unknown batch job {self.name!r}; choose {', '.join(JOBS)}")
        if tuple(role for role, _ in self.roles) != ROLES[self.name]:
            raise ValueError(f"batch {self.name} takes the contrasts of {', '.join(ROLES[self.name])}")
        wanted = SETTINGS[self.name]
        if not isinstance(self.settings, wanted):
            raise TypeError(f"batch {self.name} needs {wanted.__name__}, got {type(self.settings).__name__}")
        if self.send and self.name != "segment":
            raise ValueError(f"--send stores segmentations: it works with batch segment, not batch {self.name}")

    def record(self) -> dict[str, Any]:
        """The settings as stored in a case's completion record (and whether the labels are sent)."""
        return {**_jsonable(self.settings), **({"send": True} if self.send else {})}

    def case_job(self, inputs: dict[str, str], case_dir: Path) -> FeaturesJob | SegmentJob | CompareJob | RegisterJob:
        """The single-case job of a case's input paths (by role), writing into ``case_dir``."""
        if self.name == "features":
            return FeaturesJob(inputs["image"], case_dir / "features.nii.gz", self.settings)  # type: ignore[arg-type]
        if self.name == "segment":
            return SegmentJob(
                inputs["image"],
                case_dir / "labels.nii.gz",
                self.settings,  # type: ignore[arg-type]
                stats=case_dir / "stats.csv",
            )
        if self.name == "register":
            return RegisterJob(inputs["fixed"], inputs["moving"], case_dir, settings=self.settings)  # type: ignore[arg-type]
        return CompareJob(inputs["a"], inputs["b"], case_dir, self.settings)  # type: ignore[arg-type]

    def outputs(self, case_dir: Path) -> list[Path]:
        """Files whose presence (with the batch's completion record) means the case is done."""
        sent = [case_dir / SENT] if self.send else []
        return {
            "features": [case_dir / "features.nii.gz"],
            "segment": [case_dir / "labels.nii.gz", case_dir / "stats.csv", *sent],
            "compare": [case_dir / "summary.json", case_dir / "cosine_similarity.nii.gz"],
            "register": [case_dir / "metrics.csv", case_dir / "affine.mat"],
        }[self.name]

    def run(
        self,
        inputs: dict[str, str],
        case_dir: Path,
        case_files: Sequence[str] = (),
        cancel: Callable[[], bool] | None = None,
    ) -> JobResult:
        """Run the case (raises what the job raises; its lines go to ``case_dir/log.txt``). ``case_files``: every
        file or series of the case (its labels too), none of which may be written over. Inputs on a DICOMweb server
        are fetched into the cache first; with ``send`` the labels are stored back there as a DICOM-SEG."""
        from ..io.atomic import atomic_write_text
        from ..progress import run

        local = {role: _fetched(path, cancel) for role, path in inputs.items()}
        if self.send and not is_dicomweb(inputs["image"]):
            raise ValueError("--send stores the labels on the server the series came from: give a DICOMweb cohort")
        job = self.case_job(local, case_dir)
        extra = [case_dir / "log.txt", *([case_dir / "labels.dcm", case_dir / SENT] if self.send else [])]
        for path in [*job.outputs, *extra]:
            require_inside(path, case_dir, "the case's folder")
        on_disk = [path for path in case_files if not is_dicomweb(path)]
        check_outputs([*job.outputs, *extra], [*local.values(), *on_disk])
        case_dir.mkdir(parents=True, exist_ok=True)
        runners = {"features": run_features, "segment": run_segment, "compare": run_compare, "register": run_register}
        runner = runners[self.name]
        result = run(runner(job, cancel))  # type: ignore[operator]
        if self.send:
            result.lines.append(_send(case_dir, Path(local["image"])))
        atomic_write_text(case_dir / "log.txt", "\n".join(result.lines) + "\n")
        return result

    def figures(self, case_dir: Path) -> dict[str, Any]:
        """The case's figures, read from its outputs."""
        if self.name == "compare":
            summary = json.loads((case_dir / "summary.json").read_text())
            return {key: summary[key] for key in ("cka_features", "cka_intensity", "mean_cosine")}
        if self.name == "register":
            with open(case_dir / "metrics.csv", newline="") as handle:
                row = next(csv.DictReader(handle))
            return {"features": row["features"], "stages": row["stages"], "seconds": float(row["seconds"]),
                    "folds": int(row["folds"])}  # fmt: skip
        if self.name == "segment":
            with open(case_dir / "stats.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            figures: dict[str, Any] = {}
            for row in rows:
                figures[f"{row['name']}_voxels"] = int(row["voxels"])
                figures[f"{row['name']}_mm3"] = float(row["volume_mm3"])
            if self.send:
                sent = json.loads((case_dir / SENT).read_text())
                figures.update(seg_series_uid=sent["seg_series_uid"], seg_instance_uid=sent["seg_instance_uid"])
            return figures
        import nibabel as nib

        path = case_dir / "features.nii.gz"
        return {"features": str(path), "shape": "x".join(str(n) for n in nib.load(str(path)).shape)}


def _fetched(path: str, cancel: Callable[[], bool] | None) -> str:
    """A local path for a case input: a DICOMweb series is fetched into the cache (or found there)."""
    if not is_dicomweb(path):
        return path
    from ..io.dicomweb import get_series, parse_series_uri, server_from
    from ..progress import run

    address, study, series = parse_series_uri(path)
    return str(run(get_series(server_from(address), study, series, cancel=cancel)))


def _send(case_dir: Path, reference: Path) -> str:
    """``labels.nii.gz`` → ``labels.dcm`` → stored on the server its series came from; ``sent.json`` last."""
    from ..io.atomic import atomic_write_text
    from .jobs.base import read_labels
    from .jobs.pacs import send_labels

    labels = read_labels(case_dir / "labels.nii.gz")
    sent = send_labels(
        labels.data,
        reference,
        case_dir / "labels.dcm",
        labels_affine=labels.display_affine,
        table=labels.label_table,
        description="Segmentation (napari-domaingen batch)",
    )
    record = {"server": sent.server, "study_uid": sent.study_uid, "seg_series_uid": sent.series_uid,
              "seg_instance_uid": sent.sop_instance_uid}  # fmt: skip
    atomic_write_text(case_dir / SENT, json.dumps(record, indent=2) + "\n")
    return f"stored {sent.path} on {sent.server}: SEG series {sent.series_uid}, instance {sent.sop_instance_uid}"


def job_named(
    name: str, contrasts: dict[str, str], settings: BatchSettingsType | None = None, send: bool = False
) -> BatchJob:
    """A :class:`BatchJob` for ``name`` with contrast names by role (canonicalised) and typed ``settings`` (default:
    the job's defaults; segment needs :class:`~.jobs.SegmentOptions` with its model)."""
    from ..io.cohort import canonical_contrast

    wanted = ROLES.get(name)
    if wanted is None:
        raise ValueError(f"unknown batch job {name!r}; choose {', '.join(JOBS)}")
    missing = [role for role in wanted if not contrasts.get(role)]
    if missing:
        raise ValueError(f"batch {name} needs the contrast of {', '.join(missing)}")
    if settings is None:
        if name == "segment":
            raise ValueError("batch segment needs the model (SegmentOptions)")
        settings = SETTINGS[name]()
    roles = tuple((role, canonical_contrast(contrasts[role])) for role in wanted)
    return BatchJob(name, roles, settings, send)
