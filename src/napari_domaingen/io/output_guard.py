"""The one output guard every job passes before it runs: inputs are never written over, nothing is written outside
the output folder, inputs that are not regular files are refused before they are opened.

* :func:`check_outputs` — an output that resolves (symbolic links included) to an input file, to an input folder,
  or into an input DICOM series' folder (or any input folder) is refused, naming the output and the input.
* :func:`check_batch_out` — a batch folder that is the cohort folder, lies inside a case folder or inside a
  folder holding a case's inputs, or is a cohort input itself, is refused.
* :func:`inside` / :func:`require_inside` — an output of a case proved to lie under ``OUT/<case>/`` after
  resolving.
* :func:`check_case_name` — a case name that could leave ``OUT`` (a path separator, ``..``, ``.``, an absolute
  path, control characters) is refused where the cohort is read.
* :func:`require_input_file` / :func:`require_input` — an input path that is missing, a folder where a file is
  expected, or not a regular file (FIFO, socket, device) is refused at once, without opening it.

Every refusal is an :class:`OutputError` or :class:`InputError` whose message starts with the path it is about.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> (folder / "t1.nii.gz").write_bytes(b"")
0
>>> check_outputs([folder / "labels.nii.gz"], inputs=[folder / "t1.nii.gz"])
>>> try:
...     check_outputs([folder / "t1.nii.gz"], inputs=[folder / "t1.nii.gz"])
... except OutputError as error:
...     print(error.problem.split(" the input")[0])
this output would overwrite
>>> check_case_name("case-007")
'case-007'
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .dicomweb import is_dicomweb
from .errors import DomaingenIOError

__all__ = [
    "InputError",
    "OutputError",
    "check_batch_out",
    "check_case_name",
    "check_outputs",
    "inside",
    "is_regular_file",
    "require_input",
    "require_input_file",
    "require_inside",
    "resolved",
]

PathLike = str | os.PathLike[str]


class OutputError(DomaingenIOError):
    """An output path is refused (``"<output>: <problem>"``): it would overwrite an input or leave the output
    folder."""


class InputError(DomaingenIOError):
    """An input path is refused before it is opened (``"<input>: <problem>"``): missing, a folder where a file is
    expected, or not a regular file."""


def resolved(path: PathLike) -> Path:
    """``path`` made absolute with every symbolic link resolved (also for paths that do not exist yet)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def inside(path: PathLike, root: PathLike) -> bool:
    """Whether ``path`` is ``root`` or lies below it, after resolving both."""
    path, root = resolved(path), resolved(root)
    return path == root or root in path.parents


def require_inside(path: PathLike, root: PathLike, what: str = "the output folder") -> Path:
    """``path`` if it lies under ``root`` (after resolving); else :class:`OutputError`."""
    if not inside(path, root):
        raise OutputError(path, f"lies outside {what} {root}; refusing to write it")
    return Path(path)


