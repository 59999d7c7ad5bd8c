"""Reading and writing checkpoint files safely: ``weights_only`` loads with clear errors, atomic writes.

Every checkpoint the plugin reads goes through :func:`read_checkpoint` (``torch.load(..., weights_only=True)``:
tensors, dicts, lists and plain values only; a pickle that would run code is refused). Every checkpoint it writes
goes through :func:`atomic_save`: a temporary file in the same folder, flushed to disk, then renamed over the
target, so a crash or a cancelled job never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..io.nifti import default_file_mode

__all__ = ["CheckpointLoadError", "UnsafeCheckpointError", "atomic_save", "read_checkpoint"]


class CheckpointLoadError(ValueError):
    """A file could not be read as the expected kind of checkpoint; the message names the file."""


class UnsafeCheckpointError(CheckpointLoadError):
    """The file holds pickled Python objects other than tensors; it was refused (weights_only=True)."""


def _pickle_detail(err: BaseException) -> str:
    """The informative part of torch's weights_only refusal, e.g. ``: Unsupported global: GLOBAL io.open``."""
    match = re.search(r"Unsupported (?:global: GLOBAL \S+|[^\n]*)", str(err))
    return f": {match.group(0).strip()}" if match else ""


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The object stored in a ``torch.save`` file, loaded on the CPU with ``weights_only=True``.

    Raises ``FileNotFoundError``, :class:`UnsafeCheckpointError` (code-running pickles) or
    :class:`CheckpointLoadError` (not a torch file, corrupt or truncated), each naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path):
        if head == b"PK":
            raise CheckpointLoadError(f"{path}: corrupt or truncated checkpoint (incomplete download?)")
        if not head.startswith(b"\x80"):
            raise CheckpointLoadError(
                f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refused to load — the file contains pickled Python objects other than tensors, which "
            f"could execute code when loaded (only plain state dicts are accepted; loaded with "
            f"weights_only=True){_pickle_detail(err)}"
        ) from err
    except Exception as err:
        raise CheckpointLoadError(
            f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    The folder is created if needed. On any failure the temporary file is removed and an existing ``path`` is
    left untouched. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
