"""The swap jobs that the ``swap`` command, the batch and the swap dock share: settings in, a typed result out.

* :func:`swap_images` — two in-memory images: the anatomy image rendered with the style image's style (the
  settings' style rule), optionally its reconstructions and the reverse swap, or N style variants → :class:`SwapResult`
  (the RGB outputs by role, the reconstructions' PSNR, the encodings for a cache);
* :func:`swap_slide_job` — a whole slide at full resolution, block by block, to OME-Zarr or OME-TIFF
  (:func:`~napari_domaingen.core.swap_slide.swap_slide`) → :class:`~napari_domaingen.core.swap_slide.SlideSwapResult`.

Both are generator jobs (:mod:`napari_domaingen.progress`): they yield progress updates, check ``cancel`` and
return their result. The model is loaded from ``settings.model`` on ``settings.device`` unless one is passed (a
caller's cache). :func:`style_vector` is the one place a style rule becomes a style vector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..progress import Cancelled, Progress
from ..typing import Precision
from .colour_match import TissueColours, tissue_lab
from .swap import mean_style, point_style, random_styles, reconstruct, render
from .swap_encoding import DEFAULT_OVERLAP, EncodedImage, as_rgb, encode
from .swap_model import DEFAULT_MODEL, SwapModel
from .swap_settings import STYLE_MAX_BYTES, SwapSettings, SwapSettingsError
from .swap_slide import SlideSwapResult, swap_slide
from .tissue import glass_colour, tissue_weight

__all__ = [
    "SwapResult",
    "POINT_WINDOW",
    "slide_style",
    "style_colours",
    "swap_pair",
    "check_point",
    "describe_model",
    "load_model",
    "style_level",
    "style_vector",
    "swap_images",
    "swap_slide_job",
]

Cancel = Callable[[], bool]


def _never() -> bool:
    return False


def load_model(settings: SwapSettings) -> SwapModel:
    """The model of ``settings.model`` (``"default"``: the shipped one, or a file) on ``settings.device``."""
    from .device import resolve_device
    from .swap_model import load_swap_model

    return load_swap_model(settings.model, resolve_device(settings.device))


def describe_model(model: SwapModel) -> str:
    """One line about a loaded model: its network, steps trained, what it was fine-tuned from."""
    text = model.describe()
    steps = model.card.get("steps")
    if steps:
        text += f"; trained {steps} steps"
    if model.card.get("fine_tuned_from"):
        text += f" (fine-tuned from {Path(str(model.card['fine_tuned_from'])).name})"
    return text


def check_point(settings: SwapSettings, shape: Sequence[int], name: str) -> None:
    """Refuse a style point outside a style image of ``shape`` ``(Y, X, …)`` px (its full resolution)."""
    if settings.point is None:
        return
    (y, x), height, width = settings.point, float(shape[0]), float(shape[1])
    if not (0 <= y < height and 0 <= x < width):
        raise SwapSettingsError(
            f"--style-point {y:g},{x:g} lies outside the style image {name} ({height:.0f} × {width:.0f} px; "
            f"y must be in [0, {height:.0f}), x in [0, {width:.0f}))"
        )


def style_vector(
    model: SwapModel,
    settings: SwapSettings,
    image: Any,
    encoded: EncodedImage | None = None,
    name: str = "style image",
    cancel: Cancel | None = None,
) -> torch.Tensor:
    """The style vector ``(E/2,)`` of ``settings``' style rule on the style ``image`` (:mod:`.swap_settings`).

    ``encoded``: the image's encoding with the settings' tilings, if at hand (the mean and region rules need one;
    it is made here otherwise). The point rule encodes only the tile under the point."""
    if settings.style == "point":
        assert settings.point is not None
        check_point(settings, np.shape(image), name)
        return point_style(model, np.asarray(image), *settings.point, precision=settings.precision)
    if encoded is None:
        encoded = _encode(model, settings, image, name, cancel)
    if settings.style == "region":
        return mean_style(encoded, settings.mask)
    return mean_style(encoded, tissue_only=settings.tissue_only)


def _glass_of(settings: SwapSettings, image: Any, name: str) -> np.ndarray | None:
    """The glass colour ``(3,)`` of a style image (:func:`~.tissue.glass_colour`) with ``settings.glass``, else
    ``None`` (the model's render of the glass is kept)."""
    return glass_colour(as_rgb(np.asarray(image), name)) if settings.glass else None


#: px: the point rule's tissue colours are measured in this square around the point (clipped to the image)
POINT_WINDOW = 256


def style_colours(
    settings: SwapSettings, image: Any, name: str = "style image", point: tuple[float, float] | None = None
) -> TissueColours | None:
    """The tissue colours (:mod:`.colour_match`) of a style ``image`` where ``settings``' style rule takes its style
    (module :mod:`.swap_settings`): around ``point`` (default ``settings.point``; px of ``image``) for the point
    rule, in ``settings.mask`` for the region rule, over all the tissue otherwise. ``None`` without
    ``settings.colours`` or with under :data:`~.colour_match.MIN_PIXELS` tissue pixels there (the model's colours
    are kept)."""
    if not settings.colours:
        return None
    rgb = as_rgb(np.asarray(image), name)
    point = settings.point if point is None and settings.style == "point" else point
    mask = settings.mask if settings.style == "region" and point is None else None
    return _colours_of(rgb, tissue_weight(rgb), point, mask)


def _colours_of(
    rgb: np.ndarray, weight: np.ndarray, point: tuple[float, float] | None = None, mask: np.ndarray | None = None
) -> TissueColours | None:
    """:func:`style_colours` of ``rgb`` ``(Y, X, 3)`` float with its tissue ``weight``, around ``point`` or inside
    ``mask`` (else over all the tissue)."""
    where = None if mask is None else np.asarray(mask, bool)
    if point is not None:
        where = np.zeros(rgb.shape[:2], bool)
        y, x, half = int(point[0]), int(point[1]), POINT_WINDOW // 2
        where[max(0, y - half) : y + half, max(0, x - half) : x + half] = True
    lab = tissue_lab(rgb, weight, where)
    return None if lab is None else TissueColours.of(lab)


def _encode(model: SwapModel, settings: SwapSettings, image: Any, name: str, cancel: Cancel | None) -> EncodedImage:
    return encode(
        model,
        np.asarray(image),
        settings.tiling_overlap,
        cancel,
        name=name,
        seamless=settings.seamless,
        precision=settings.precision,
    )


@dataclass
class SwapResult:
    """What :func:`swap_images` computed.

    ``outputs``: ``(Y, X, 3)`` uint8 by role (:data:`~.swap_settings.OUTPUT_ROLES`; ``"swap"`` unless variants
    were asked for), each of the size of the image whose anatomy it shows (the anatomy image's, the style image's for
    ``"recon_style"`` and ``"reverse"``); ``psnr``: dB of each reconstruction against its input, by role;
    ``variants``: ``(N, Y, X, 3)`` uint8 and ``centres`` the ``(y, x)`` of their style patches; ``style``: the style
    vector used; ``encoded``: the encodings by ``"anatomy"``/``"style"`` (for a cache) and ``encoded_now`` how many
    were made by this run; ``precision``: the encoder's arithmetic; ``seconds``: wall time.
    """

    settings: SwapSettings
    model: SwapModel
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)
    variants: np.ndarray | None = None
    centres: list[tuple[int, int]] = field(default_factory=list)
    style: torch.Tensor | None = None
    encoded: dict[str, EncodedImage] = field(default_factory=dict)
    encoded_now: int = 0
    precision: str = "fp32"
    seconds: float = 0.0