def _kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is, in words; ``None`` for a regular file or a folder."""
    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return None


def require_input(path: PathLike, what: str = "input", error: type[DomaingenIOError] = InputError) -> Path:
    """An input that may be a file or a folder (a DICOM series): it must exist and, if not a folder, be a regular
    file. Nothing is opened. ``error``: the class raised (a reader's own, e.g. ``VolumeReadError``)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(path, f"no such file or folder (the {what})") from None
    except OSError as exc:
        raise error(path, f"cannot be read ({exc.strerror or exc})") from None
    kind = _kind(mode)
    if kind is not None:
        raise error(path, f"is {kind}, not a file; give a regular file as the {what}")
    return Path(path)


def require_input_file(path: PathLike, what: str = "input", error: type[DomaingenIOError] = InputError) -> Path:
    """An input that must be a regular file: not missing, not a folder, not a FIFO/socket/device. Nothing is
    opened. ``error``: the class raised (a reader's own, e.g. ``VolumeReadError``)."""
    require_input(path, what, error)
    if os.path.isdir(path):
        raise error(path, f"is a folder, but the {what} must be a file")
    return Path(path)


def is_regular_file(path: PathLike) -> bool:
    """Whether ``path`` is a regular file (symbolic links followed); never opens it (a FIFO would block)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def check_outputs(
    outputs: Iterable[PathLike | None],
    inputs: Iterable[PathLike | None],
    *,
    series_folders: Iterable[PathLike | None] = (),
    distinct: bool = True,
) -> None:
    """Refuse, before anything runs, every output that would overwrite an input.

    ``outputs``: the files (or output folders) a job will write; ``inputs``: the files and folders it reads
    (``None`` entries are skipped). An output is refused when it resolves (symbolic links included) to an input,
    lies inside an input folder (a DICOM series' folder: writing there adds a file to the series), or, for an
    output folder, holds an input. ``series_folders``: folders of DICOM series read from one of their files or a
    zip, guarded like input folders (the caller knows which inputs are series). ``distinct``: two outputs may not
    be the same file either.
    """
    ins = [resolved(p) for p in inputs if p is not None]
    folders = [resolved(p) for p in series_folders if p is not None] + [p for p in ins if p.is_dir()]
    seen: dict[Path, PathLike] = {}
    for output in outputs:
        if output is None:
            continue
        out = resolved(output)
        for source in ins:
            if out == source:
                raise OutputError(output, f"this output would overwrite the input {source}")
            if os.path.isdir(out) and out in source.parents:
                raise OutputError(output, f"this output folder holds the input {source}; choose another folder")
        for folder in folders:
            if folder in out.parents:
                raise OutputError(
                    output,
                    f"this output lies inside the input folder {folder} (a DICOM series or dataset); "
                    "write it elsewhere",
                )
        if distinct and out in seen:
            raise OutputError(output, f"the same file is given for two outputs ({seen[out]} and {output})")
        seen[out] = output


def check_batch_out(out: PathLike, cohort_source: PathLike, case_inputs: Iterable[PathLike]) -> None:
    """Refuse a batch folder ``out`` that is the cohort folder or lies inside it (a case folder), that holds any
    case's input (``case_inputs``: every file or series folder of the cohort), or that lies inside an input
    folder (a DICOM series). Nothing is created."""
    out_r = resolved(out)
    source = None if is_dicomweb(cohort_source) else resolved(cohort_source)  # a query: its series go to a cache
    if source is not None and source.is_dir() and (out_r == source or source in out_r.parents):
        where = "is the cohort folder" if out_r == source else "lies inside the cohort folder"
        raise OutputError(
            out,
            f"the batch folder {where} {source}, where the cases' own files would be overwritten; choose a "
            "folder outside the cohort",
        )
    for item in case_inputs:
        if is_dicomweb(item):  # a series on a server, fetched into the cache
            continue
        path = resolved(item)
        if path == out_r or out_r in path.parents:
            raise OutputError(out, f"the batch folder holds the case input {path}; choose a folder outside the data")
        if path.is_dir() and path in out_r.parents:
            raise OutputError(out, f"the batch folder lies inside the input folder {path}; choose another folder")


def output_folder(path: PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` if needed and prove it writable (a hidden probe file, removed at once), so a
    read-only or full destination is said before any work; a file there is refused."""
    import tempfile

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(path, f"is a file, but the {what} must be a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".domaingen-probe.", dir=folder):
            pass
    except OSError as exc:
        raise OutputError(path, f"the {what} cannot be written ({exc.strerror or exc})") from None
    return folder


_SEPARATORS = ("/", "\\")


def check_case_name(name: str, where: str | None = None) -> str:
    """A case name usable as one folder below the batch folder; else :class:`OutputError` (``where``: e.g.
    ``"manifest.csv, row 4"``, named in the message)."""
    label = f"{where}: case name {name!r}" if where else name
    if not name or not name.strip():
        raise OutputError(label, "a case name must not be empty")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise OutputError(label, "a case name must not hold control characters (tabs, newlines …)")
    if os.path.isabs(name) or any(sep in name for sep in _SEPARATORS) or name in (".", "..") or ":" in name[:2]:
        raise OutputError(
            label,
            "a case name must be a plain folder name (no '/', '\\\\', '..' or '.'): it would write outside the "
            "batch folder",
        )
    return name
