"""Errors raised by readers and writers: every message names the file and the problem."""

from __future__ import annotations

import os

from ..errors import DomaingenError


class DomaingenIOError(DomaingenError):
    """Base class; ``str(err)`` reads ``"<file>: <problem>"``.

    Not a ``ValueError`` on purpose: napari turns a writer's ``ValueError`` into a vague "not a valid writer"
    warning, and this message must reach the user.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VolumeReadError(DomaingenIOError):
    """A volume file could not be read."""


class VolumeWriteError(DomaingenIOError):
    """A volume could not be written."""


class ImageReadError(DomaingenIOError):
    """A histology image could not be read."""


class FileWriteError(DomaingenIOError):
    """An output file could not be written (read-only folder, full disk …); names the output, not a temporary
    file."""
