"""Class names and colours of a label volume, kept beside its NIfTI file in two sidecars.

* ``<stem>.json``: ``{"format": "napari-domaingen labels", "version": 1, "labels": [{"value", "name", "colour"}],
  "source_series_uid", "algorithm"}`` — colours as ``[r, g, b]`` 0–255; ``algorithm`` records the model that made
  the labels (``{"name": "MaskGen", "version": "<sha256 of the model file>", "model": path}``) or is ``null``
  for drawn labels.
* ``<stem>.txt``: an ITK-SNAP label description file (``IDX R G B A VIS MSH "LABEL"``), which ITK-SNAP, 3D Slicer
  and FreeSurfer-style tools load. Inside the quotes a backslash is written ``\\`` and a quote ``\"``, so every
  name reads back exactly; a name with a control character (newline, tab …) cannot be one line and is refused
  before anything is written.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .dicom_vr import control_character
from .errors import VolumeReadError, VolumeWriteError
from .nifti_names import strip_nifti_suffix
from .output_guard import is_regular_file, require_input_file

__all__ = [
    "FORMAT",
    "LabelClass",
    "LabelTable",
    "default_colour",
    "read_label_sidecars",
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
    if not is_regular_file(path):  # a FIFO is never opened (reading it would block)
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_label_sidecars(nifti_path: str | os.PathLike, table: LabelTable) -> tuple[list[Path], list[str]]:
    """Write both sidecars of ``nifti_path`` atomically; returns ``(written paths, notes)`` — a note when a
    foreign ``<stem>.json`` was left alone. A name the ITK-SNAP file cannot hold raises :class:`VolumeWriteError`
    before anything is written."""
    json_path, txt_path = sidecar_paths(nifti_path)
    check_names(table, txt_path)
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


def check_names(table: LabelTable, path: str | os.PathLike) -> None:
    """Refuse (:class:`VolumeWriteError` naming ``path`` and the class) a class name with a control character:
    it cannot be one line of the ITK-SNAP file."""
    for c in table.classes:
        problem = control_character(c.name)
        if problem:
            raise VolumeWriteError(
                path, f"the name of class {c.value} ({c.name!r}) holds {problem}; class names must be one line of text"
            )


def _quoted(name: str) -> str:
    """``name`` in double quotes, backslashes and quotes escaped (read back by :func:`_unquoted`)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquoted(text: str) -> str:
    """The label of an ITK-SNAP line's last field: ``"name"`` with ``\\\\`` and ``\\"`` unescaped (other backslashes
    kept, as other writers do not escape them), or an unquoted word. ``ValueError`` when the quote is not
    closed."""
    text = text.strip()
    if not text.startswith('"'):
        return text.split()[0] if text.split() else ""
    out, i = [], 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '\\"':
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out)
        out.append(ch)
        i += 1
    if text.count('"') >= 2:  # e.g. "dir\" from a writer that does not escape: everything up to the last quote
        return text[1 : text.rindex('"')]
    raise ValueError(f"the label {text} has no closing quotation mark")


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
        r, g, b = c.colour
        lines.append(f"{value:5d} {r:5d} {g:4d} {b:4d} {alpha:8g} {visible:2d} {visible:2d}    {_quoted(c.name)}")
    return "\n".join(lines) + "\n"


def read_label_sidecars(nifti_path: str | os.PathLike) -> LabelTable | None:
    """The table of ``nifti_path`` from ``<stem>.json`` (preferred) or ``<stem>.txt``; ``None`` when neither is
    there. A damaged sidecar raises :class:`VolumeReadError` naming it."""
    json_path, txt_path = sidecar_paths(nifti_path)
    for sidecar in (json_path, txt_path):  # a folder, FIFO or device named like a sidecar: refused, never opened
        if os.path.exists(sidecar):
            require_input_file(sidecar, "label table beside the labels", VolumeReadError)
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
        where = f"{path}, line {number}"
        match = _ITKSNAP_LINE.match(line)
        if match is None:
            raise VolumeReadError(where, 'not an ITK-SNAP label line (IDX R G B A VIS MSH "LABEL")')
        value, r, g, b = (int(match.group(i)) for i in range(1, 5))
        try:
            label = _unquoted(match.group(5))
        except ValueError as exc:
            raise VolumeReadError(where, str(exc)) from None
        name = "background" if value == 0 and label == "Clear Label" else label
        classes.append(LabelClass(value, name, (min(r, 255), min(g, 255), min(b, 255))))
    return LabelTable(tuple(classes))
