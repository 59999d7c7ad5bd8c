"""Dock widget: anatomy / style swap of two 2D histology images with a DGM-DR model, and fine-tuning that model.

Thin by design: it takes two 2D image layers (RGB, RGBA or grayscale), a model (the shipped default, a file, or
the model just fine-tuned here) and a style rule (a point on the style image, the style image's mean, or the mean
inside a painted region), and runs :mod:`napari_domaingen.core.swap` in a ``thread_worker``:
:func:`~napari_domaingen.core.swap.encode` (the expensive part) once per layer and model, then
:func:`~napari_domaingen.core.swap.render` for every output. Encodings are cached per layer (its identity, the
``unique_id``, the identity of its data array, shape and dtype), model file and tile overlap, so moving the style point or
repainting the region only re-renders the one output that depends on it.

Outputs are RGB image layers, added or updated in place (by name), each on the grid of the image whose anatomy
it shows (``scale``/``translate``/``affine`` and the ``metadata["domaingen"]`` entry of that layer; nothing is
moved beside the inputs): ``<A> reconstruction``, ``<S> reconstruction``, ``<A> anatomy × <S> style`` (the
style rule) and ``<S> anatomy × <A> style`` (the mean style of A). *Generate variants* adds
``<A> anatomy × <S> style variants``, a ``(N, Y, X, 3)`` stack of A rendered with N random style patches of S.

The *Fine-tune* panel trains the current model on the two images
(:func:`~napari_domaingen.core.swap_training.train_swap` with ``init=`` the current model) and selects the result
as "the model just fine-tuned" when it finishes.

What runs in the worker is in :mod:`.swap_jobs`; the style point and region layers (and how they show in grid
mode) in :mod:`._swap_layers`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QComboBox, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from .._napari.layers import META_KEY, geometry_kwargs, stack_geometry_kwargs
from ..core.device import available_devices, resolve_device
from ..core.progress import Progress
from ..core.swap import DEFAULT_OVERLAP, EncodedImage
from ..core.swap_model import DEFAULT_MODEL, SwapModel, default_model_path
from ..core.swap_training import SwapTrainResult, SwapTrainSettings
from ..core.training import format_seconds
from ._choices import file_value, grid_of, layer_key, layer_named, same_layer
from ._jobs import JobRunner, cancelled_training_message, set_status, show_fraction, show_problem
from ._layout import scroll_layout
from ._loss_plot import LossPlot
from ._swap_layers import OUTPUT_KEY, POINT_LAYER, REGION_LAYER, StylePickers, arrange_grid, bring_to_top
from .swap_jobs import (
    DEFAULT_VARIANTS,
    CacheKey,
    ImageInput,
    ModelKey,
    SwapOutcome,
    SwapRequest,
    finetune_job,
    swap_job,
)

if TYPE_CHECKING:
    import napari

__all__ = ["DEFAULT_FINETUNE_OUTPUT", "OUTPUT_KEY", "SwapWidget", "image_layer_problem"]

DEFAULT_FINETUNE_OUTPUT = Path.home() / ".cache" / "napari-domaingen" / "swap-finetuned.pt"
FINETUNE_LR = 1e-4  # a tenth of the from-scratch rate: adapt the shipped model without forgetting it
FINETUNE_STEPS = 200
FINETUNE_BATCH = 8
AUTO_RENDER_MS = 60  # point moves / paint strokes within this interval share one re-render
MAX_CACHED_ENCODINGS = 6
MODEL_CHOICES = {"default": "shipped default", "file": "model file", "finetuned": "the model just fine-tuned"}
STYLE_MODES = {
    "point": "point: the style of the patch under the 'style point' on the style image (click or drag it)",
    "mean": "mean: the mean style of the whole style image",
    "region": "region: the mean style inside the region painted in the 'style region' Labels layer",
}


def _is_output(layer: Any) -> bool:
    entry = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    return OUTPUT_KEY in entry


def image_layer_problem(layer: Any, role: str) -> str | None:
    """Why ``layer`` cannot be the ``role`` image of a swap (``None`` when it can: a 2D RGB/RGBA or grayscale
    image layer that is not a pyramid)."""
    if layer is None:
        return f"choose the {role} image: open two 2D histology images (RGB or grayscale) first"
    if getattr(layer, "multiscale", False):
        return (f"{role} image '{layer.name}' is a multiscale (pyramid) image; the swap works on one 2D image: "
                "open a lower-resolution level or a crop as a plain image layer")
    if layer.ndim != 2:
        kind = "RGB " if layer.rgb else ""
        return (f"{role} image '{layer.name}' is a {layer.ndim}D {kind}image (shape {tuple(layer.data.shape)}); the "
                "swap works on 2D images (RGB, RGBA or grayscale): choose a 2D layer or copy one slice into a new "
                "layer")
    return None


def _output_named(viewer: Any, name: str) -> Any:
    """This widget's output layer called ``name``, or ``None``."""
    layer = layer_named(viewer, name)
    return layer if layer is not None and _is_output(layer) else None


