"""Sub-widget of the swap widget: which anatomy/style model to use (the shipped one, a file, or the model just
fine-tuned), on which device, and a line describing it.

It resolves the choice to what to load and a cache key; the owner keeps the loaded models (``models``, keyed by
:data:`~._swap_options.ModelKey`) so the description says whether a model is loaded yet.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, FileEdit, Label

from ..core.device import available_devices, resolve_device
from ..core.swap_job import describe_model
from ..core.swap_model import DEFAULT_MODEL, SwapModel, default_model_path
from ._choices import file_value
from ._jobs import set_status
from ._swap_options import ModelKey

__all__ = ["MODEL_CHOICES", "ModelChoice"]

MODEL_CHOICES = {"default": "shipped default", "file": "model file", "finetuned": "the model just fine-tuned"}


class ModelChoice:
    """The ``model`` / ``model file`` / ``device`` controls and the ``info`` line. ``finetuned_path``: the model
    fine-tuned in this session (offered as a third choice once set)."""

    def __init__(self, models: OrderedDict[ModelKey, SwapModel]) -> None:
        self.models = models
        self.finetuned_path: Path | None = None
        self.model = ComboBox(
            label="model",
            choices=self._choices,
            value="default",
            tooltip="the shipped model (small ViT trained on re-stainings of scikit-image's IHC "
            "image), a model file, or the model fine-tuned below",
        )
        self.model_file = FileEdit(
            label="model file",
            mode="r",
            filter="*.pt *.pth",
            nullable=True,
            tooltip="a DGM-DR model file (napari-domaingen format, or a bare ViT encoder "
            "state dict trained with the authors' code)",
        )
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.info = Label(value="")
        self.model.changed.connect(self.describe)
        self.model_file.changed.connect(self._on_file)

    def _choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        keys = ["default", "file"] + (["finetuned"] if self.finetuned_path is not None else [])
        return [(MODEL_CHOICES[key], key) for key in keys]

    def source(self) -> str:
        """What the choice points at: ``"default"`` or a file path; ``ValueError`` saying what is missing."""
        choice = self.model.value
        if choice == "default":
            if not default_model_path().is_file():
                raise ValueError(
                    f"the shipped anatomy/style model is not installed ({default_model_path()}); "
                    "choose a model file (or reinstall napari-domaingen)"
                )
            return DEFAULT_MODEL
        path = self.finetuned_path if choice == "finetuned" else file_value(self.model_file.value)
        if path is None:
            raise ValueError("choose a model file (.pt) first")
        if not path.is_file():
            raise ValueError(f"the model file does not exist: {path}")
        return str(path)

    def key(self) -> tuple[ModelKey, str, str]:
        """(cache key, what to load, resolved device); ``ValueError`` saying what is wrong."""
        source = self.source()
        path = default_model_path() if source == DEFAULT_MODEL else Path(source)
        stat = path.stat()
        device = str(resolve_device(self.device.value))
        return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, device), source, device

    def _on_file(self, _value: Any = None) -> None:
        if file_value(self.model_file.value) is not None and self.model.value != "file":
            self.model.value = "file"  # describes it (changed signal)
        else:
            self.describe()

    def describe(self, _value: Any = None) -> None:
        """Describe the chosen model (or say what is missing)."""
        try:
            key, source, _ = self.key()
        except (OSError, ValueError) as err:
            set_status(self.info, str(err))
            return
        model = self.models.get(key)
        if model is not None:
            set_status(self.info, describe_model(model))
        else:
            name = "shipped default" if source == DEFAULT_MODEL else Path(source).name
            set_status(self.info, f"{name}: loaded at the first swap")

    def select_finetuned(self, path: Path) -> None:
        """Offer ``path`` as "the model just fine-tuned" and choose it."""
        self.finetuned_path = path
        self.model.reset_choices()
        if self.model.value == "finetuned":
            self.describe()  # the same choice, a new file: describe it again
        else:
            self.model.value = "finetuned"
