"""The package's own error base: every error it raises on purpose derives from :class:`DomaingenError`.

The CLI catches this one class and prints its message (one line naming the file and the problem); widgets show it
in their status line. Subclasses may also derive from a built-in (``ValueError``, ``FileNotFoundError``) so that
callers catching those keep working.

>>> from napari_domaingen.errors import DomaingenError
>>> issubclass(DomaingenError, Exception)
True
"""

from __future__ import annotations

__all__ = ["DomaingenError", "TrainingError"]


class DomaingenError(Exception):
    """Base class of the errors napari-domaingen raises on purpose; ``str(err)`` is the message for people."""


class TrainingError(DomaingenError):
    """A training run cannot go on (diverging loss, non-finite weights, too many skipped steps, a resume that does
    not fit the run); the last checkpoint written is kept."""