def _layer_key(layer: Any) -> tuple[Any, ...]:
    """What an encoding is cached under: the layer (through napari's proxies), its data array, shape and dtype."""
    data = layer.data
    return (layer_key(layer), id(data), tuple(data.shape), str(getattr(data, "dtype", "")))


def _input_note(layer: Any, role: str) -> str:
    """What the swap does with this input's colours (empty for plain RGB)."""
    if not layer.rgb:
        return f"{role} image '{layer.name}' is grayscale: converted to RGB (the model only knows colour images)"
    if layer.data.shape[-1] == 4:
        return f"{role} image '{layer.name}' is RGBA: composited on white"
    return ""


# ---------------------------------------------------------------------------------------------------- widget


class SwapWidget(QWidget):
    """Swap the anatomy and the style (stain appearance) of two 2D histology images with a DGM-DR model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_outcome: SwapOutcome | None = None
        self.last_training: SwapTrainResult | None = None
        self.finetuned_path: Path | None = None
        self._models: OrderedDict[ModelKey, SwapModel] = OrderedDict()
        self._encodings: OrderedDict[CacheKey, EncodedImage] = OrderedDict()
        self._job: dict[str, Any] = {}
        self._train_info: dict[str, Any] = {}
        self._pending_auto = False
        self.pickers = StylePickers(self.viewer, self._on_point_moved, self._on_paint)
        self._stride_before: int | None = None  # the grid stride the user had before the swap grid took over
        self._auto_default_style = True

        # ---- inputs and model
        self._anatomy = ComboBox(label="anatomy from", choices=self._image_layers, nullable=False,
                                 tooltip="the image whose tissue layout (anatomy) is kept: a 2D RGB or grayscale "
                                         "image layer")
        self._style = ComboBox(label="style from", choices=self._image_layers, nullable=False,
                               tooltip="the image whose stain appearance (style) is applied")
        self._model = ComboBox(label="model", choices=self._model_choices, value="default",
                               tooltip="the shipped model (small ViT trained on re-stainings of scikit-image's IHC "
                                       "image), a model file, or the model fine-tuned below")
        self._model_file = FileEdit(label="model file", mode="r", filter="*.pt *.pth", nullable=True,
                                    tooltip="a DGM-DR model file (napari-domaingen format, or a bare ViT encoder "
                                            "state dict trained with the authors' code)")
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._overlap = FloatSpinBox(label="tile overlap", value=DEFAULT_OVERLAP, min=0.0, max=0.75, step=0.05,
                                     tooltip="fraction by which the model's tiles overlap (blended with a Gaussian "
                                             "window, no seams); more overlap: slower encoding")
        self._model_info = Label(value="")

        # ---- style and swap
        self._mode = ComboBox(label="style", choices=[(text.split(":")[0], key) for key, text in STYLE_MODES.items()],
                              value="point", tooltip="\n".join(STYLE_MODES.values()))
        for index, text in enumerate(STYLE_MODES.values()):
            self._mode.native.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)
        self._swap_button = PushButton(text="Swap")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._count = SpinBox(label="variants N", value=DEFAULT_VARIANTS, min=1, max=64,
                              tooltip="how many random style patches of the style image to render the anatomy with")
        self._seed = SpinBox(label="seed", value=0, min=0, max=1_000_000, tooltip="which random patches")
        self._variants_button = PushButton(text="Generate N variants")
        self._progress = ProgressBar(value=0, min=0, max=1000)
        self._status = Label(value="")

        # ---- fine-tune
        self._ft_steps = SpinBox(label="steps", value=FINETUNE_STEPS, min=1, max=1_000_000,
                                 tooltip="optimiser steps (cosine learning-rate schedule after 20 warm-up steps)")
        self._ft_lr = FloatSpinBox(label="learning rate", value=FINETUNE_LR, min=1e-6, max=1e-2, step=1e-5,
                                   tooltip="AdamW learning rate; 1e-4 for fine-tuning (training from scratch uses "
                                           "1e-3)")
        self._ft_batch = SpinBox(label="batch size", value=FINETUNE_BATCH, min=1, max=64,
                                 tooltip="random 64 px crops per step (flips and 90° rotations)")
        self._ft_output = FileEdit(label="save model to", mode="w", filter="*.pt", value=DEFAULT_FINETUNE_OUTPUT,
                                   tooltip="the fine-tuned model (written atomically every 50 steps and at the end)")
        self._ft_start = PushButton(text="Start fine-tuning")
        self._ft_cancel = PushButton(text="Cancel", enabled=False)
        self._ft_progress = ProgressBar(value=0, min=0, max=1000)
        self._ft_status = Label(value="")
        for label, lines in ((self._model_info, 2), (self._status, 3), (self._ft_status, 3)):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            label.native.setMinimumHeight(lines * label.native.fontMetrics().lineSpacing())
        self.plot = LossPlot(loss_label="loss (sum of 3 MSE)", score_label="")
        self.plot.dice_ax.set_visible(False)  # no validation score here

        self._container = Container(
            widgets=[
                self._anatomy, self._style, self._model, self._model_file, self._model_info, self._device,
                self._overlap, self._mode,
                Container(widgets=[self._swap_button, self._cancel_button], layout="horizontal", labels=False),
                self._count, self._seed, self._variants_button, self._progress, self._status,
            ]
        )
        self._finetune = Container(
            widgets=[
                self._ft_steps, self._ft_lr, self._ft_batch, self._ft_output,
                Container(widgets=[self._ft_start, self._ft_cancel], layout="horizontal", labels=False),
                self._ft_progress, self._ft_status,
            ]
        )
        self._finetune_panel = QWidget()
        panel_layout = QVBoxLayout(self._finetune_panel)
        panel_layout.setContentsMargins(0, 0, 0, 0)
        panel_layout.addWidget(self._finetune.native)
        panel_layout.addWidget(self.plot)
        self._finetune_toggle = QToolButton()
        self._finetune_toggle.setText("Fine-tune the model on these two images")
        self._finetune_toggle.setCheckable(True)
        self._finetune_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._finetune_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self._finetune_toggle.toggled.connect(self.show_finetune)
        self._finetune_panel.setVisible(False)
        for combo in (self._anatomy, self._style, self._model, self._mode):  # let the dock be narrow
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.native.setMinimumContentsLength(12)
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addWidget(self._finetune_toggle)
        layout.addWidget(self._finetune_panel)
        layout.addStretch(1)

        self.runner = JobRunner(self._show_status, self._set_busy, self._on_swapped, on_yield=self._on_swap_progress,
                                activity=False)
        self.train_runner = JobRunner(self._show_train_status, self._set_train_busy, self._on_trained,
                                      on_yield=self._on_train_progress, activity=False)
        self._auto_timer = QTimer(self)
        self._auto_timer.setSingleShot(True)
        self._auto_timer.setInterval(AUTO_RENDER_MS)
        self._auto_timer.timeout.connect(self._auto_render)

        self._swap_button.changed.connect(self.swap)
        self._variants_button.changed.connect(self.variants)
        self._cancel_button.changed.connect(self.cancel)
        self._ft_start.changed.connect(self.start_finetune)
        self._ft_cancel.changed.connect(self.cancel_finetune)
        self._model.changed.connect(self._on_model)
        self._model_file.changed.connect(self._on_model_file)
        self._mode.changed.connect(self._on_mode)
        self._style.changed.connect(self._on_style_chosen)
        self._ft_steps.changed.connect(lambda steps: self.plot.prepare(int(steps)))
        self.plot.prepare(int(self._ft_steps.value))
        self._default_style()
        self._on_model()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        grid_of(self.viewer).events.enabled.connect(self._on_grid)

    # ------------------------------------------------------------------------------------------- layers

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Image) and not _is_output(layer)]

    def _default_style(self) -> None:
        """Style defaults to the first image that is not the anatomy image (until the user picks one)."""
        if not self._auto_default_style:
            return
        if self._style.value is not None and not same_layer(self._style.value, self._anatomy.value):
            return
        for _, layer in self._image_layers():
            if not same_layer(layer, self._anatomy.value):
                self._set_style_quietly(layer)
                return

    def _set_style_quietly(self, layer: Any) -> None:
        with self._style.changed.blocked():
            self._style.value = layer

    def _on_style_chosen(self, _value: Any = None) -> None:
        self._auto_default_style = False

    def _refresh_layers(self, _event: Any = None) -> None:
        try:
            with self._style.changed.blocked():
                self._anatomy.reset_choices()
                self._style.reset_choices()
            self._default_style()
        except RuntimeError:  # the Qt side is gone (widget closed): stop listening
            for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
                event.disconnect(self._refresh_layers)
            grid_of(self.viewer).events.enabled.disconnect(self._on_grid)
            return
        present = {layer_key(layer) for layer in self.viewer.layers}
        for key in [k for k in self._encodings if k[2][0] not in present]:  # encodings of removed layers
            del self._encodings[key]
        self.pickers.forget_removed()

    # ------------------------------------------------------------------------------------------- model

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        keys = ["default", "file"] + (["finetuned"] if self.finetuned_path is not None else [])
        return [(MODEL_CHOICES[key], key) for key in keys]

    def _file_value(self) -> Path | None:
        return file_value(self._model_file.value)

    def model_source(self) -> str:
        """What the model choice points at: ``"default"`` or a file path; ``ValueError`` saying what is missing."""
        choice = self._model.value
        if choice == "default":
            if not default_model_path().is_file():
                raise ValueError(f"the shipped anatomy/style model is not installed ({default_model_path()}); "
                                 "choose a model file (or reinstall napari-domaingen)")
            return DEFAULT_MODEL
        path = self.finetuned_path if choice == "finetuned" else self._file_value()
        if path is None:
            raise ValueError("choose a model file (.pt) first")
        if not path.is_file():
            raise ValueError(f"the model file does not exist: {path}")
        return str(path)

    def _model_key(self) -> tuple[ModelKey, str, str]:
        """(cache key, what to load, resolved device); ``ValueError`` saying what is wrong."""
        source = self.model_source()
        path = default_model_path() if source == DEFAULT_MODEL else Path(source)
        stat = path.stat()
        device = str(resolve_device(self._device.value))
        return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, device), source, device

    def _on_model_file(self, _value: Any = None) -> None:
        if self._file_value() is not None and self._model.value != "file":
            self._model.value = "file"  # describes it (changed signal)
        else:
            self._on_model()

    def _on_model(self, _value: Any = None) -> None:
        """Describe the chosen model (or say what is missing)."""
        try:
            key, source, _ = self._model_key()
        except (OSError, ValueError) as err:
            self._set_info(str(err))
            return
        model = self._models.get(key)
        if model is not None:
            self._set_info(self._describe(model))
        else:
            name = "shipped default" if source == DEFAULT_MODEL else Path(source).name
            self._set_info(f"{name}: loaded at the first swap")

    @staticmethod
    def _describe(model: SwapModel) -> str:
        text = model.describe()
        steps = model.card.get("steps")
        if steps:
            text += f"; trained {steps} steps"
        if model.card.get("fine_tuned_from"):
            text += f" (fine-tuned from {Path(str(model.card['fine_tuned_from'])).name})"
        return text

    def _set_info(self, text: str) -> None:
        set_status(self._model_info, text)

    # ------------------------------------------------------------------------------------------- style helpers

    def _on_mode(self, value: str) -> None:
        style = self._style.value
        if style is None or image_layer_problem(style, "style") is not None:
            return
        if value == "point":
            self.pickers.present_point(style)
            set_status(self._status, f"click on '{style.name}' to move the style point there, or drag it")
        elif value == "region":
            self.pickers.present_region(style)
            set_status(self._status, f"paint the region on '{style.name}' in the '{REGION_LAYER}' layer, then Swap")
        else:
            set_status(self._status, "")
        self._update_grid()
        if value != "mean" and self._cached(style) is not None:
            self._schedule_auto()

    def _on_point_moved(self) -> None:
        if self._mode.value == "point":
            self._schedule_auto()

    def _on_paint(self) -> None:
        if self._mode.value == "region":
            self._schedule_auto()

    def style_point(self, style: Any) -> tuple[float, float] | None:
        """The style point in the style image's pixel coordinates ``(y, x)`` (``None``: no point)."""
        return self.pickers.point(style)

    # ------------------------------------------------------------------------------------------- grid mode

    def _on_grid(self, _event: Any = None) -> None:
        try:
            self._update_grid()
        except RuntimeError:  # the widget's Qt side is gone
            grid_of(self.viewer).events.enabled.disconnect(self._on_grid)

    def _update_grid(self) -> None:
        """In grid mode with a point or region style, the picker shares the style image's cell (cells of two
        layers, see :func:`arrange_grid`); otherwise the user's stride comes back and the picker is on top."""
        grid = grid_of(self.viewer)
        picker = self._picker_layer()
        if grid.enabled and picker is not None and self._arrange_swap_grid(picker):
            return
        if self._stride_before is not None:
            grid.stride, self._stride_before = self._stride_before, None
        if picker is not None:
            bring_to_top(self.viewer, picker)

    def _picker_layer(self) -> Any:
        mode = self._mode.value
        return (self.pickers.point_layer if mode == "point" else self.pickers.region_layer if mode == "region"
                else None)

    def _arrange_swap_grid(self, picker: Any) -> bool:
        anatomy, style = self._anatomy.value, self._style.value
        if anatomy is None or style is None or same_layer(anatomy, style):
            return False
        a, s = anatomy.name, style.name
        outputs = [f"{a} anatomy × {s} style", f"{a} reconstruction", f"{s} anatomy × {a} style",
                   f"{s} reconstruction"]
        stack = [picker, style, *(_output_named(self.viewer, name) for name in outputs), anatomy]
        before = grid_of(self.viewer).stride
        if not arrange_grid(self.viewer, stack):
            return False
        if self._stride_before is None and before != -2:
            self._stride_before = before
        return True

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        """The worker of the last swap / variants run (for tests and scripts)."""
        return self.runner.worker

    @property
    def train_worker(self) -> Any:
        """The worker of the last fine-tuning run."""
        return self.train_runner.worker

    def _cached(self, layer: Any) -> EncodedImage | None:
        try:
            model_key, _, _ = self._model_key()
        except (OSError, ValueError):
            return None
        return self._encodings.get((model_key, round(float(self._overlap.value), 4), _layer_key(layer)))

    def _request(self, what: str) -> SwapRequest | None:
        """A swap request from the controls, or ``None`` after telling the user what is wrong."""
        anatomy, style = self._anatomy.value, self._style.value
        for layer, role in ((anatomy, "anatomy"), (style, "style")):
            problem = image_layer_problem(layer, role)
            if problem is not None:
                show_problem(self._status, problem)
                return None
        try:
            model_key, source, device = self._model_key()
        except (OSError, ValueError) as err:
            show_problem(self._status, str(err))
            return None
        overlap = round(float(self._overlap.value), 4)

        def item(layer: Any, role: str) -> ImageInput:
            key = (model_key, overlap, _layer_key(layer))
            return ImageInput(role, layer.name, layer.data, key, self._encodings.get(key))

        request = SwapRequest(what=what, model_key=model_key, model_path=source, device=device,
                              model=self._models.get(model_key), anatomy=item(anatomy, "anatomy"),
                              style=item(style, "style"), mode=self._mode.value, overlap=overlap,
                              count=int(self._count.value), seed=int(self._seed.value))
        notes = [note for note in (_input_note(anatomy, "anatomy"), _input_note(style, "style")) if note]
        if what != "variants" and request.mode == "point":
            self.pickers.ensure_point(style)
            request.point = self.pickers.point(style)
            if request.point is None:
                show_problem(self._status, f"put a point in the '{POINT_LAYER}' layer on the style image")
                return None
            height, width = style.data.shape[:2]
            y, x = request.point
            if not (-0.5 <= y < height - 0.5 and -0.5 <= x < width - 0.5):
                notes.append(f"the style point ({y:.0f}, {x:.0f}) lies outside '{style.name}': the nearest patch "
                             "is used")
        elif what != "variants" and request.mode == "region":
            layer, note = self.pickers.ensure_region(style)
            if note:
                notes.append(note)
            mask = np.asarray(layer.data) > 0
            if not mask.any():
                self.pickers.present_region(style)
                show_problem(self._status, f"the '{REGION_LAYER}' layer is empty: paint the region of "
                                           f"'{style.name}' whose style to use, then Swap")
                return None
            request.mask = mask
        self._job = {"anatomy": anatomy, "style": style, "notes": notes}
        return request

    def swap(self, _value: Any = None) -> None:
        """Encode (unless cached) and render the four outputs (no-op while a swap runs)."""
        self._auto_timer.stop()
        if self.runner.is_running:
            return
        request = self._request("all")
        if request is not None:
            self._start(request, "swapping")

    def variants(self, _value: Any = None) -> None:
        """Render the anatomy image with N random style patches of the style image → one (N, Y, X, 3) layer."""
        if self.runner.is_running:
            return
        request = self._request("variants")
        if request is not None:
            self._start(request, f"rendering {request.count} style variants")

    def _start(self, request: SwapRequest, description: str) -> None:
        self._progress.value = 0
        self.runner.start(lambda cancel: swap_job(request, cancel), description)

    def _schedule_auto(self) -> None:
        self._auto_timer.start()

    def _auto_render(self) -> None:
        """Re-render A × S's style after the style point moved or the region was painted, if A and S are encoded
        (otherwise it waits for Swap)."""
        anatomy, style = self._anatomy.value, self._style.value
        if anatomy is None or style is None or self._cached(anatomy) is None or self._cached(style) is None:
            return
        if self._mode.value == "mean":
            return
        if self.runner.is_running:
            self._pending_auto = True
            return
        request = self._request("cross")
        if request is not None:
            self._start(request, "re-rendering with the new style")

    def cancel(self, _value: Any = None) -> None:
        """Stop the swap or the variants; no layer is added."""
        self.runner.cancel()

    def _set_busy(self, busy: bool) -> None:
        self._swap_button.enabled = not busy
        self._variants_button.enabled = not busy
        self._cancel_button.enabled = busy
        if not busy and self._pending_auto:
            self._pending_auto = False
            self._auto_timer.start()

    def _show_status(self, text: str) -> None:
        set_status(self._status, text)

    def _on_swap_progress(self, update: Progress) -> None:
        show_fraction(self._progress, {"fraction": 0.0, **update})

    def _on_swapped(self, outcome: SwapOutcome) -> None:
        """Cache what the run computed and add / update the output layers."""
        self.last_outcome = outcome
        self._progress.value = self._progress.max
        request = outcome.request
        self._models[request.model_key] = outcome.model
        while len(self._models) > 2:
            self._models.popitem(last=False)
        for key, encoded in outcome.encodings.items():
            self._encodings[key] = encoded
            self._encodings.move_to_end(key)
        while len(self._encodings) > MAX_CACHED_ENCODINGS:
            self._encodings.popitem(last=False)
        self._on_model()
        anatomy, style = self._job["anatomy"], self._job["style"]
        entry = {"anatomy_layer": anatomy.name, "style_layer": style.name, "model": outcome.model.name,
                 "device": request.device, "overlap": request.overlap}
        if request.what == "variants":
            assert outcome.variants is not None
            geometry = stack_geometry_kwargs(anatomy, leading_axes=1)
            name = f"{anatomy.name} anatomy × {style.name} style variants"
            info = {**entry, "style_rule": f"{request.count} random patches of '{style.name}' (seed {request.seed})",
                    "patch_centres": [list(c) for c in outcome.centres]}
            self._put_layer(name, outcome.variants, geometry, info)
            text = (f"{request.count} variants of '{anatomy.name}' in {outcome.seconds:.1f} s: random style patches "
                    f"of '{style.name}' (seed {request.seed}); move the slider to see them")
        else:
            entry["style_rule"] = self._style_rule(request)
            for name, (rgb, role) in outcome.outputs.items():
                self._put_layer(name, rgb, geometry_kwargs(anatomy if role == "anatomy" else style), entry)
            what = "swapped" if request.what == "all" else "re-rendered"
            text = f"{what} in {outcome.seconds:.2f} s: {entry['style_rule']}"
            if request.what == "all" and request.mode == "point":
                self.pickers.present_point(style)  # on top, active and selected: ready to click or drag
                text += f"; click on '{style.name}' or drag the style point to try another patch"
            elif request.what == "all" and request.mode == "region":
                self.pickers.present_region(style)
                text += "; paint more of the region to update"
            if request.what == "all":
                self._update_grid()
        if outcome.encoded_now:
            text += f" (encoded {outcome.encoded_now} image(s) with {outcome.model.name}; cached)"
        notes = self._job.get("notes") or []
        if notes:
            text += ". Note: " + "; ".join(notes)
        set_status(self._status, text)

    @staticmethod
    def _style_rule(request: SwapRequest) -> str:
        if request.mode == "point":
            assert request.point is not None
            y, x = request.point
            return f"style of the patch at (y {y:.0f}, x {x:.0f}) of '{request.style.name}'"
        if request.mode == "region":
            assert request.mask is not None
            return f"mean style of '{request.style.name}' inside the painted region ({int(request.mask.sum())} px)"
        return f"mean style of '{request.style.name}'"

    def _put_layer(self, name: str, rgb: np.ndarray, geometry: dict[str, Any], info: dict[str, Any]) -> Any:
        """Update the output layer called ``name`` (an RGB image made by this widget) or add it."""
        from napari.layers import Image

        entry = dict(geometry["metadata"].get(META_KEY, {}))
        entry[OUTPUT_KEY] = info
        metadata = {**geometry["metadata"], META_KEY: entry}
        existing = layer_named(self.viewer, name)
        if isinstance(existing, Image) and existing.rgb and _is_output(existing) and existing.ndim == rgb.ndim - 1:
            existing.data = rgb
            for attribute in ("scale", "translate", "affine"):
                setattr(existing, attribute, geometry[attribute])
            existing.metadata = metadata
            return existing
        return self.viewer.add_image(rgb, name=name, rgb=True, scale=geometry["scale"],
                                     translate=geometry["translate"], affine=geometry["affine"], metadata=metadata)

    # ------------------------------------------------------------------------------------------- fine-tuning

    def show_finetune(self, visible: bool = True) -> None:
        """Open (or close) the fine-tune panel."""
        if self._finetune_toggle.isChecked() != bool(visible):
            self._finetune_toggle.setChecked(bool(visible))  # calls back here
            return
        self._finetune_panel.setVisible(bool(visible))
        self._finetune_toggle.setArrowType(Qt.ArrowType.DownArrow if visible else Qt.ArrowType.RightArrow)

    def finetune_settings(self) -> SwapTrainSettings:
        """The fine-tuning settings the controls describe."""
        return SwapTrainSettings(steps=int(self._ft_steps.value), batch_size=int(self._ft_batch.value),
                                 lr=float(self._ft_lr.value), device=str(self._device.value))

    def start_finetune(self, _value: Any = None) -> None:
        """Fine-tune the current model on the anatomy and style images (no-op while a run is under way)."""
        if self.train_runner.is_running:
            return
        layers = []
        for layer, role in ((self._anatomy.value, "anatomy"), (self._style.value, "style")):
            problem = image_layer_problem(layer, role)
            if problem is not None:
                show_problem(self._ft_status, problem)
                return
            if not any(same_layer(layer, other) for other in layers):
                layers.append(layer)
        try:
            init = self.model_source()
            settings = self.finetune_settings()
            settings.check()
            resolve_device(settings.device)
        except ValueError as err:
            show_problem(self._ft_status, str(err))
            return
        out = file_value(self._ft_output.value)
        if out is None:
            show_problem(self._ft_status, "choose where to save the fine-tuned model ('save model to')")
            return
        inputs = [(layer.name, layer.data) for layer in layers]
        self._train_info = {"out": out, "step": 0, "steps": settings.steps, "kept_step": None}
        self.plot.prepare(settings.steps)
        self._ft_progress.value = 0
        start_from = "the shipped model" if init == DEFAULT_MODEL else Path(init).name
        self.train_runner.start(
            lambda cancel: finetune_job(inputs, out, settings, init, cancel),
            f"fine-tuning {start_from} on {' and '.join(repr(layer.name) for layer in layers)}",
        )

    def cancel_finetune(self, _value: Any = None) -> None:
        """Stop fine-tuning between steps; the last checkpoint written stays intact."""
        self.train_runner.cancel()

    def _set_train_busy(self, busy: bool) -> None:
        self._ft_start.enabled = not busy
        self._ft_cancel.enabled = busy

    def _show_train_status(self, text: str) -> None:
        if text == "cancelled" and self._train_info:
            info = self._train_info
            text = cancelled_training_message(info.get("step", 0), info.get("steps"), info.get("kept_step"),
                                              info.get("out"), "choose it as 'model file' to use it")
        set_status(self._ft_status, text)

    def _on_train_progress(self, update: Progress) -> None:
        show_fraction(self._ft_progress, update)
        if update.get("stage") == "train" and "loss" in update:
            self._train_info["step"] = int(update["step"])
            if not self.plot.steps and math.isfinite(float(update["loss"])):
                # the plot's loss axis starts at 0–3.3 (segmentation losses); a fine-tuned DGM-DR model's loss is
                # ~0.05: scale the axis to the first loss (it still grows if the loss climbs above it)
                self.plot.set_loss_top(1.25 * float(update["loss"]))
            self.plot.add_loss(int(update["step"]), float(update["loss"]))
        if "checkpoint" in update:
            self._train_info["kept_step"] = int(update.get("checkpoint_step", update.get("step", 0)))

    def _on_trained(self, result: SwapTrainResult) -> None:
        """The fine-tuned model becomes the selected model."""
        self.last_training = result
        self.finetuned_path = Path(result.checkpoint)
        self.plot.redraw()
        self._model.reset_choices()
        if self._model.value == "finetuned":
            self._on_model()  # the same choice, a new file: describe it again
        else:
            self._model.value = "finetuned"
        losses = result.history.get("loss") or [float("nan")]
        set_status(self._ft_status,
                   f"done: {result.steps} steps in {format_seconds(result.seconds)}, final loss {losses[-1]:.4f}; "
                   f"saved to {result.checkpoint}. It is now the selected model: press Swap to use it")
