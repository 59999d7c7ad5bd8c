"""The swap job on files: two image paths and an output path in, the outputs written, lines for people out.

What ``domaingen swap`` runs (and what a batch can run per case): :func:`swap_files` checks the inputs before they
are opened (:func:`~napari_domaingen.io.output_guard.require_input`: a file, or an OME-Zarr slide's folder) and
every output against both inputs (:func:`~napari_domaingen.io.output_guard.check_outputs`: the main output and, with
``reconstructions``, ``OUT_recon_anatomy``, ``OUT_recon_style`` and ``OUT_reverse``), then

* for an image output (``.png``, ``.tif``, ``.tiff``, ``.jpg``, ``.jpeg``): reads both images in memory and runs
  :func:`~napari_domaingen.core.swap_job.swap_images`; a slide too large for memory is refused with a hint;
* for a whole-slide output (``.ome.zarr``, ``.zarr``, ``.ome.tif``, ``.ome.tiff``): opens the anatomy slide lazily,
  reads the style image at its largest level within ``STYLE_MAX_BYTES`` and runs
  :func:`~napari_domaingen.core.swap_job.swap_slide_job`.

Facts for people that come before the long work (a reduced input, the model, what is swapped) are yielded as
progress updates of stage ``"note"``; the ``"wrote …"`` lines are in the result's ``lines``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

from ..io.output_guard import check_outputs, require_input
from ..progress import Progress
from ..typing import PathLike
from .jobs.base import JobResult
from .swap_job import SwapResult, check_point, load_model, swap_images, swap_slide_job
from .swap_model import SwapModel
from .swap_settings import OUTPUT_ROLES, STYLE_MAX_BYTES, SwapSettings, SwapSettingsError, output_path
from .swap_slide import SlideSwapResult

__all__ = ["IMAGE_SUFFIXES", "SwapFilesResult", "swap_files"]

#: image outputs of an in-memory swap (written by scikit-image; lossless except JPEG)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
Loader = Callable[[SwapSettings], SwapModel]


@dataclass(kw_only=True)
class SwapFilesResult(JobResult):
    """:class:`~napari_domaingen.core.jobs.base.JobResult` (``written``, ``lines``) with the swap's own result:
    ``swap`` for an image output, ``slide`` for a whole-slide output."""

    swap: SwapResult | None = None
    slide: SlideSwapResult | None = None


def _note(message: str) -> Progress:
    return {"stage": "note", "fraction": 0.0, "message": message}


def swap_files(
    settings: SwapSettings,
    anatomy: PathLike,
    style: PathLike,
    out: PathLike,
    *,
    loader: Loader = load_model,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, SwapFilesResult]:
    """Swap the image (or slide) ``anatomy`` with the style of ``style`` into ``out``; a job (module docstring).
    ``loader``: loads the model of the settings (e.g. with a hint for a command line)."""
    from ..io.slide_write import slide_output_kind

    out = Path(out)
    slide = slide_output_kind(out) is not None
    if out.suffix.lower() not in IMAGE_SUFFIXES and not slide:
        raise SwapSettingsError(
            f"{out}: the output file name must end in {', '.join(IMAGE_SUFFIXES)} (or .ome.zarr, .zarr, .ome.tif, "
            ".ome.tiff for a whole slide swapped block by block)"
        )
    if slide and settings.reconstructions:
        raise SwapSettingsError("--reconstructions is not available for a whole-slide output (.ome.zarr, .ome.tif)")
    require_input(anatomy, "anatomy image")
    require_input(style, "style image")
    roles = OUTPUT_ROLES if settings.reconstructions else ("swap",)
    check_outputs([output_path(out, role) for role in roles], [anatomy, style])
    if slide:
        return (yield from _swap_slide_files(settings, Path(anatomy), Path(style), out, loader, cancel))
    return (yield from _swap_image_files(settings, Path(anatomy), Path(style), out, loader, cancel))


def _refuse_slide(anatomy: Path, out: Path) -> None:
    """A lazily readable slide larger than the in-memory budget needs a whole-slide output."""
    from ..io.histology import DEFAULT_MAX_BYTES
    from ..io.slide import open_lazy_tiff, open_slide

    slide = open_slide(anatomy) if anatomy.is_dir() else open_lazy_tiff(anatomy)
    if slide is None:
        return
    slide.close()
    whole_slide = "swap it block by block at full resolution with an --out ending in .ome.zarr or .ome.tif"
    if anatomy.is_dir():
        raise SwapSettingsError(f"{anatomy} is an OME-Zarr slide: {whole_slide} (not {out.name})")
    if slide.nbytes > DEFAULT_MAX_BYTES:
        height, width = slide.shape
        raise SwapSettingsError(
            f"{anatomy} is a slide of {height} × {width} px ({slide.nbytes / 2**20:.0f} MiB as RGB), too large to "
            f"swap in memory ({DEFAULT_MAX_BYTES / 2**20:.0f} MiB): {whole_slide} (not {out.name})"
        )


def _swap_image_files(
    settings: SwapSettings, anatomy: Path, style: Path, out: Path, loader: Loader, cancel: Callable[[], bool] | None
) -> Generator[Progress, None, SwapFilesResult]:
    from ..io.histology import read_histology
    from ..io.preview import save_png

    _refuse_slide(anatomy, out)
    images = {}
    for role, path in (("anatomy", anatomy), ("style", style)):
        image = read_histology(path)
        if image.downsamples[0] != 1:
            yield _note(
                f"note: {path} is too large to load whole; using it reduced {image.downsamples[0]:g}× "
                f"({image.data.shape[0]} × {image.data.shape[1]} px)"
            )
        images[role] = image.data
    check_point(settings, images["style"].shape, str(style))
    model = loader(settings)
    yield _note(f"Model: {model.describe()}")
    big = max(image.shape[0] * image.shape[1] for image in images.values())
    if big > 4 * 2**20:
        tile = model.config.img_size
        yield _note(f"Encoding images of up to {big / 1e6:.0f} Mpx in {tile} px tiles: this takes a while ...")
    job = swap_images(
        settings, images["anatomy"], images["style"], names=(str(anatomy), str(style)), model=model, cancel=cancel
    )
    swapped = yield from job
    if settings.point is None:
        how = f"the mean style of {style}'s {'tissue' if settings.tissue_only else 'patches'}"
    else:
        how = f"the style of the patch at (y {settings.point[0]:g}, x {settings.point[1]:g}) of {style}"
    rendering = f"{'seamless' if settings.seamless else f'one tiling, overlap {settings.tiling_overlap:g}'}, "
    rendering += f"{'detail carried over' if settings.detail else 'no detail carry-over'}, {swapped.precision}"
    what = {
        "swap": f"the anatomy of {anatomy} with {how} ({rendering}; {swapped.seconds:.2f} s)",
        "recon_anatomy": f"{anatomy} re-synthesized from its own anatomy and style",
        "recon_style": f"{style} re-synthesized from its own anatomy and style",
        "reverse": f"the reverse swap, the anatomy of {style} with the mean style of {anatomy}",
    }
    result = SwapFilesResult(swap=swapped)
    for role, rgb in swapped.outputs.items():
        target = save_png(output_path(out, role), rgb)
        psnr = f" (PSNR {swapped.psnr[role]:.2f} dB)" if role in swapped.psnr else ""
        result.written.append(target)
        result.lines.append(f"wrote {target}: {what[role]}{psnr}")
    return result


def _swap_slide_files(
    settings: SwapSettings, anatomy: Path, style: Path, out: Path, loader: Loader, cancel: Callable[[], bool] | None
) -> Generator[Progress, None, SwapFilesResult]:
    from ..io.slide import open_slide, read_in_memory

    slide = open_slide(anatomy)
    try:
        style_image, factor = read_in_memory(style, STYLE_MAX_BYTES)
        if factor != 1:
            yield _note(
                f"note: style image {style} read reduced {factor:g}× "
                f"({style_image.shape[0]} × {style_image.shape[1]} px) for its style"
            )
        check_point(settings, (style_image.shape[0] * factor, style_image.shape[1] * factor), str(style))
        model = loader(settings)
        yield _note(f"Model: {model.describe()}")
        height, width = slide.shape
        scale = f"{slide.mpp:g} µm/px" if slide.mpp is not None else "pixel size unknown"
        point = settings.point
        how = "its mean style" if point is None else f"the style at (y {point[0]:g}, x {point[1]:g})"
        yield _note(
            f"Swapping {anatomy} ({height} × {width} px, {height * width / 1e6:.0f} Mpx, {scale}) with {how} "
            f"of {style}, at full resolution in {settings.block} px blocks → {out}"
        )
        job = swap_slide_job(
            settings, slide, style_image, out, style_factor=factor, style_name=str(style), model=model, cancel=cancel
        )
        del style_image
        written = yield from job
    finally:
        slide.close()
    levels = ", ".join(f"{y} × {x}" for y, x in written.levels)
    scale = f"{written.mpp:g} µm/px" if written.mpp is not None else "pixel size unknown"
    line = (
        f"wrote {written.path}: {len(written.levels)} levels ({levels} px), {scale}; {written.blocks} blocks in "
        f"{written.seconds:.1f} s ({written.megapixels_per_second:.2f} Mpx/s, {written.precision})"
    )
    return SwapFilesResult(slide=written, written=[written.path], lines=[line])
