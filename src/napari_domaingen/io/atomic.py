"""Atomic file writes: write a temporary file in the target's folder, flush it to disk, rename it over the target.

A crash, a full disk or a cancelled job never leaves a half-written file where a good one was, and a reader never
sees a partial file. Every file the plugin writes goes through :func:`atomic_path` (or :func:`atomic_write_text`).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "a.csv", "step,loss\\n").read_text()
'step,loss\\n'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DomaingenIOError, FileWriteError

__all__ = ["atomic_path", "atomic_write_text", "default_file_mode"]


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: str) -> None:
    try:
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    except OSError:  # not every file system allows it; the rename stays atomic
        pass


def _write_error(path: Path, exc: OSError) -> FileWriteError:
    """An ``OSError`` met while writing ``path`` (or its hidden temporary file), said about ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return FileWriteError(path, f"cannot be written ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on a clean exit it is synced and renamed to ``path``.

    The folder is created if needed. If the block raises, the temporary file is removed and an existing ``path``
    is left untouched. ``suffix``: for writers that pick the format from the name (``".nii.gz"``). A file-system
    error (read-only folder, full disk, …) becomes a :class:`~.errors.FileWriteError` naming ``path``, never the
    hidden temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(handle)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except DomaingenIOError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.path == tmp:  # a writer's own error about the temporary file: say it of the real output
            raise type(exc)(path, exc.problem) from None
        raise
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
