"""The one checkpoint format: tagged files read safely (``weights_only``) and written atomically.

Every file the plugin writes for a model is a dict ``{"format": TAG, "version": 1, ...}`` where ``TAG`` names its
kind (:data:`KINDS`): a MaskGen/ERM segmentation model, a DGM-DR anatomy/style model or a pretrained feature
extractor. A resumable file also holds ``"training"`` (see :mod:`napari_domaingen.core.training`). Reading goes
through :func:`read_checkpoint` (tensors, dicts, lists and plain values only; a pickle that would run code is
refused) and :func:`read_kind`, which says what a file of another kind is. Writing goes through :func:`atomic_save`.

>>> sorted(KINDS)
['extractor', 'maskgen', 'swap']
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import DomaingenError
from ..io.atomic import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "CheckpointLoadError",
    "UnsafeCheckpointError",
    "atomic_save",
    "file_kind",
    "read_checkpoint",
    "read_kind",
    "tagged",
]

#: kind → (format tag stored in the file, what it is for people, where it belongs)
KINDS: dict[str, tuple[str, str, str]] = {
    "maskgen": ("napari-domaingen/maskgen", "a MaskGen/ERM segmentation model", "segment with it (--model)"),
    "swap": ("napari-domaingen/dgm", "a DGM-DR anatomy/style model", "swap with it (--model)"),
    "extractor": (
        "napari-domaingen/extractor",
        "a feature extractor",
        "choose it as the feature extractor (--weights)",
    ),
}
FORMAT_VERSION = 1


class CheckpointLoadError(DomaingenError, ValueError):
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


def tagged(kind: str, **content: Any) -> dict[str, Any]:
    """``{"format": TAG, "version": FORMAT_VERSION, **content}``: the head of every file of ``kind``."""
    return {"format": KINDS[kind][0], "version": FORMAT_VERSION, **content}


def file_kind(obj: Any) -> str | None:
    """The kind (a key of :data:`KINDS`) of a loaded checkpoint, also for untagged older files; ``None`` if unknown.

    Untagged files: a bare ViT encoder state dict is ``"swap"``; files from ``pretrain-extractor`` before the
    tag existed, and plain anatomix weights, are ``"extractor"``.
    """
    if not isinstance(obj, dict):
        return None
    tag = obj.get("format")
    for kind, (known, _, _) in KINDS.items():
        if tag == known:
            return kind
    if tag is not None:
        return None
    state = obj.get("model", obj.get("state_dict", obj))
    keys = [str(k) for k in state] if isinstance(state, dict) else []
    if any(k.endswith("patch_embed.proj.weight") for k in keys):
        return "swap"
    if "pretraining" in obj or any(k.startswith(("model.", "_orig_mod.model.", "module.model.")) for k in keys):
        return "extractor"
    return None


def read_kind(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """The dict stored in ``path``, which must be a file of ``kind``; otherwise :class:`CheckpointLoadError`
    saying what the file is and where it belongs (e.g. ``"… is a DGM-DR anatomy/style model, not a MaskGen/ERM
    segmentation model: swap with it (--model)"``)."""
    obj = read_checkpoint(path)
    found = file_kind(obj)
    wanted = KINDS[kind][1]
    if found != kind:
        if found is None:
            tag = obj.get("format") if isinstance(obj, dict) else None
            if tag:
                raise CheckpointLoadError(f"{path}: a '{tag}' file, not {wanted}")
            raise CheckpointLoadError(
                f"{path}: not {wanted} (neither a napari-domaingen model file nor the weights of a network it knows)"
            )
        _, name, use = KINDS[found]
        raise CheckpointLoadError(f"{path}: this is {name}, not {wanted}: {use}")
    if int(obj.get("version", FORMAT_VERSION)) > FORMAT_VERSION:
        raise CheckpointLoadError(
            f"{path}: written by a newer napari-domaingen (format version {obj['version']}); update the plugin"
        )
    return obj


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :mod:`napari_domaingen.io.atomic`); returns the path."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
