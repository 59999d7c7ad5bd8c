"""What the *Anatomy / style swap* widget runs in its worker: a swap (encode unless cached, then render) and
fine-tuning on the two images. No Qt here; the widget builds the requests on the GUI thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.swap import EncodedImage, encode, mean_style, random_styles, reconstruct, render, style_at
from ..core.swap_model import DEFAULT_MODEL, SwapModel, load_swap_model
from ..core.swap_training import SwapTrainResult, SwapTrainSettings, train_swap
from ..progress import Cancelled, Progress

DEFAULT_VARIANTS = 8
ModelKey = tuple[str, int, int, str]  # (file, mtime_ns, size, device)
TilingKey = tuple[Any, ...]  # ("seamless",) or ("plain", overlap)
CacheKey = tuple[ModelKey, TilingKey, tuple[Any, ...]]  # (model, tiling, layer key)


def tiling_key(seamless: bool, overlap: float) -> TilingKey:
    """What an encoding depends on besides the model and the image: the tiling (the overlap only for plain)."""
    return ("seamless",) if seamless else ("plain", round(float(overlap), 4))


@dataclass
class ImageInput:
    """One input image, taken from its layer on the GUI thread (no copy), with its cached encoding if any."""

    role: str
    name: str
    data: Any
    key: CacheKey
    encoded: EncodedImage | None = None


@dataclass
class SwapRequest:
    """What a swap run computes: ``what`` is ``"all"`` (4 outputs), ``"cross"`` (only A × S's style: the style
    point / region changed) or ``"variants"``; ``seamless``/``overlap``: the tiling; ``detail``: carry the
    anatomy image's detail over; ``tissue_only``: mean styles over tissue patches (core.swap)."""

    what: str
    model_key: ModelKey
    model_path: str
    device: str
    model: SwapModel | None
    anatomy: ImageInput
    style: ImageInput
    mode: str
    overlap: float
    seamless: bool = True
    detail: bool = True
    tissue_only: bool = True
    point: tuple[float, float] | None = None
    mask: np.ndarray | None = None
    count: int = DEFAULT_VARIANTS
    seed: int = 0

    def style_rule(self) -> str:
        """The style used, in words (for the status line and the outputs' metadata)."""
        if self.mode == "point":
            assert self.point is not None
            y, x = self.point
            return f"style of the patch at (y {y:.0f}, x {x:.0f}) of '{self.style.name}'"
        if self.mode == "region":
            assert self.mask is not None
            return f"mean style of '{self.style.name}' inside the painted region ({int(self.mask.sum())} px)"
        where = "tissue" if self.tissue_only else "whole image"
        return f"mean style of '{self.style.name}' ({where})"

    def rendering(self) -> str:
        """The rendering options, in words."""
        tiling = "seamless tilings" if self.seamless else f"one tiling (overlap {self.overlap:g})"
        return f"{tiling}, {'detail carried over' if self.detail else 'no detail carry-over'}"


@dataclass
class SwapOutcome:
    """What a swap run hands back: the model and encodings (for the caches), outputs by name → ``(rgb, role)``
    (role: whose geometry the layer takes), the variants stack and their style patch centres."""

    request: SwapRequest
    model: SwapModel
    encodings: dict[CacheKey, EncodedImage]
    outputs: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    variants: np.ndarray | None = None
    centres: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0
    encoded_now: int = 0


def describe_model(model: SwapModel) -> str:
    """One line about a loaded model: its network, steps trained, what it was fine-tuned from."""
    text = model.describe()
    steps = model.card.get("steps")
    if steps:
        text += f"; trained {steps} steps"
    if model.card.get("fine_tuned_from"):
        text += f" (fine-tuned from {Path(str(model.card['fine_tuned_from'])).name})"
    return text


def swap_job(request: SwapRequest, cancel: Callable[[], bool]) -> Generator[Progress, None, SwapOutcome]:
    """Worker body: load the model (unless cached), encode the inputs (unless cached), render the outputs."""
    start = time.perf_counter()
    model = request.model
    if model is None:
        label = "the shipped model" if request.model_path == DEFAULT_MODEL else Path(request.model_path).name
        yield {"stage": "load", "fraction": 0.02, "message": f"loading {label} on {request.device}"}
        model = load_swap_model(request.model_path, request.device)
    encodings: dict[CacheKey, EncodedImage] = {}
    inputs = [request.anatomy] if request.style.key == request.anatomy.key else [request.anatomy, request.style]
    encoded_now = 0
    for index, item in enumerate(inputs):
        encoded = item.encoded
        if encoded is None:
            shape = np.shape(item.data)
            yield {
                "stage": "encode",
                "fraction": 0.05 + 0.6 * index / len(inputs),
                "message": f"encoding the {item.role} image '{item.name}' ({shape[0]} × {shape[1]} px)",
            }
            encoded = encode(
                model,
                np.asarray(item.data),
                request.overlap,
                cancel=cancel,
                name=f"{item.role} image '{item.name}'",
                seamless=request.seamless,
            )
            encoded_now += 1
        encodings[item.key] = encoded
    if cancel():
        raise Cancelled("swap cancelled")
    anatomy, style = encodings[request.anatomy.key], encodings[request.style.key]
    a_name, s_name = request.anatomy.name, request.style.name
    outcome = SwapOutcome(request=request, model=model, encodings=encodings, encoded_now=encoded_now)
    if request.what == "variants":
        picks = random_styles(style, request.count, request.seed)
        frames = []
        for index, (vector, centre) in enumerate(picks):
            if cancel():
                raise Cancelled("variants cancelled")
            yield {
                "stage": "render",
                "fraction": 0.7 + 0.3 * index / len(picks),
                "message": f"rendering variant {index + 1}/{len(picks)}",
            }
            frames.append(render(model, anatomy, vector, detail=request.detail))
            outcome.centres.append(centre)
        outcome.variants = np.stack(frames)
    else:
        yield {"stage": "render", "fraction": 0.7, "message": "rendering"}
        if request.mode == "point":
            assert request.point is not None
            vector = style_at(style, *request.point)
        elif request.mode == "region":
            vector = mean_style(style, request.mask)
        else:
            vector = mean_style(style, tissue_only=request.tissue_only)
        if request.what == "all":
            outcome.outputs[f"{a_name} reconstruction"] = (reconstruct(model, anatomy), "anatomy")
            if len(inputs) == 2:
                outcome.outputs[f"{s_name} reconstruction"] = (reconstruct(model, style), "style")
                outcome.outputs[f"{s_name} anatomy × {a_name} style"] = (
                    render(model, style, mean_style(anatomy, tissue_only=request.tissue_only), detail=request.detail),
                    "style",
                )
        outcome.outputs[f"{a_name} anatomy × {s_name} style"] = (
            render(model, anatomy, vector, detail=request.detail),
            "anatomy",
        )
    outcome.seconds = time.perf_counter() - start
    return outcome


def finetune_job(
    inputs: list[tuple[str, Any]],
    out: Path,
    settings: SwapTrainSettings,
    init: str,
    cancel: Callable[[], bool],
) -> Generator[Progress, None, SwapTrainResult]:
    """Worker body: the two images as RGB (off the GUI thread), then the core training job."""
    from ..core.swap import as_rgb

    yield {"stage": "prepare", "fraction": 0.0, "message": "preparing the training images"}
    images = [as_rgb(np.asarray(data), name) for name, data in inputs]
    names = [name for name, _ in inputs]
    card = {"fine_tuned_on": names, "source": "napari-domaingen 'Anatomy / style swap' widget"}
    return (yield from train_swap(images, out, settings, init=init, cancel=cancel, names=names, card=card))
