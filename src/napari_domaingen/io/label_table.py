"""Class names and colours of a label volume, kept beside its NIfTI file in two sidecars.

* ``<stem>.json``: ``{"format": "napari-domaingen labels", "version": 1, "labels": [{"value", "name", "colour"}],
  "source_series_uid", "algorithm"}`` — colours as ``[r, g, b]`` 0–255; ``algorithm`` records the model that made
  the labels (``{"name": "MaskGen", "version": "<sha256 of the model file>", "model": path}``) or is ``null``
  for drawn labels.
* ``<stem>.txt``: an ITK-SNAP label description file (``IDX R G B A VIS MSH "LABEL"``), which ITK-SNAP, 3D Slicer
  and FreeSurfer-style tools load.

``seg.nii.gz`` → ``seg.json`` and ``seg.txt``. A ``<stem>.json`` that is not ours (e.g. a BIDS sidecar) is never
overwritten: only the ITK-SNAP file is written then, and :func:`write_label_sidecars` says so.

>>> table = LabelTable((LabelClass(1, "tumour", (255, 0, 0)),))
>>> table.names()
{1: 'tumour'}
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .errors import VolumeReadError
from .nifti import NiftiSource, strip_nifti_suffix, write_nifti

__all__ = [
    "FORMAT",
    "LabelClass",
    "LabelTable",
    "default_colour",
    "read_label_sidecars",
    "save_labels_nifti",
    "sidecar_paths",
    "write_label_sidecars",
]

FORMAT = "napari-domaingen labels"


@dataclass(frozen=True)
class LabelClass:
    """One label value: its ``name`` and display ``colour`` (r, g, b) in 0–255."""

    value: int
    name: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class LabelTable:
    """The classes of a label volume (background 0 may be listed or not) and where the labels came from."""

    classes: tuple[LabelClass, ...]
    source_series_uid: str | None = None
    algorithm: dict[str, str] | None = field(default=None)

    def names(self) -> dict[int, str]:
        return {c.value: c.name for c in self.classes}

    def colours(self) -> dict[int, tuple[int, int, int]]:
        return {c.value: c.colour for c in self.classes}

    @classmethod
    def from_names(
        cls,
        values: list[int] | np.ndarray,
        names: dict[int, str] | None = None,
        colours: dict[int, tuple[int, int, int]] | None = None,
        **kwargs: Any,
    ) -> LabelTable:
        """A table for ``values``: given names (default ``"class <v>"``, ``"background"`` for 0) and colours
        (default ITK-SNAP's label colours)."""
        names, colours = names or {}, colours or {}
        classes = tuple(
            LabelClass(
                int(v),
                names.get(int(v), "background" if int(v) == 0 else f"class {int(v)}"),
                colours.get(int(v), default_colour(int(v))),
            )
            for v in sorted({int(v) for v in values} | set(names))
        )
        return cls(classes, **kwargs)


#: ITK-SNAP's first default label colours; values beyond them cycle through the list.
_PALETTE = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 239, 213),
    (0, 0, 205),
    (205, 133, 63),
    (210, 180, 140),
    (102, 205, 170),
    (0, 0, 128),
    (0, 139, 139),
    (46, 139, 87),
)


def default_colour(value: int) -> tuple[int, int, int]:
    """The colour of a label value without a stated one (ITK-SNAP's defaults; black for background 0), 0–255."""
    return (0, 0, 0) if value == 0 else _PALETTE[(value - 1) % len(_PALETTE)]