def _psnr(image: Any, name: str, recon: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    target = np.rint(as_rgb(np.asarray(image), name) * 255.0).astype(np.uint8)
    return float(peak_signal_noise_ratio(target, recon, data_range=255))


def swap_images(
    settings: SwapSettings,
    anatomy: Any,
    style: Any,
    *,
    names: tuple[str, str] = ("anatomy image", "style image"),
    model: SwapModel | None = None,
    encoded: tuple[EncodedImage | None, EncodedImage | None] = (None, None),
    same: bool = False,
    variants: int = 0,
    seed: int = 0,
    cancel: Cancel | None = None,
) -> Generator[Progress, None, SwapResult]:
    """Swap two in-memory images (any input :func:`~napari_domaingen.core.swap_encoding.as_rgb` takes); a job.

    ``names``: of the anatomy and style images, for messages; ``model``: a loaded model (else
    :func:`load_model`); ``encoded``: cached encodings of the two images with this model and the settings' tilings;
    ``same``: both are one image (encoded once, no style reconstruction or reverse swap); ``variants``: instead of
    the swap, render the anatomy image with this many random style patches of the style image (``seed``).
    With ``settings.reconstructions``: also ``recon_anatomy``, ``recon_style`` and ``reverse`` (the style image's
    anatomy with the anatomy image's mean style) and their PSNR.
    """
    cancel = cancel or _never
    start = time.perf_counter()
    if model is None:
        label = "the shipped model" if settings.model == DEFAULT_MODEL else Path(settings.model).name
        yield {"stage": "load", "fraction": 0.02, "message": f"loading {label} on {settings.device}"}
        model = load_model(settings)
    patch = model.config.patch_size
    for image, name, role in zip((anatomy, style), names, ("anatomy", "style")):
        shape = np.shape(image)
        if len(shape) < 2 or shape[0] < patch or shape[1] < patch:
            raise SwapSettingsError(
                f"{role} image '{name}': {' × '.join(str(n) for n in shape[:2])} px is smaller than one "
                f"{patch} × {patch} patch of the model {model.name}"
            )
    if settings.style == "point" and not variants:
        check_point(settings, np.shape(style), names[1])
    if settings.style == "region" and np.shape(settings.mask) != tuple(np.shape(style)[:2]):
        raise SwapSettingsError(f"the region mask is {np.shape(settings.mask)}, the style image {np.shape(style)[:2]}")
    result = SwapResult(settings=settings, model=model)
    needs_style = variants > 0 or settings.style != "point" or (settings.reconstructions and not same)
    roles = [("anatomy", anatomy, names[0], encoded[0])]
    if needs_style and not same:
        roles.append(("style", style, names[1], encoded[1]))
    for index, (role, image, name, cached) in enumerate(roles):
        if cached is None:
            shape = np.shape(image)
            yield {
                "stage": "encode",
                "fraction": 0.05 + 0.6 * index / len(roles),
                "message": f"encoding the {role} image '{name}' ({shape[0]} × {shape[1]} px)",
            }
            cached = _encode(model, settings, image, f"{role} image '{name}'", cancel)
            result.encoded_now += 1
        result.encoded[role] = cached
    if same and "anatomy" in result.encoded:
        result.encoded["style"] = result.encoded["anatomy"]
    if cancel():
        raise Cancelled("swap cancelled")
    a_encoded, s_encoded = result.encoded["anatomy"], result.encoded.get("style")
    result.precision = a_encoded.precision
    glass = _glass_of(settings, style, names[1])
    if variants:
        assert s_encoded is not None
        frames = []
        style_rgb = as_rgb(np.asarray(style), names[1]) if settings.colours else None
        style_weight = None if style_rgb is None else tissue_weight(style_rgb)  # once for every variant
        for index, (vector, centre) in enumerate(random_styles(s_encoded, variants, seed)):
            if cancel():
                raise Cancelled("variants cancelled")
            yield {
                "stage": "render",
                "fraction": 0.7 + 0.3 * index / variants,
                "message": f"rendering variant {index + 1}/{variants}",
            }
            colours = None if style_weight is None else _colours_of(style_rgb, style_weight, centre)
            frames.append(render(model, a_encoded, vector, detail=settings.detail, glass=glass, colours=colours))
            result.centres.append(centre)
        result.variants = np.stack(frames)
        result.seconds = time.perf_counter() - start
        return result
    yield {"stage": "render", "fraction": 0.7, "message": "rendering"}
    result.style = style_vector(model, settings, style, s_encoded, names[1], cancel)
    colours = style_colours(settings, style, names[1])
    result.outputs["swap"] = render(
        model, a_encoded, result.style, detail=settings.detail, glass=glass, colours=colours
    )
    if settings.reconstructions:
        yield {"stage": "render", "fraction": 0.85, "message": "rendering the reconstructions"}
        result.outputs["recon_anatomy"] = reconstruct(model, a_encoded)
        result.psnr["recon_anatomy"] = _psnr(anatomy, names[0], result.outputs["recon_anatomy"])
        if not same:
            assert s_encoded is not None
            result.outputs["recon_style"] = reconstruct(model, s_encoded)
            result.psnr["recon_style"] = _psnr(style, names[1], result.outputs["recon_style"])
            reverse = mean_style(a_encoded, tissue_only=settings.tissue_only)
            result.outputs["reverse"] = render(
                model,
                s_encoded,
                reverse,
                detail=settings.detail,
                glass=_glass_of(settings, anatomy, names[0]),
                colours=style_colours(replace(settings, style="mean", point=None, mask=None), anatomy, names[0]),
            )
    result.seconds = time.perf_counter() - start
    return result


def style_level(levels: Sequence[Any]) -> tuple[Any, float]:
    """The largest of a style slide's ``levels`` (``(Y, X, 3)`` array-likes, level 0 first) within
    :data:`~.swap_settings.STYLE_MAX_BYTES` of RGB (the smallest when none is), and its downsample factor."""
    for level in levels:
        if level.shape[0] * level.shape[1] * 3 <= STYLE_MAX_BYTES:
            break
    else:
        level = levels[-1]
    return level, float(np.mean([levels[0].shape[0] / level.shape[0], levels[0].shape[1] / level.shape[1]]))


def swap_slide_job(
    settings: SwapSettings,
    slide: Any,
    style_image: Any,
    out: str | Path,
    *,
    style_factor: float = 1.0,
    style_name: str = "style image",
    model: SwapModel | None = None,
    mpp: float | None = None,
    name: str | None = None,
    cancel: Cancel | None = None,
) -> Generator[Progress, None, SlideSwapResult]:
    """Swap level 0 of ``slide`` (a :class:`~napari_domaingen.io.slide.Slide` or a ``(Y, X, 3)`` array-like) with
    the style of ``style_image`` into ``out`` (``.ome.zarr``/``.zarr``/``.ome.tif``/``.ome.tiff``); a job.

    ``style_image``: the style image in memory or lazy (a dask array is computed), ``style_factor`` times smaller
    than its full resolution (``settings.point`` is in full-resolution px); the region rule is refused.
    ``mpp``/``name``: written to the output (default: the slide's). Nothing is left at ``out`` on cancel or error.
    """
    if settings.style == "region":
        raise SwapSettingsError("a whole-slide swap takes the point or mean style; choose one of them")
    if settings.reconstructions:
        raise SwapSettingsError("--reconstructions is not available for a whole-slide output (.ome.zarr, .ome.tif)")
    shape = np.shape(style_image)
    check_point(settings, (shape[0] * style_factor, shape[1] * style_factor), style_name)
    if model is None:
        yield {"stage": "load", "fraction": 0.0, "message": f"loading the model on {settings.device}"}
        model = load_model(settings)
    yield {"stage": "style", "fraction": 0.0, "message": "reading the style image and its style"}
    if hasattr(style_image, "compute"):
        style_image = style_image.compute()
    style_image = np.asarray(style_image)
    at_level = settings
    if settings.point is not None and style_factor != 1:
        at_level = replace(settings, point=(settings.point[0] / style_factor, settings.point[1] / style_factor))
    style = style_vector(model, at_level, style_image, name=style_name, cancel=cancel)
    style_glass = _glass_of(settings, style_image, style_name)
    colours = style_colours(at_level, style_image, style_name)
    del style_image
    return (
        yield from swap_slide(
            model,
            slide,
            style,
            out,
            block=settings.block,
            seamless=settings.seamless,
            detail=settings.detail,
            overlap=settings.tiling_overlap,
            precision=settings.precision,
            mpp=mpp,
            name=name,
            style_glass=style_glass,
            colours=colours,
            cancel=cancel,
        )
    )


def swap_pair(
    model: SwapModel,
    anatomy_image: np.ndarray,
    style_image: np.ndarray,
    style_point: Sequence[float] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    seamless: bool = True,
    detail: bool = True,
    precision: Precision = "auto",
    tissue_only: bool = True,
    glass: bool = True,
    colours: bool = True,
) -> np.ndarray:
    """One-call swap: ``anatomy_image`` rendered with the style of ``style_image`` at ``style_point`` (y, x) or,
    when ``None``, its mean style (over its tissue, or all patches without ``tissue_only``). ``(Y, X, 3)`` uint8 of
    the anatomy image's size; ``seamless``/``overlap``: the tilings; ``detail``: carry its detail over; ``glass``:
    the anatomy's glass in the style image's glass colour; ``colours``: the tissue's colours mapped onto the style
    image's tissue colours (:func:`style_colours`).

    A shortcut for :func:`swap_images` (the job the command and the dock run).
    """
    from ..progress import run

    settings = SwapSettings(
        precision=precision,
        seamless=seamless,
        detail=detail,
        tissue_only=tissue_only,
        glass=glass,
        colours=colours,
        overlap=None if seamless else overlap,
        style="mean" if style_point is None else "point",
        point=None if style_point is None else (float(style_point[0]), float(style_point[1])),
    )
    return run(swap_images(settings, anatomy_image, style_image, model=model)).outputs["swap"]


def slide_style(
    model: SwapModel,
    image: np.ndarray,
    point: tuple[float, float] | None = None,
    tissue_only: bool = True,
    precision: Precision = "auto",
    name: str = "style image",
    seamless: bool = True,
    overlap: float | None = None,
) -> torch.Tensor:
    """The style vector ``(E/2,)`` of an in-memory style image: of the patch under ``point`` ``(y, x)`` (px of
    ``image``), or its mean style (over its tissue with ``tissue_only``, from its encoding with the tilings
    ``seamless``/``overlap``): :func:`style_vector`'s rules."""
    settings = SwapSettings(
        precision=precision,
        seamless=seamless,
        overlap=overlap,
        tissue_only=tissue_only,
        style="mean" if point is None else "point",
        point=point,
    )
    return style_vector(model, settings, image, name=name)
