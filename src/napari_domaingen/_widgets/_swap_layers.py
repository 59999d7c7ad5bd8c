"""The swap widget's layers: its inputs (which layers it can use), its outputs (RGB layers it updates in place) and
its own pickers on the style image, the 'style point' and the 'style region' layers.

Both are tracked by their ``unique_id`` (napari hands widgets a new proxy object on every access, so ``is`` and
``id()`` cannot recognise a layer twice). The style point:

* is one point on the style image's grid, at the image's centre when it is made;
* moves where the user clicks (in the layer's *select* mode, a click off the point moves it there; dragging the
  point moves it; in *add* mode the new point replaces the old one): one point per click;
* sits on top of every other layer after each swap, is the active layer and is selected, ready to drag;
* in grid mode shares the style image's grid cell (see :func:`arrange_grid`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from .._napari.layers import META_KEY, geometry_kwargs, stack_geometry_kwargs
from ._choices import find_layer, grid_of, layer_key, layer_named

POINT_LAYER = "style point"
REGION_LAYER = "style region"
OUTPUT_KEY = "swap"
CLICK_TOLERANCE_PX = 5  # a press and release closer than this (screen pixels) is a click, not a drag


def _picker_metadata(role: str) -> dict[str, Any]:
    return {META_KEY: {OUTPUT_KEY: {"role": role}}}


def _match_geometry(layer: Any, geometry: dict[str, Any]) -> None:
    """Put ``layer`` on the grid ``geometry`` describes (scale/translate/affine), if it is not there already."""
    for attribute in ("scale", "translate", "affine"):
        current = getattr(layer, attribute)
        current = current.affine_matrix if attribute == "affine" else current
        if not np.allclose(np.asarray(current), np.asarray(geometry[attribute])):
            setattr(layer, attribute, geometry[attribute])


class StylePickers:
    """The 'style point' Points layer and the 'style region' Labels layer of one swap widget.

    ``on_point_moved()`` and ``on_painted()`` are called (on the GUI thread) after the point moved or the region
    was painted.
    """

    def __init__(self, viewer: Any, on_point_moved: Callable[[], None], on_painted: Callable[[], None]) -> None:
        self.viewer = viewer
        self._on_point_moved = on_point_moved
        self._on_painted = on_painted
        self._point_key: Hashable | None = None
        self._region_key: Hashable | None = None
        self._hooked: set[Hashable] = set()  # layers whose events this object listens to
        self._stride_before: int | None = None  # the grid stride the user had before the swap grid took over

    # ------------------------------------------------------------------------------------------ the point

    @property
    def point_layer(self) -> Any:
        """The style point layer, or ``None`` (never made, or removed by the user)."""
        return find_layer(self.viewer, self._point_key) if self._point_key is not None else None

    def ensure_point(self, style: Any) -> Any:
        """The style point layer on ``style``'s grid with one point (the image's centre when it had none)."""
        layer = self.point_layer or layer_named(self.viewer, POINT_LAYER, "Points")
        height, width = style.data.shape[:2]
        geometry = geometry_kwargs(style)
        geometry["metadata"] = _picker_metadata("style point")
        centre = np.array([[height / 2, width / 2]])
        if layer is None:
            layer = self.viewer.add_points(
                centre,
                name=POINT_LAYER,
                size=max(4.0, max(height, width) / 20),
                face_color="transparent",
                border_color="yellow",
                border_width=0.25,
                symbol="disc",
                **geometry,
            )
        else:
            _match_geometry(layer, geometry)
            if len(layer.data) == 0:
                layer.data = centre
        self._point_key = layer_key(layer)
        if self._point_key not in self._hooked:
            self._hooked.add(self._point_key)
            layer.events.data.connect(self._on_point_data)
            layer.mouse_drag_callbacks.append(self._move_on_click)
        return layer

    def present_point(self, style: Any) -> Any:
        """The style point on top of every layer, active, in select mode and selected: ready to drag or click."""
        layer = self.ensure_point(style)
        bring_to_top(self.viewer, layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "select"
        layer.selected_data = {len(layer.data) - 1}
        return layer

    def point(self, style: Any) -> tuple[float, float] | None:
        """The style point in ``style``'s pixel coordinates ``(y, x)``: the selected point, else the last one;
        ``None`` when there is no point."""
        layer = self.point_layer
        if layer is None or len(layer.data) == 0:
            return None
        selected = sorted(layer.selected_data)
        index = selected[-1] if selected else len(layer.data) - 1
        world = layer.data_to_world(np.asarray(layer.data[index], dtype=float))
        y, x = np.asarray(style.world_to_data(world), dtype=float)[-2:]
        return float(y), float(x)

    def _on_point_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed")).lower()
        if action in ("adding", "changing", "removing"):  # the change is still to come
            return
        layer = self.point_layer
        if layer is not None and action == "added" and len(layer.data) > 1:
            QTimer.singleShot(0, self._keep_newest_point)  # a click in 'add' mode moves the style point
        self._on_point_moved()

    def _keep_newest_point(self) -> None:
        layer = self.point_layer
        if layer is not None and len(layer.data) > 1:
            layer.data = np.asarray(layer.data)[-1:]
            layer.selected_data = {0}

    def _move_on_click(self, layer: Any, event: Any) -> Generator[None, None, None]:
        """In select mode, a click off the point moves the point there (a drag keeps napari's box select)."""
        if layer.mode != "select" or getattr(event, "button", 1) != 1:
            return
        on_point = layer.get_value(
            event.position, view_direction=event.view_direction, dims_displayed=event.dims_displayed, world=True
        )
        if on_point is not None:  # napari drags the point
            return
        start = np.asarray(event.pos, dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        if np.linalg.norm(np.asarray(event.pos, dtype=float) - start) < CLICK_TOLERANCE_PX:
            layer.data = np.asarray([layer.world_to_data(event.position)], dtype=float)[:, -2:]
            layer.selected_data = {0}

    # ------------------------------------------------------------------------------------------ the region

    @property
    def region_layer(self) -> Any:
        return find_layer(self.viewer, self._region_key) if self._region_key is not None else None

    def ensure_region(self, style: Any) -> tuple[Any, str]:
        """The 'style region' Labels layer on ``style``'s grid (emptied, with a note, if it did not fit)."""
        layer = self.region_layer or layer_named(self.viewer, REGION_LAYER, "Labels")
        shape = tuple(style.data.shape[:2])
        geometry = geometry_kwargs(style)
        geometry["metadata"] = _picker_metadata("style region")
        note = ""
        if layer is None:
            layer = self.viewer.add_labels(np.zeros(shape, np.uint8), name=REGION_LAYER, opacity=0.4, **geometry)
            layer.brush_size = max(5, max(shape) // 20)
            layer.selected_label = 1
        elif tuple(layer.data.shape) != shape:
            layer.data = np.zeros(shape, np.uint8)
            _match_geometry(layer, geometry)
            note = f"the '{REGION_LAYER}' layer did not fit the style image and was emptied: paint it again"
        self._region_key = layer_key(layer)
        if self._region_key not in self._hooked:
            self._hooked.add(self._region_key)
            layer.events.paint.connect(lambda _event=None: self._on_painted())
        return layer, note

    def present_region(self, style: Any) -> tuple[Any, str]:
        """The region layer on top, active, in paint mode."""
        layer, note = self.ensure_region(style)
        bring_to_top(self.viewer, layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        return layer, note

    def pick_style(self, request: Any, style: Any, notes: list[str]) -> str | None:
        """Put the style point (point mode) or the painted region's mask (region mode) of ``style`` in the swap
        ``request``, adding notes for the user; returns why it cannot be done (``None``: done)."""
        if request.mode == "point":
            self.ensure_point(style)
            request.point = self.point(style)
            if request.point is None:
                return f"put a point in the '{POINT_LAYER}' layer on the style image"
            height, width = style.data.shape[:2]
            y, x = request.point
            if not (-0.5 <= y < height - 0.5 and -0.5 <= x < width - 0.5):
                notes.append(
                    f"the style point ({y:.0f}, {x:.0f}) lies outside '{style.name}': the nearest patch is used"
                )
        elif request.mode == "region":
            layer, note = self.ensure_region(style)
            if note:
                notes.append(note)
            request.mask = np.asarray(layer.data) > 0
            if not request.mask.any():
                self.present_region(style)
                return (
                    f"the '{REGION_LAYER}' layer is empty: paint the region of '{style.name}' whose style to use, "
                    "then Swap"
                )
        return None

    # ------------------------------------------------------------------------------------------ grid mode

    def region_painted(self) -> bool:
        """Whether the 'style region' layer exists and holds a painted pixel."""
        layer = self.region_layer
        return layer is not None and bool(np.asarray(layer.data).any())

    def picker(self, mode: str) -> Any:
        """The picker layer of a style ``mode`` (``"point"``, ``"region"``), or ``None``."""
        return self.point_layer if mode == "point" else self.region_layer if mode == "region" else None

    def update_grid(self, mode: str, anatomy: Any, style: Any) -> None:
        """In grid mode with a point or region style, the picker shares the style image's cell (cells of two
        layers, see :func:`arrange_grid`); otherwise the user's stride comes back and the picker is on top."""
        grid = grid_of(self.viewer)
        picker = self.picker(mode)
        if grid.enabled and picker is not None and anatomy is not None and style is not None:
            a, s = anatomy.name, style.name
            outputs = [
                f"{a} anatomy × {s} style",
                f"{a} reconstruction",
                f"{s} anatomy × {a} style",
                f"{s} reconstruction",
            ]
            stack = [picker, style, *(output_named(self.viewer, name) for name in outputs), anatomy]
            before = grid.stride
            if layer_key(anatomy) != layer_key(style) and arrange_grid(self.viewer, stack):
                if self._stride_before is None and before != -2:
                    self._stride_before = before
                return
        if self._stride_before is not None:
            grid.stride, self._stride_before = self._stride_before, None
        if picker is not None:
            bring_to_top(self.viewer, picker)

    def forget_removed(self) -> None:
        """Drop the listeners' bookkeeping of layers that are gone (after a layer was removed)."""
        present = {layer_key(layer) for layer in self.viewer.layers}
        self._hooked &= present


def bring_to_top(viewer: Any, layer: Any) -> None:
    """Move ``layer`` to the top of the layer list (drawn over every other layer)."""
    key = layer_key(layer)
    index = next(i for i, other in enumerate(viewer.layers) if layer_key(other) == key)
    if index != len(viewer.layers) - 1:
        viewer.layers.move(index, len(viewer.layers))


def arrange_grid(viewer: Any, stack: Sequence[Any | None]) -> bool:
    """Show ``stack`` (layers listed top → bottom, ``None`` for missing ones) in grid mode as cells of two:
    napari draws every layer in its own grid cell, so the style point (or region) shares the style image's cell
    only when the grid takes layers two by two (stride −2 counts from the top of the layer list).

    ``stack`` lists ``[picker, style image, A × S style, A reconstruction, S × A style, S reconstruction,
    anatomy image]``: the cells then show the style image under its picker, the anatomy in S's style (A's
    reconstruction beneath it), S's anatomy in A's style (S's reconstruction beneath it) and the anatomy image.
    The layers move to the top of the layer list in that order; returns ``False`` (nothing changed) when a
    picker or the style image is missing.
    """
    pairs = [tuple(stack[i : i + 2]) for i in range(0, len(stack), 2)]
    if pairs[0][0] is None or pairs[0][1] is None:
        return False
    ordered: list[Any] = []
    singles: list[Any] = []
    for pair in pairs:
        present = [layer for layer in pair if layer is not None]
        if len(present) == 2:
            ordered += present
        elif present:
            singles += present
    if len(singles) > 1:  # two lone layers would share a cell, one hiding the other
        return False
    ordered += singles
    for layer in reversed(ordered):  # the first ends on top
        bring_to_top(viewer, layer)
    grid_of(viewer).stride = -2
    return True


# ---------------------------------------------------------------------------------------------- inputs and outputs


def is_output(layer: Any) -> bool:
    """Whether ``layer`` was made by the swap widget (an output or a picker)."""
    entry = (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}
    return OUTPUT_KEY in entry


def output_named(viewer: Any, name: str) -> Any:
    """The swap widget's output layer called ``name``, or ``None``."""
    layer = layer_named(viewer, name)
    return layer if layer is not None and is_output(layer) else None


def image_layer_problem(layer: Any, role: str) -> str | None:
    """Why ``layer`` cannot be the ``role`` image of a swap (``None`` when it can: a 2D RGB/RGBA or grayscale
    image layer that is not a pyramid)."""
    if layer is None:
        return f"choose the {role} image: open two 2D histology images (RGB or grayscale) first"
    if getattr(layer, "multiscale", False):
        return (
            f"{role} image '{layer.name}' is a multiscale (pyramid) image; the swap works on one 2D image: "
            "open a lower-resolution level or a crop as a plain image layer"
        )
    if layer.ndim != 2:
        kind = "RGB " if layer.rgb else ""
        return (
            f"{role} image '{layer.name}' is a {layer.ndim}D {kind}image (shape {tuple(layer.data.shape)}); the "
            "swap works on 2D images (RGB, RGBA or grayscale): choose a 2D layer or copy one slice into a new "
            "layer"
        )
    return None


def input_note(layer: Any, role: str) -> str:
    """What the swap does with this input's colours (empty for plain RGB)."""
    if not layer.rgb:
        return f"{role} image '{layer.name}' is grayscale: converted to RGB (the model only knows colour images)"
    if layer.data.shape[-1] == 4:
        return f"{role} image '{layer.name}' is RGBA: composited on white"
    return ""


def put_output(viewer: Any, name: str, rgb: np.ndarray, geometry: dict[str, Any], info: dict[str, Any]) -> Any:
    """Update the output layer called ``name`` (an RGB image made by the swap widget) or add it; ``info`` goes to
    its ``metadata["domaingen"]["swap"]``."""
    from napari.layers import Image

    entry = dict(geometry["metadata"].get(META_KEY, {}))
    entry[OUTPUT_KEY] = info
    metadata = {**geometry["metadata"], META_KEY: entry}
    existing = layer_named(viewer, name)
    if isinstance(existing, Image) and existing.rgb and is_output(existing) and existing.ndim == rgb.ndim - 1:
        existing.data = rgb
        for attribute in ("scale", "translate", "affine"):
            setattr(existing, attribute, geometry[attribute])
        existing.metadata = metadata
        return existing
    return viewer.add_image(
        rgb,
        name=name,
        rgb=True,
        scale=geometry["scale"],
        translate=geometry["translate"],
        affine=geometry["affine"],
        metadata=metadata,
    )


def put_outputs(viewer: Any, outcome: Any, anatomy: Any, style: Any) -> str:
    """Add or update the layers of a swap run's ``outcome`` (a :class:`~._swap_options.SwapOutcome`), each on the
    grid of the image whose anatomy it shows, named by :func:`~napari_domaingen.core.swap_settings.output_name`;
    returns what was done, for the status line."""
    from ..core.swap_settings import output_name

    request, result = outcome.request, outcome.result
    settings = result.settings
    entry = {
        "anatomy_layer": anatomy.name,
        "style_layer": style.name,
        "model": outcome.model.name,
        "device": request.device,
        "overlap": settings.tiling_overlap,
        "seamless": settings.seamless,
        "detail": settings.detail,
        "glass": settings.glass,
        "colours": settings.colours,
        "rendering": settings.rendering(),
    }
    if request.what == "variants":
        assert result.variants is not None
        geometry = stack_geometry_kwargs(anatomy, leading_axes=1)
        name = f"{output_name('swap', anatomy.name, style.name)} variants"
        info = {
            **entry,
            "style_rule": f"{request.count} random patches of '{style.name}' (seed {request.seed})",
            "patch_centres": [list(c) for c in result.centres],
        }
        put_output(viewer, name, result.variants, geometry, info)
        return (
            f"{request.count} variants of '{anatomy.name}' in {outcome.seconds:.1f} s: random style patches "
            f"of '{style.name}' (seed {request.seed}); move the slider to see them"
        )
    entry["style_rule"] = settings.style_rule(style.name)
    order = ("recon_anatomy", "recon_style", "reverse", "swap")  # the swap last: on top
    for role in sorted(result.outputs, key=order.index):
        source = style if role in ("recon_style", "reverse") else anatomy
        name = output_name(role, anatomy.name, style.name)
        put_output(viewer, name, result.outputs[role], geometry_kwargs(source), entry)
    what = "swapped" if request.what == "all" else "re-rendered"
    return f"{what} in {outcome.seconds:.2f} s: {entry['style_rule']}; {entry['rendering']}"