def sidecar_paths(nifti_path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.json, <stem>.txt)`` beside a ``.nii``/``.nii.gz`` file."""
    folder, stem = Path(nifti_path).parent, strip_nifti_suffix(nifti_path)
    return folder / f"{stem}.json", folder / f"{stem}.txt"


def _is_ours(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_label_sidecars(nifti_path: str | os.PathLike, table: LabelTable) -> tuple[list[Path], list[str]]:
    """Write both sidecars of ``nifti_path`` atomically; returns ``(written paths, notes)`` — a note when a
    foreign ``<stem>.json`` was left alone."""
    json_path, txt_path = sidecar_paths(nifti_path)
    written, notes = [], []
    if json_path.exists() and not _is_ours(json_path):
        notes.append(f"{json_path} exists and is not a napari-domaingen label file; left unchanged")
    else:
        document = {
            "format": FORMAT,
            "version": 1,
            "labels": [{"value": c.value, "name": c.name, "colour": list(c.colour)} for c in table.classes],
            "source_series_uid": table.source_series_uid,
            "algorithm": table.algorithm,
        }
        written.append(atomic_write_text(json_path, json.dumps(document, indent=2) + "\n"))
    written.append(atomic_write_text(txt_path, itksnap_text(table)))
    return written, notes


def save_labels_nifti(
    path: str | os.PathLike,
    labels: np.ndarray,
    table: LabelTable,
    source: NiftiSource | None = None,
    display_affine: np.ndarray | None = None,
) -> tuple[list[Path], list[str]]:
    """Write display-order ``(Z, Y, X)`` labels as NIfTI (see :func:`.nifti.write_nifti`) and both sidecars;
    returns ``(written paths, notes)``, the NIfTI first."""
    written = [write_nifti(path, labels, source=source, display_affine=display_affine, is_label=True)]
    sidecars, notes = write_label_sidecars(path, table)
    return written + sidecars, notes


def itksnap_text(table: LabelTable) -> str:
    """The ITK-SNAP label description of ``table`` (background 0 as ITK-SNAP's "Clear Label")."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        "# written by napari-domaingen",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "################################################",
    ]
    classes = {c.value: c for c in table.classes}
    if 0 not in classes:
        lines.append(f'{0:5d} {0:5d} {0:4d} {0:4d} {0:8g} {0:2d} {0:2d}    "Clear Label"')
    for value in sorted(classes):
        c = classes[value]
        alpha, visible = (0, 0) if value == 0 else (1, 1)
        name = c.name.replace('"', "'")
        r, g, b = c.colour
        lines.append(f'{value:5d} {r:5d} {g:4d} {b:4d} {alpha:8g} {visible:2d} {visible:2d}    "{name}"')
    return "\n".join(lines) + "\n"


def read_label_sidecars(nifti_path: str | os.PathLike) -> LabelTable | None:
    """The table of ``nifti_path`` from ``<stem>.json`` (preferred) or ``<stem>.txt``; ``None`` when neither is
    there. A damaged sidecar raises :class:`VolumeReadError` naming it."""
    json_path, txt_path = sidecar_paths(nifti_path)
    if json_path.is_file() and _is_ours(json_path):
        return _read_json(json_path)
    if txt_path.is_file():
        return _read_itksnap(txt_path)
    return None


def _read_json(path: Path) -> LabelTable:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        classes = tuple(
            LabelClass(int(item["value"]), str(item["name"]), _rgb(item.get("colour"), int(item["value"])))
            for item in document["labels"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VolumeReadError(path, f"not a valid label table ({type(exc).__name__}: {exc})") from exc
    algorithm = document.get("algorithm")
    return LabelTable(classes, document.get("source_series_uid"), algorithm if isinstance(algorithm, dict) else None)


def _rgb(colour: Any, value: int) -> tuple[int, int, int]:
    if colour is None:
        return default_colour(value)
    r, g, b = (int(c) for c in colour[:3])
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise ValueError(f"colour {colour} of label {value} is not 0–255 RGB")
    return (r, g, b)


_ITKSNAP_LINE = re.compile(r"^\s*(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(.*)$")


def _read_itksnap(path: Path) -> LabelTable:
    classes = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise VolumeReadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ITKSNAP_LINE.match(line)
        if match is None:
            raise VolumeReadError(path, f'line {number} is not an ITK-SNAP label line (IDX R G B A VIS MSH "LABEL")')
        value, r, g, b = (int(match.group(i)) for i in range(1, 5))
        parts = shlex.split(match.group(5)) or [""]
        name = "background" if value == 0 and parts[0] == "Clear Label" else parts[0]
        classes.append(LabelClass(value, name, (min(r, 255), min(g, 255), min(b, 255))))
    return LabelTable(tuple(classes))
