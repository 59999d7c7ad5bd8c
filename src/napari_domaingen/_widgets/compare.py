"""Dock widget: compare two co-registered volumes through their anatomix features.

Thin by design: it takes A and B with their display affines, refuses two volumes off one grid unless B may be
resampled, runs :func:`~napari_domaingen.core.jobs.compare.compare_arrays` through its job runner and shows what
comes back: the two RGB renderings in one colour basis, the voxel-wise cosine map with a colour bar, the CKA
summary and — in *pick voxel* mode — the similarity of every voxel of B to a clicked voxel of A.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, SpinBox
from qtpy.QtWidgets import QComboBox, QSizePolicy, QWidget

from .._napari.layer_meta import CompareRecord, read_meta, with_meta
from .._napari.layers import geometry_kwargs
from .._napari.output_layers import COSINE_COLORMAP, COSINE_LIMITS, cosine_style
from ..core.compare import Comparison, describe_summary, similarity_to_voxel
from ..core.features import FeatureSettings
from ..core.jobs.compare import CompareArrays, CompareSettings, compare_arrays
from ..io.geometry import display_affine_from_layer, voxel_to_world, world_to_voxel
from ..models.weights import REGISTRY
from ._choices import ExtractorChoice, default_other, file_value, grid_of, same_layer, volume_layers
from ._jobs import JobRunner, button_busy, label_status, set_status, show_problem
from ._layout import scroll_layout
from ._outputs import OutputLayers

if TYPE_CHECKING:
    import napari

#: key in ``metadata["domaingen"]`` marking the layers this widget made (they are not offered as inputs)
OUTPUT_KEY = "compare"
SIMILARITY_COLORMAP = "inferno"
MAX_CHANNELS = 64  # spin-box ceiling when the model's channel count is unknown (a file)


def _pick_job(features_a: np.ndarray, voxel: tuple[int, int, int], features_b: np.ndarray) -> Any:
    """Worker body of a pick: ``(voxel, similarity)`` or the exception (returned, not raised)."""
    try:
        return voxel, similarity_to_voxel(features_a, voxel, features_b)
    except Exception as exc:
        return exc


@dataclass
class _CompareRun:
    """A comparison started from two layers: ``arrays`` (their data and display affines), the ``settings``,
    whether B is ``resampled`` onto A's grid, the extractor's name; ``geometry``: A's layer geometry, set when the
    results are shown (the layers made from them and the picks use it)."""

    layer_a: Any
    layer_b: Any
    arrays: CompareArrays
    settings: CompareSettings
    resampled: bool
    weights_name: str
    geometry: dict[str, Any] | None = None


def _is_output(layer: Any) -> bool:
    meta = read_meta(layer)
    return OUTPUT_KEY in meta or "feature_rgb" in meta


class CompareRepresentationsWidget(QWidget):
    """Compare the anatomix features of two co-registered volumes (e.g. T1 vs FLAIR of one subject)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.pick_worker: Any = None
        self.comparison: Comparison | None = None
        self.similarity: np.ndarray | None = None
        self._started: _CompareRun | None = None  # the comparison under way (or the last one started)
        self._shown: _CompareRun | None = None  # the comparison the shown layers belong to
        self._outputs = OutputLayers(self.viewer)  # role → layer made by this widget (updated in place on re-runs)
        self._pending_pick: tuple[float, ...] | None = None
        self._colorbar_canvas: Any = None

        self._a = ComboBox(
            label="A",
            choices=self._image_layers,
            nullable=False,
            tooltip="reference volume: the colours are fitted on its features",
        )
        self._b = ComboBox(
            label="B",
            choices=self._image_layers,
            nullable=False,
            tooltip="the volume compared with A (e.g. another contrast of the same subject)",
        )
        self._extractor = ExtractorChoice()
        self._weights, self._weights_file, self._layer = (
            self._extractor.weights,
            self._extractor.weights_file,
            self._extractor.layer,
        )
        self._mode = ComboBox(
            label="colours",
            choices=[("PCA of A (top 3 components)", "pca"), ("three channels", "channels")],
            value="pca",
            tooltip="how features become RGB; B is coloured with A's projection and scaling",
        )
        self._channels = [
            SpinBox(value=i, min=0, max=MAX_CHANNELS - 1, tooltip=f"feature channel shown as {c}")
            for i, c in enumerate(("red", "green", "blue"))
        ]
        self._channel_row = Container(widgets=self._channels, layout="horizontal", labels=False, label="R, G, B")
        self._resample = CheckBox(
            text="resample B onto A's grid",
            tooltip="when A and B differ in shape or voxel-to-world affine: resample B (linear) onto A's grid first",
        )
        self._register = CheckBox(
            text="register B onto A first (rigid + affine)",
            tooltip="for scans not acquired aligned: FireANTs rigid + affine registration of B onto A (mutual "
            "information), then B resampled through it; the summary says which transform was used",
        )
        self._run = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._summary = Label(value="")
        for label in (self._status, self._summary):  # wrap long texts instead of widening the dock
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._pick_mode = CheckBox(
            text="pick voxel (click in the viewer)",
            tooltip="click a voxel of A (2D view): shows how similar every voxel of B's features is to it",
        )

        self._container = Container(
            widgets=[
                self._a,
                self._b,
                self._weights,
                self._weights_file,
                self._layer,
                self._mode,
                self._channel_row,
                self._resample,
                self._register,
                Container(widgets=[self._run, self._cancel_button], layout="horizontal", labels=False),
                self._status,
                self._summary,
                self._pick_mode,
            ]
        )
        for combo in (self._a, self._b, self._weights, self._layer, self._mode):  # let the dock be narrow
            combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.native.setMinimumContentsLength(12)
        layout = scroll_layout(self)
        layout.addWidget(self._container.native)
        self._colorbar_layout = layout
        layout.addStretch(1)

        self.runner = JobRunner(label_status(self._status), button_busy(self._run, self._cancel_button), self._show)
        self.runner.bind(self, self.viewer)
        self._cancel_button.changed.connect(self.cancel)
        self._run.changed.connect(self.run)
        self._mode.changed.connect(self._on_mode)
        self._weights.changed.connect(self._on_weights)
        self._weights_file.changed.connect(self._on_weights)
        self._on_mode(self._mode.value)
        self._on_weights()
        self._default_b()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)

    # ------------------------------------------------------------------------------------------- parameters

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return volume_layers(self.viewer, keep=lambda layer: not _is_output(layer))

    def _default_b(self) -> None:
        """B defaults to the first layer that is not A."""
        default_other(self._b, self._a.value, self._image_layers())

    def _refresh_layers(self, _event: Any = None) -> None:
        try:
            self._a.reset_choices()
            self._b.reset_choices()
            self._default_b()
        except RuntimeError:  # the Qt side is gone (widget closed); stop listening
            self._disconnect()

    def _disconnect(self) -> None:
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.disconnect(self._refresh_layers)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)

    def _on_mode(self, value: str) -> None:
        self._channel_row.enabled = value == "channels"

    def _on_weights(self, _value: Any = None) -> None:
        """Channel spin boxes up to the model's channel count (unknown for a file: up to 64)."""
        spec = None if file_value(self._weights_file.value) is not None else REGISTRY.get(self._weights.value)
        top = int(spec.config.get("out_channels", MAX_CHANNELS)) - 1 if spec is not None else MAX_CHANNELS - 1
        for box in self._channels:
            box.max = top
            box.value = min(box.value, top)

    def settings(self) -> FeatureSettings:
        weights, _ = self._extractor.choice()
        return FeatureSettings(weights=weights, layer=self._layer.value)

    def channels(self) -> tuple[int, int, int]:
        return tuple(int(box.value) for box in self._channels)  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------- running

    @property
    def worker(self) -> Any:
        """The worker of the last comparison (for tests and scripts)."""
        return self.runner.worker

    def run(self, _value: Any = None) -> None:
        """Check the inputs and the grids, then start the comparison (no-op while one is under way)."""
        if self.runner.is_running:
            return
        layer_a, layer_b = self._a.value, self._b.value
        if layer_a is None or layer_b is None:
            self._set_status("add two 3D image layers of the same subject (e.g. T1 and FLAIR) first")
            return
        if same_layer(layer_a, layer_b):
            self._refuse(f"A and B are the same layer ({layer_a.name}): pick two different layers")
            return
        try:
            arrays = CompareArrays(
                layer_a.data,
                layer_b.data,
                display_affine_from_layer(layer_a),
                display_affine_from_layer(layer_b),
                names=(layer_a.name, layer_b.name),
            )
            register = ("rigid", "affine") if self._register.value else ()
            settings = CompareSettings(
                self.settings(), self._mode.value, self.channels(), resample=self._resample.value, register=register
            )
        except ValueError as exc:
            self._refuse(str(exc))
            return
        try:
            resampled = bool(register) or arrays.needs_resampling(settings.resample)
        except ValueError as exc:
            self._refuse(f"{exc}. Tick 'resample B onto A's grid' (or 'register B onto A first') to do that here.")
            return
        _, weights_name = self._extractor.choice()
        self._started = _CompareRun(layer_a, layer_b, arrays, settings, resampled, weights_name)

        def job(cancel: Any) -> Any:
            comparison = yield from compare_arrays(arrays, settings, cancel)
            return comparison, np.where(comparison.mask, comparison.cosine, np.nan).astype(np.float32)  # off the GUI

        self.runner.start(
            job,
            f"compare {layer_a.name} ↔ {layer_b.name} ({weights_name})",
            inputs=[layer_a, layer_b],
        )

    def cancel(self, _value: Any = None) -> None:
        """Ask the running comparison to stop (at the next network module or window)."""
        self.runner.cancel()

    def _refuse(self, message: str) -> None:
        """An input problem found before starting: say so, run nothing."""
        show_problem(self._status, message)

    def _set_status(self, text: str) -> None:
        set_status(self._status, text)

    # ------------------------------------------------------------------------------------------- results

    def _show(self, done: tuple[Comparison, np.ndarray]) -> None:
        comparison, cosine = done
        run = self._started
        assert run is not None  # the runner calls back only for a run started here
        self.comparison = comparison
        layer_a, layer_b = run.layer_a, run.layer_b
        geometry = run.geometry = geometry_kwargs(layer_a)
        self._shown = run
        tag = CompareRecord(
            a=layer_a.name, b=layer_b.name, weights=run.weights_name, mode=run.settings.mode, resampled=run.resampled
        )
        self._put_layer("rgb_a", comparison.rgb_a, f"{layer_a.name} features RGB", geometry, tag, rgb=True)
        self._put_layer("rgb_b", comparison.rgb_b, f"{layer_b.name} features RGB", geometry, tag, rgb=True)
        layer = self._put_layer(
            "cosine",
            cosine,
            f"cosine {layer_a.name} ↔ {layer_b.name}",
            geometry,
            tag,
            **cosine_style(),
        )
        self._show_colorbar(layer)
        grid_of(self.viewer).enabled = True
        summary = describe_summary(comparison.summary, comparison.non_finite)
        set_status(self._summary, f"{summary}\n{comparison.aligned}")
        source = "B registered onto A" if run.settings.register else "B resampled onto A's grid"
        source = source if run.resampled else "one voxel grid"
        timing = ", ".join(
            "cached" if r.cached else f"{r.seconds:.1f} s" for r in (comparison.features_a, comparison.features_b)
        )
        self._set_status(f"done ({run.weights_name}, {source}; features A/B: {timing})")

    def _put_layer(
        self, role: str, data: np.ndarray, name: str, geometry: dict[str, Any], tag: CompareRecord, **kwargs: Any
    ) -> Any:
        """Add a layer, or update the one this widget made for ``role`` before (same layer)."""
        metadata = _tagged(geometry, role, tag)
        return self._outputs.put(role, "image", data, name, **{**geometry, "metadata": metadata}, **kwargs)

    def _show_colorbar(self, layer: Any) -> None:
        """The layer's own colour bar (napari ≥ 0.6), else a small matplotlib bar under the summary."""
        if hasattr(layer, "colorbar"):
            layer.colorbar.visible = True
            return
        if self._colorbar_canvas is None:
            self._colorbar_canvas = colorbar_canvas(COSINE_COLORMAP, COSINE_LIMITS, "cosine A ↔ B")
            self._colorbar_layout.insertWidget(1, self._colorbar_canvas)

    # ------------------------------------------------------------------------------------------- pick voxel

    def _on_mouse(self, viewer: Any, event: Any) -> Generator[None, None, None]:
        """A click (press and release without dragging) in pick mode picks the voxel under the cursor."""
        try:
            picking = self._pick_mode.value
        except RuntimeError:  # the widget's Qt side is gone (closed without a close event): ignore clicks
            return
        if not picking or getattr(event, "button", 1) != 1:
            return
        position = tuple(event.position)
        yield
        dragged = False
        while event.type == "mouse_move":  # a drag pans the view: no pick
            dragged = True
            yield
        if not dragged:
            self.pick(position)

    def pick(self, world_position: Any) -> None:
        """Similarity of every voxel of B's features to A's feature at ``world_position`` (world coordinates).

        Adds or updates the layer ``similarity to <A>[z, y, x]`` and a point marking the voxel. Runs in a
        worker (about 2 s on a 16×155×240×240 stack on two CPU cores); a click during a pick is queued.
        """
        from napari.qt.threading import thread_worker

        comparison, shown = self.comparison, self._shown
        if comparison is None or shown is None:
            self._set_status("run a comparison first, then pick a voxel")
            return
        if self.viewer.dims.ndisplay != 2:
            self._set_status("switch to the 2D view to pick a voxel")
            return
        if self.pick_worker is not None and self.pick_worker.is_running:
            self._pending_pick = tuple(world_position)
            return
        voxel = self._voxel_of(shown, world_position)
        shape = comparison.cosine.shape
        if voxel is None or not all(0 <= v < s for v, s in zip(voxel, shape)):
            self._set_status(f"the click is outside {shown.layer_a.name} ({shape[0]}×{shape[1]}×{shape[2]})")
            return
        self._set_status(f"similarity to {shown.layer_a.name}{list(voxel)} …")
        worker = thread_worker(_pick_job, connect={"returned": self._on_picked}, start_thread=False)(
            comparison.features_a.features, voxel, comparison.features_b.features
        )
        self.pick_worker = worker
        worker.start()

    def _voxel_of(self, shown: _CompareRun, world_position: Any) -> tuple[int, int, int] | None:
        """Nearest voxel index of A at a world position (any extra leading world axes are ignored)."""
        position = np.asarray(world_position, dtype=float)
        if position.size < 3:
            return None
        if shown.layer_a in self.viewer.layers:
            index = np.asarray(shown.layer_a.world_to_data(position), dtype=float)[-3:]
        else:  # A was removed: map through the geometry recorded at the run
            index = world_to_voxel(shown.arrays.affine_a, position[-3:])
        return tuple(int(v) for v in np.round(index))

    def _on_picked(self, result: Any) -> None:
        pending, self._pending_pick = self._pending_pick, None
        if isinstance(result, Exception):
            self.runner.fail(result)
        else:
            self._show_similarity(*result)
        if pending is not None:
            self.pick(pending)

    def _show_similarity(self, voxel: tuple[int, int, int], similarity: np.ndarray) -> None:
        self.similarity = similarity
        comparison, run = self.comparison, self._shown
        assert comparison is not None and run is not None and run.geometry is not None  # picks follow a run
        name_a, name_b, geometry = run.layer_a.name, run.layer_b.name, run.geometry
        affine_a, affine_b = run.arrays.affine_a, run.arrays.affine_b
        tag = CompareRecord(a=name_a, b=name_b, voxel=list(voxel))
        shown = np.where(comparison.mask, similarity, np.nan).astype(np.float32)
        self._put_layer(
            "similarity",
            shown,
            f"similarity to {name_a}[{voxel[0]}, {voxel[1]}, {voxel[2]}]",
            geometry,
            tag,
            colormap=SIMILARITY_COLORMAP,
            contrast_limits=(0.0, 1.0),
        )
        metadata = _tagged(geometry, "marker", tag)
        self._outputs.put(
            "marker",
            "points",
            np.asarray([voxel], dtype=float),
            "picked voxel",
            symbol="cross",
            size=6,
            face_color="cyan",
            border_width=0,
            scale=geometry["scale"],
            translate=geometry["translate"],
            affine=geometry["affine"],
            metadata=metadata,
        )
        at_voxel = f"cosine with {name_b} at the same point {float(comparison.cosine[voxel]):.2f}"
        if not np.isfinite(shown).any():
            self._set_status(
                f"{name_a}{list(voxel)} {_mm(affine_a, voxel)}: {at_voxel}; no "
                f"foreground voxel of {name_b} to compare with"
            )
            return
        best = np.unravel_index(int(np.nanargmax(shown)), shown.shape)
        world = voxel_to_world(affine_a, best)
        index_b = [int(v) for v in np.round(world_to_voxel(affine_b, world))]
        where = f"voxel {index_b} of {name_b} at {_format_mm(world)}"
        if run.resampled:
            where += " on its own {}×{}×{} grid".format(*run.arrays.shape_b)
        self._set_status(
            f"{name_a}{list(voxel)} {_mm(affine_a, voxel)}: {at_voxel}; the most similar point of "
            f"{name_b} is {where}, cosine {float(shown[best]):.2f}"
        )

    def closeEvent(self, event: Any) -> None:
        self._disconnect()
        super().closeEvent(event)


