"""Values checked against their DICOM value representation (PS3.5 §6.2) before they go into a file we write.

* LO (long string): at most 64 characters, no backslash (it separates values), no control characters.
* UI (unique identifier): at most 64 characters, digits and dots, components without leading zeros.
* DA (date): ``YYYYMMDD``, a real calendar date.

>>> lo_problem("necrotic core") is None
True
>>> lo_problem("a\\nb")
'holds a newline; a DICOM LO value must be one line of text'
>>> uid_problem("1.2.840.10008.5.1.4.1.1.66.4") is None, uid_problem("1.02.3") is not None
(True, True)
>>> normalised_date("2020-01-31"), normalised_date("19991301"), normalised_date("")
('20200131', '', '')
"""

from __future__ import annotations

import datetime
import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import VolumeWriteError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "ALGORITHM_TYPES",
    "LO_MAX",
    "UI_MAX",
    "check_segment_texts",
    "check_source_values",
    "control_character",
    "lo_problem",
    "normalised_date",
    "safe_lo",
    "uid_problem",
]

LO_MAX = 64
UI_MAX = 64
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\f": "a form feed"}


def control_character(text: str) -> str | None:
    """The first control character of ``text`` in words, or ``None`` (ESC is allowed: it switches character
    sets)."""
    for ch in text:
        if ch != "\x1b" and unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return _CONTROL_NAMES.get(ch, f"the control character U+{ord(ch):04X}")
    return None


def lo_problem(value: str) -> str | None:
    """Why ``value`` is not a valid LO value (words for a message), or ``None``."""
    control = control_character(value)
    if control:
        return f"holds {control}; a DICOM LO value must be one line of text"
    if "\\" in value:
        return "holds a backslash '\\', which DICOM reserves to separate values"
    if len(value) > LO_MAX:
        return f"is {len(value)} characters long; DICOM allows at most {LO_MAX} here (VR LO)"
    return None


def safe_lo(value: str) -> str:
    """``value`` made a valid LO value: control characters become spaces, backslashes slashes, cut to 64
    characters (for text we compose ourselves, e.g. a series description from the source's)."""
    text = "".join(" " if (ch != "\x1b" and unicodedata.category(ch) in ("Cc", "Zl", "Zp")) else ch for ch in value)
    return text.replace("\\", "/")[:LO_MAX].strip()


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` is not a valid DICOM UID (words for a message), or ``None``."""
    if not uid:
        return "is empty"
    if len(uid) > UI_MAX:
        return f"is {len(uid)} characters long; a DICOM UID has at most {UI_MAX}"
    if not _UID.match(uid):
        return "is not a DICOM UID (digits in dot-separated components, no leading zeros, e.g. 1.2.840.10008)"
    return None


def normalised_date(value: str) -> str:
    """A DA value ``YYYYMMDD`` from ``value`` (``YYYYMMDD``, or the old ``YYYY.MM.DD`` / ISO ``YYYY-MM-DD``);
    ``""`` when it is empty or not a real date (a type 2 attribute may be empty: unknown)."""
    text = str(value or "").strip()
    match = re.fullmatch(r"(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})", text)
    if not match:
        return ""
    try:
        datetime.date(*(int(g) for g in match.groups()))
    except ValueError:
        return ""
    return "".join(match.groups())


# --------------------------------------------------------------------------------------- DICOM-SEG values

ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
#: UIDs a SEG copies from each source image (its references, study and frame of reference)
SOURCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
#: dates (DA) a SEG copies from its source images
SOURCE_DATES = ("PatientBirthDate", "StudyDate")


def check_segment_texts(
    path: str | os.PathLike,
    names: dict[int, str],
    algorithm: dict[str, str] | None,
    description: str | None,
) -> None:
    """Refuse, before a SEG is built, a segment label (``names``: label value → class name), algorithm name,
    version or type, or a content description that DICOM does not allow; the message names the class or field."""
    for value, name in names.items():
        problem = lo_problem(name) if name.strip() else "is empty"
        if problem:
            raise VolumeWriteError(path, f"the name of class {value} ({name!r}) {problem}; rename the class")
    if algorithm:
        kind = str(algorithm.get("type", "AUTOMATIC"))
        if kind not in ALGORITHM_TYPES:
            raise VolumeWriteError(path, f"the algorithm type {kind!r} is not one of {', '.join(ALGORITHM_TYPES)}")
        for field in ("name", "version"):
            text = str(algorithm.get(field, "") or "")
            problem = lo_problem(text)
            if problem:
                raise VolumeWriteError(path, f"the algorithm {field} ({text!r}) {problem}")
    if description is not None:
        problem = lo_problem(description)
        if problem:
            raise VolumeWriteError(path, f"the description ({description!r}) {problem}")


def check_source_values(path: str | os.PathLike, members: list[tuple[Path, Dataset]]) -> None:
    """Refuse source images whose UIDs a SEG must copy are not DICOM UIDs (the SEG would be invalid and could not
    reference them); dates it copies are made ``YYYYMMDD`` (or empty, unknown, when they are no date)."""
    for source, ds in members:
        for keyword in SOURCE_UIDS:
            if keyword in ds:
                with warnings.catch_warnings():  # pydicom's own warning about the value: our message says it
                    warnings.simplefilter("ignore")
                    uid = str(ds.get(keyword) or "")
                problem = uid_problem(uid)
                if problem:
                    raise VolumeWriteError(
                        path,
                        f"the source image {source} has {keyword} {uid!r}, which {problem}; it cannot be referenced",
                    )
        for keyword in SOURCE_DATES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if keyword in ds and str(ds.get(keyword) or ""):
                    setattr(ds, keyword, normalised_date(str(ds.get(keyword))))
