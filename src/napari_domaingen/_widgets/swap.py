"""Dock widget: anatomy / style swap of two 2D histology images with a DGM-DR model, and fine-tuning that model.

Thin by design: it collects two 2D image layers, a model (shipped, a file, or the one just fine-tuned here), a
style rule (a point, the mean, or a painted region) and the rendering options (:mod:`._swap_options`), and runs
:func:`~napari_domaingen.core.swap_job.swap_images` (the job the ``swap`` command runs too) through its job runner.
Encodings are cached per layer (identity, data array, shape, dtype), model file and tiling, so moving the style
point, repainting the region or changing the detail, tissue, glass or colour options only re-renders. Outputs are
RGB layers added or updated in place, each on the grid of the image whose anatomy it shows (``<A> reconstruction``,
``<S> reconstruction``, ``<A> anatomy × <S> style``, ``<S> anatomy × <A> style``; *Generate variants*: a
``(N, Y, X, 3)`` stack). Inputs, outputs and the style point/region layers: :mod:`._swap_layers`; fine-tuning:
:mod:`.swap_finetune`; the whole-slide swap of a multiscale anatomy layer: :mod:`._swap_slide`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, SpinBox
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QComboBox, QWidget

from ..core.swap import EncodedImage
from ..core.swap_model import SwapModel
from ..core.swap_settings import SwapSettingsError
from ..core.swap_training import SwapTrainResult
from ..progress import Progress
from ._choices import grid_of, layer_key, same_layer
from ._jobs import JobRunner, set_status, show_fraction, show_problem
from ._layout import scroll_layout, wrap_text
from ._swap_layers import (
    OUTPUT_KEY,
    REGION_LAYER,
    StylePickers,
    image_layer_problem,
    input_note,
    is_output,
    put_outputs,
)
from ._swap_model_choice import MODEL_CHOICES, ModelChoice  # noqa: F401 - MODEL_CHOICES: re-exported
from ._swap_options import (
    DEFAULT_VARIANTS,
    CacheKey,
    ImageInput,
    ModelKey,
    RenderOptions,
    SwapOutcome,
    SwapRequest,
    swap_run,
)
from ._swap_slide import SlidePanel
from .swap_finetune import DEFAULT_FINETUNE_OUTPUT, FinetunePanel

if TYPE_CHECKING:
    import napari

__all__ = ["DEFAULT_FINETUNE_OUTPUT", "OUTPUT_KEY", "SwapWidget", "image_layer_problem"]

AUTO_RENDER_MS = 60  # point moves / paint strokes within this interval share one re-render
MAX_CACHED_ENCODINGS = 6
STYLE_MODES = {
    "point": "point: the style of the patch under the 'style point' on the style image (click or drag it)",
    "mean": "mean: the mean style of the style image's tissue (of all of it without 'tissue style')",
    "region": "region: the mean style inside the region painted in the 'style region' Labels layer",
}


def _layer_key(layer: Any) -> tuple[Any, ...]:
    """What an encoding is cached under: the layer (through napari's proxies), its data array, shape and dtype."""
    data = layer.data
    return (layer_key(layer), id(data), tuple(data.shape), str(getattr(data, "dtype", "")))


# ---------------------------------------------------------------------------------------------------- widget


class SwapWidget(QWidget):
    """Swap the anatomy and the style (stain appearance) of two 2D histology images with a DGM-DR model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_outcome: SwapOutcome | None = None
        self.last_training: SwapTrainResult | None = None
        self._models: OrderedDict[ModelKey, SwapModel] = OrderedDict()
        self._encodings: OrderedDict[CacheKey, EncodedImage] = OrderedDict()
        self._job: dict[str, Any] = {}
        self._pending_auto = False
        self.pickers = StylePickers(self.viewer, self._on_point_moved, self._on_paint)
        self._auto_default_style = True

        # ---- inputs and model
        self._anatomy = ComboBox(
            label="anatomy from",
            choices=self._image_layers,
            nullable=False,
            tooltip="the image whose tissue layout (anatomy) is kept: a 2D RGB or grayscale image layer",
        )
        self._style = ComboBox(
            label="style from",
            choices=self._image_layers,
            nullable=False,
            tooltip="the image whose stain appearance (style) is applied",
        )
        self.models = ModelChoice(self._models)
        self._model, self._model_file, self._device = self.models.model, self.models.model_file, self.models.device
        self.options = options = RenderOptions()
        self._overlap, self._seamless, self._detail, self._tissue = (
            options.overlap,
            options.seamless,
            options.detail,
            options.tissue,
        )
        self._model_info = self.models.info
        # ---- style and swap
        self._mode = ComboBox(
            label="style",
            choices=[(text.split(":")[0], key) for key, text in STYLE_MODES.items()],
            value="point",
            tooltip="\n".join(STYLE_MODES.values()),
        )
        for index, text in enumerate(STYLE_MODES.values()):
            self._mode.native.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)
        self._swap_button = PushButton(text="Swap")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._count = SpinBox(
            label="variants N",
            value=DEFAULT_VARIANTS,
            min=1,
            max=64,
            tooltip="how many random style patches of the style image to render the anatomy with",
        )
        self._seed = SpinBox(label="seed", value=0, min=0, max=1_000_000, tooltip="which random patches")
        self._variants_button = PushButton(text="Generate N variants")
        self._progress = ProgressBar(value=0, min=0, max=1000)
        self._status = Label(value="")

        for label, lines in ((self._model_info, 2), (self._status, 3)):
            wrap_text(label.native)
            label.native.setMinimumHeight(lines * label.native.fontMetrics().lineSpacing())

        # ---- fine-tune: its parameters and the training panel shared with MaskGen — train
        self.finetune = FinetunePanel(self._finetune_inputs, self._on_trained)
        (training := self.finetune.training).runner.bind(self, self.viewer)
        self._ft_steps, self._ft_lr, self._ft_batch = self.finetune.steps, self.finetune.lr, self.finetune.batch
        self._ft_output, self._ft_start, self._ft_cancel = (
            self.finetune.output,
            training.start_button,
            training.cancel_button,
        )
        self._ft_status, self.plot, self.train_runner, self._train_info = (
            training.status,
            training.plot,
            training.runner,
            training.info,
        )

        self.slide = SlidePanel(self)  # whole-slide swap, shown for a multiscale anatomy layer
        self._container = Container(
            widgets=[
                self._anatomy,
                self._style,
                self._model,
                self._model_file,
                self._model_info,
                self._device,
                self.options.row,
                self._overlap,
                self._mode,
                Container(widgets=[self._swap_button, self._cancel_button], layout="horizontal", labels=False),
                self.slide,
                self._count,
                self._seed,
                self._variants_button,
                self._progress,
                self._status,
            ]
        )
        for combo in (self._anatomy, self._style, self._model, self._mode):  # let the dock be narrow
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.native.setMinimumContentsLength(12)
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        layout.addWidget(self.finetune)
        layout.addStretch(1)

        self.runner = JobRunner(
            self._show_status, self._set_busy, self._on_swapped, on_yield=self._on_swap_progress, activity=False
        )
        self.runner.bind(self, self.viewer)
        self._auto_timer = QTimer(self)
        self._auto_timer.setSingleShot(True)
        self._auto_timer.setInterval(AUTO_RENDER_MS)
        self._auto_timer.timeout.connect(self._auto_render)

        self._swap_button.changed.connect(self.swap)
        self._variants_button.changed.connect(self.variants)
        self._cancel_button.changed.connect(self.cancel)
        self._mode.changed.connect(self._on_mode)
        self._seamless.changed.connect(self._on_tiling)
        for box in (self._detail, self._tissue, options.glass, options.colours):
            box.changed.connect(self._on_render_option)
        self._style.changed.connect(self._on_style_chosen)
        self._default_style()
        self._on_model()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        grid_of(self.viewer).events.enabled.connect(self._on_grid)

    # ------------------------------------------------------------------------------------------- layers

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image) and not is_output(layer)
        ]

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

    @property
    def finetuned_path(self) -> Path | None:
        """The model fine-tuned in this session, if any."""
        return self.models.finetuned_path

    def model_source(self) -> str:
        """What the model choice points at: ``"default"`` or a file path; ``ValueError`` saying what is missing."""
        return self.models.source()

    def _model_key(self) -> tuple[ModelKey, str, str]:
        return self.models.key()

    def _on_model(self, _value: Any = None) -> None:
        self.models.describe()

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
            self._auto_timer.start()

    def _on_point_moved(self) -> None:
        if self._mode.value == "point":
            self._auto_timer.start()

    def _on_paint(self) -> None:
        if self._mode.value == "region":
            self._auto_timer.start()

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
        self.pickers.update_grid(self._mode.value, self._anatomy.value, self._style.value)

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        """The worker of the last swap / variants run (for tests and scripts)."""
        return self.runner.worker

    @property
    def train_worker(self) -> Any:
        """The worker of the last fine-tuning run."""
        return self.finetune.training.worker

    def _cached(self, layer: Any) -> EncodedImage | None:
        try:
            model_key, _, _ = self._model_key()
        except (OSError, ValueError):
            return None
        return self._encodings.get((model_key, self.options.tiling(), _layer_key(layer)))

    def _on_tiling(self, _seamless: bool) -> None:
        set_status(self._status, "tiling changed: press Swap to encode the images again")

    def _on_render_option(self, _value: Any = None) -> None:
        """A rendering option changed: re-render everything from the cached encodings (if any)."""
        anatomy, style = self._anatomy.value, self._style.value
        cached = anatomy is not None and style is not None and self._cached(anatomy) and self._cached(style)
        if cached and not self.runner.is_running:
            self.swap()

    def _images(self) -> tuple[Any, Any]:
        """The anatomy and style layers; ``ValueError`` saying why one cannot be used."""
        anatomy, style = self._anatomy.value, self._style.value
        for layer, role in ((anatomy, "anatomy"), (style, "style")):
            problem = image_layer_problem(layer, role)
            if problem is not None:
                raise ValueError(problem)
        return anatomy, style

    def _request(self, what: str) -> SwapRequest | None:
        """A swap request from the controls, or ``None`` after telling the user what is wrong: a red notification
        when the user pressed a button, the status line only for a re-render the widget started by itself (the
        style mode changed, the point moved), so choosing *region* does not raise an alarm before any painting."""
        tell = show_problem if what != "cross" else set_status
        try:
            anatomy, style = self._images()
            model_key, source, device = self._model_key()
        except (OSError, ValueError) as err:
            tell(self._status, str(err))
            return None
        tiling = self.options.tiling()

        def item(layer: Any, role: str) -> ImageInput:
            key = (model_key, tiling, _layer_key(layer))
            return ImageInput(role, layer.name, layer.data, key, self._encodings.get(key))

        request = SwapRequest(
            what=what,
            model_key=model_key,
            model_path=source,
            device=device,
            model=self._models.get(model_key),
            anatomy=item(anatomy, "anatomy"),
            style=item(style, "style"),
            mode=self._mode.value,
            overlap=0.0,
            count=int(self._count.value),
            seed=int(self._seed.value),
        )
        self.options.fill(request)
        notes = [note for note in (input_note(anatomy, "anatomy"), input_note(style, "style")) if note]
        problem = self.pickers.pick_style(request, style, notes) if what != "variants" else None
        if problem is None:
            try:
                request.settings()  # validated here, on the GUI thread
            except SwapSettingsError as err:
                problem = str(err)
        if problem is not None:
            tell(self._status, problem)
            return None
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
        self.runner.start(
            lambda c: swap_run(request, c), description, inputs=[self._job["anatomy"], self._job["style"]]
        )

    def _auto_render(self) -> None:
        """Re-render A × S's style after the style point moved or the region was painted, if A and S are encoded
        (otherwise it waits for Swap)."""
        anatomy, style = self._anatomy.value, self._style.value
        if anatomy is None or style is None or self._cached(anatomy) is None or self._cached(style) is None:
            return
        if self._mode.value == "mean":
            return
        if self._mode.value == "region" and not self.pickers.region_painted():
            return  # nothing painted yet: the status line already says to paint
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
        text = put_outputs(self.viewer, outcome, anatomy, style)
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

    # ------------------------------------------------------------------------------------------- fine-tuning

    def show_finetune(self, visible: bool = True) -> None:
        """Open (or close) the fine-tune panel."""
        self.finetune.set_open(visible)

    def _finetune_inputs(self) -> tuple[list[Any], str, str]:
        """The images to fine-tune on (one when both are the same layer), the model to start from and the device;
        ``ValueError`` saying what is wrong."""
        anatomy, style = self._images()
        layers = [anatomy] if same_layer(anatomy, style) else [anatomy, style]
        return layers, self.model_source(), str(self._device.value)

    def _on_trained(self, result: SwapTrainResult) -> str:
        """The fine-tuned model becomes the selected model."""
        self.last_training = result
        self.models.select_finetuned(Path(result.checkpoint))  # type: ignore[arg-type]
        return ". It is now the selected model: press Swap to use it"
