"""npe2 reader contributions: NIfTI volumes and histology images (PNG/JPEG/TIFF/SVS)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..io.histology import is_histology_path, read_histology
from ..io.nifti import is_nifti_path
from .layers import LayerDataTuple, histology_layer_data, volume_layer_data
from .output_layers import output_layer_data
from .reader_paths import ReaderFunction, reader_paths
from .view import follow_current_viewer


def get_nifti_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return :func:`read_nifti_layers` when every path is a ``.nii``/``.nii.gz`` file."""
    paths = reader_paths(path)
    return read_nifti_layers if paths and all(is_nifti_path(p) for p in paths) else None


def read_nifti_layers(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Each file → one Image or Labels layer (4D files: one Image layer per volume; the plugin's own outputs styled
    as the docks show them, :mod:`.output_layers`), in RAS display order; the viewer they open in shows them in
    the radiological (or chosen) view."""
    layers = [layer for p in reader_paths(path) for layer in output_layer_data(p)]
    follow_current_viewer()
    return layers


def get_histology_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return :func:`read_histology_layers` when every path is a histology image."""
    paths = reader_paths(path)
    return read_histology_layers if paths and all(is_histology_path(p) for p in paths) else None


def read_histology_layers(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Each file → one RGB Image layer (multiscale for pyramids), scaled in µm when the file says so.

    A TIFF/SVS pyramid of several levels of 8-bit RGB/RGBA/gray tiles is a slide: it opens lazily at full
    resolution (:func:`~napari_domaingen.io.slide.open_lazy_tiff`, nothing decoded until shown); any other image
    is read whole (levels beyond the in-memory budget left out: :func:`~napari_domaingen.io.read_histology`).
    """
    from ..io.slide import open_lazy_tiff
    from .slide_reader import slide_layer_data

    layers = []
    for item in reader_paths(path):
        slide = open_lazy_tiff(item)
        if slide is not None and len(slide.levels) > 1:
            layers.append(slide_layer_data(slide))
        else:
            if slide is not None:
                slide.close()
            layers.append(histology_layer_data(read_histology(item)))
    return layers


def _is_dicom_input(path: str) -> bool:
    candidate = Path(path)
    if candidate.name.lower().endswith(".zarr"):  # an OME-Zarr folder: the OME-Zarr reader's
        return False
    return candidate.is_dir() or candidate.suffix.lower() in (".zip", ".dcm")


def _nifti_files(folder: str) -> list[Path]:
    """The NIfTI files directly in ``folder`` (a subject's volumes, a batch case's outputs), by name."""
    root = Path(folder)
    return sorted(p for p in root.iterdir() if p.is_file() and is_nifti_path(p)) if root.is_dir() else []


def get_dicom_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return :func:`read_dicom_layers` for DICOM folders, zips of a series, and ``.dcm`` files."""
    paths = reader_paths(path)
    return read_dicom_layers if paths and all(_is_dicom_input(p) for p in paths) else None


def read_dicom_layers(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Every image series in each folder/zip → one Image layer (a ``.dcm`` file → its whole series); every DICOM
    Segmentation (a ``.dcm`` file, or in a folder) → one Labels layer with its class names and colours; the NIfTI
    files directly in a folder → their layers (as :func:`read_nifti_layers` opens them)."""
    from ..io.dicom import list_series, read_series
    from ..io.dicom_seg import is_dicom_seg, read_dicom_seg
    from ..io.errors import VolumeReadError

    layers = []
    for item in reader_paths(path):
        if Path(item).suffix.lower() == ".dcm":
            read = read_dicom_seg if is_dicom_seg(item) else read_series
            layers.append(volume_layer_data(read(item)))
        else:
            niftis = _nifti_files(item)
            segs = [p for p in sorted(Path(item).rglob("*")) if p.is_file() and is_dicom_seg(p)]
            try:
                layers += [volume_layer_data(read_series(series)) for series in list_series(item)]
            except VolumeReadError as exc:
                if not segs and not niftis:  # a folder of segmentations or NIfTI files only is fine
                    raise VolumeReadError(
                        item,
                        f"{exc.problem}, and no NIfTI files directly in it; for a subject's volumes in sub-folders "
                        "use Plugins ▸ napari-domaingen ▸ Load volumes ▸ Add folder",
                    ) from None
            layers += [volume_layer_data(read_dicom_seg(p)) for p in segs]
            layers += [layer for p in niftis for layer in output_layer_data(p)]
    follow_current_viewer()
    return layers
