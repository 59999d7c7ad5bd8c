"""Contrast names: recognise a contrast from a file name or series description, and name layers.

:func:`contrast_of` is token based and case-insensitive: BraTS ``-t1n``/``-t1c``/``-t2w``/``-t2f``, TCGA
``_t1_``/``_t1c_``/``_t2_``/``_fla_``, ``t1ce``, ``flair``, ``seg``/``label``/``mask`` … → one of
:data:`CONTRASTS`. :func:`layer_names` names a group ``"<subject> <contrast>"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .nifti import is_nifti_path, strip_nifti_suffix


class Named(Protocol):
    """What :func:`layer_names` reads of a volume (a ``volume_scan.Candidate``): its file stem and contrast."""

    stem: str
    contrast: str | None


CONTRASTS = ("T1", "T1c", "T2", "FLAIR", "labels")

# token → contrast; a name is split into lower-case alphanumeric tokens
_TOKENS: dict[str, str] = {
    **dict.fromkeys(("t1", "t1n", "t1w", "t1native", "mprage", "spgr"), "T1"),
    **dict.fromkeys(("t1c", "t1ce", "t1gd", "t1post", "t1wce", "t1cgd", "t1contrast"), "T1c"),
    **dict.fromkeys(("t2", "t2w"), "T2"),
    **dict.fromkeys(("flair", "fla", "t2f", "t2flair"), "FLAIR"),
    **dict.fromkeys(("seg", "segmentation", "label", "labels", "mask", "aseg", "parc"), "labels"),
}
# a T1 name with one of these tokens is post-contrast (BIDS "ce-gd_T1w", DICOM "T1 AX POST GD")
_CONTRAST_AGENT = {"ce", "gd", "gad", "gado", "gadolinium", "post", "contrast", "c"}
# when a name carries several contrast tokens, the first of this list wins ("t2_flair" is FLAIR, "t1_seg" labels)
_PRIORITY = ("labels", "FLAIR", "T1c", "T2", "T1")
_SEPARATORS = re.compile(r"([^A-Za-z0-9]+)")

_RANK = {contrast: rank for rank, contrast in enumerate(CONTRASTS)}  # folder listing order: T1 first

LAYER_STYLE: dict[str, dict[str, Any]] = {
    "T1": {"name": "T1", "colormap": "gray", "layer_type": "image"},
    "T1c": {"name": "T1c", "colormap": "gray", "layer_type": "image"},
    "T2": {"name": "T2", "colormap": "gray", "layer_type": "image"},
    "FLAIR": {"name": "FLAIR", "colormap": "gray", "layer_type": "image"},
    "labels": {"name": "labels", "colormap": None, "layer_type": "labels"},
}


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def contrast_of(name: str | os.PathLike) -> str | None:
    """The contrast a file name or series description names, or ``None``.

    Folders and NIfTI suffixes are ignored; matching is on whole tokens (``"t1"`` in ``"_t1_bet"``, not in
    ``"t10"``). Returns one of :data:`CONTRASTS`.
    """
    text = strip_nifti_suffix(name) if is_nifti_path(name) else Path(str(name)).name
    tokens = _tokens(text)
    found = {_TOKENS[t] for t in tokens if t in _TOKENS}
    if "T1" in found and _CONTRAST_AGENT & set(tokens):
        found.add("T1c")
    for contrast in _PRIORITY:
        if contrast in found:
            return contrast
    return None


def subject_of(stems: Sequence[str]) -> str:
    """The common leading tokens of the names (case-insensitive, cut at a separator), trimmed.

    One name: everything before its contrast token (``"BraTS-GLI-00001-000-t1c"`` → ``"BraTS-GLI-00001-000"``).
    """
    if not stems:
        return ""
    split = [_SEPARATORS.split(s) for s in stems]  # tokens interleaved with separators
    if len(split) == 1:
        parts = split[0]
        for index, part in enumerate(parts):
            if part.lower() in _TOKENS:
                return "".join(parts[:index]).strip("-_. ")
        return ""
    common: list[str] = []
    for items in zip(*split):
        if all(i.lower() == items[0].lower() for i in items):
            common.append(items[0])
        else:
            break
    return "".join(common).strip("-_. ")


def layer_names(candidates: Sequence[Named]) -> list[str]:
    """``"<subject> <contrast>"`` per candidate; unrecognised ones keep their own name.

    A contrast that occurs more than once keeps the rest of each file name (``"<subject> inpainting-mask"``).
    """
    subject = subject_of([c.stem for c in candidates])
    counts: dict[str | None, int] = {}
    for c in candidates:
        counts[c.contrast] = counts.get(c.contrast, 0) + 1
    names = []
    for c in candidates:
        if c.contrast is None:
            names.append(c.stem)
            continue
        label = LAYER_STYLE[c.contrast]["name"]
        if counts[c.contrast] > 1:
            rest = c.stem[len(subject) :].strip("-_. ") if c.stem.lower().startswith(subject.lower()) else c.stem
            label = rest or label
        names.append(f"{subject} {label}".strip())
    return _unique(names)


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        candidate, n = name, 2
        while candidate in out:
            candidate, n = f"{name} ({n})", n + 1
        out.append(candidate)
    return out