def _tagged(geometry: dict[str, Any], role: str, tag: CompareRecord) -> dict[str, Any]:
    """The metadata of a layer this widget makes: its source's record plus this widget's (``role`` and ``tag``)."""
    meta = read_meta(geometry["metadata"])
    meta[OUTPUT_KEY] = CompareRecord(role=role, **tag)
    return with_meta(geometry["metadata"], meta)


def _format_mm(world: np.ndarray) -> str:
    """World (S, A, R) millimetres as text."""
    s, a, r = (float(v) for v in world[:3])
    return f"(S {s:.1f}, A {a:.1f}, R {r:.1f} mm)"


def _mm(affine: np.ndarray, voxel: tuple[int, ...]) -> str:
    return _format_mm(voxel_to_world(affine, voxel))


def colorbar_canvas(colormap: str, limits: tuple[float, float], label: str) -> Any:
    """A small horizontal matplotlib colour bar (for napari versions without layer colour bars)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.0, 0.6), dpi=100)
    axes = figure.add_axes((0.05, 0.5, 0.9, 0.3))
    figure.colorbar(ScalarMappable(Normalize(*limits), colormap), cax=axes, orientation="horizontal", label=label)
    canvas = FigureCanvasQTAgg(figure)
    canvas.setFixedHeight(60)
    return canvas
