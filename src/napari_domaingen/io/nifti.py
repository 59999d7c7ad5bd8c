"""Read and write NIfTI volumes with exact geometry.

Reading reorients to nibabel's closest canonical orientation (RAS+) and reverses the axes to display order
``(Z, Y, X)`` (see :mod:`napari_domaingen.io.geometry`). The file's own affine, header and orientation are kept
in :class:`NiftiSource`, so :func:`write_nifti` puts any array on that grid back into the file's original voxel
order with the original affine, qform and sform, and the result lines up voxel-for-voxel with the source.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from .atomic import atomic_path, default_file_mode  # noqa: F401 (default_file_mode: re-exported)
from .errors import VolumeReadError, VolumeWriteError
from .geometry import display_to_ras_affine, ras_to_display_affine
from .intensity import label_dtype
from .label_table import LabelTable, check_names, read_label_sidecars, sidecar_paths, write_label_sidecars
from .nifti_names import NIFTI_SUFFIXES, is_nifti_path, strip_nifti_suffix  # noqa: F401 (re-exported)
from .output_guard import require_input_file

LABEL_NAME_PATTERN = re.compile(r"(^|[^a-z])(seg|segmentation|label|labels|mask|parc|aseg|annot)([^a-z]|$)", re.I)
MAX_LABEL_VALUES = 64
#: Largest label value read or written: NIfTI labels are stored as uint8/uint16/uint32 (:func:`.intensity.label_dtype`).
MAX_LABEL_VALUE = 2**32 - 1

_RAS = axcodes2ornt(("R", "A", "S"))


@dataclass(frozen=True)
class NiftiSource:
    """Geometry of the file a volume came from, enough to write data back onto its grid.

    ``affine`` (4, 4) maps the file's voxel ``(i, j, k)`` to RAS mm; ``shape`` is its spatial shape ``(i, j, k)``.
    ``dicom_series_uid``: the SeriesInstanceUID when the volume was read from a DICOM series (``path`` is then
    its folder, zip or file), so labels drawn on it can be exported as a DICOM Segmentation referencing it.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    header: nib.Nifti1Header = field(repr=False)
    path: str | None = None
    dicom_series_uid: str | None = None

    @property
    def axcodes(self) -> tuple[str, str, str]:
        return nib.aff2axcodes(self.affine)

    @property
    def canonical_transform(self) -> np.ndarray:
        """nibabel orientation transform from the file's voxel axes to RAS+ voxel axes."""
        return ornt_transform(io_orientation(self.affine), _RAS)

    @property
    def display_shape(self) -> tuple[int, int, int]:
        """Spatial shape in display order ``(Z, Y, X)``."""
        ornt = io_orientation(self.affine)
        canonical = [0, 0, 0]
        for in_axis, (out_axis, _flip) in enumerate(ornt):
            canonical[int(out_axis)] = self.shape[in_axis]
        return tuple(reversed(canonical))  # type: ignore[return-value]

    @property
    def display_affine(self) -> np.ndarray:
        """(4, 4): display index ``(z, y, x)`` → world ``(S, A, R)`` mm."""
        canonical_affine = self.affine @ nib.orientations.inv_ornt_aff(self.canonical_transform, self.shape)
        return ras_to_display_affine(canonical_affine)


@dataclass
class Volume:
    """A volume in display order.

    ``data`` is ``(Z, Y, X)`` or ``(C, Z, Y, X)``; ``display_affine`` (4, 4) maps ``(z, y, x)`` to ``(S, A, R)`` mm.
    ``label_table``: class names and colours of a label volume (from its sidecars or a DICOM Segmentation).
    """

    data: np.ndarray
    display_affine: np.ndarray
    name: str
    is_label: bool = False
    source: NiftiSource | None = None
    label_table: LabelTable | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm, display order."""
        return tuple(float(s) for s in np.linalg.norm(self.display_affine[:3, :3], axis=0))  # type: ignore

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[-3:])  # type: ignore[return-value]


def read_nifti(path: str | os.PathLike, as_label: bool | None = None) -> Volume:
    """Read a 3D or 4D NIfTI file into display order.

    4D files give ``(C, Z, Y, X)`` with the fourth NIfTI axis first (a length-1 fourth axis is dropped).
    ``as_label=None`` decides from the file name and values (see :func:`looks_like_labels`). Labels get their
    class names and colours from ``<stem>.json`` or ``<stem>.txt`` beside the file (:mod:`.label_table`).
    Raises :class:`VolumeReadError` naming the file and the problem.
    """
    path = require_input_file(path, "NIfTI volume", VolumeReadError)
    if path.stat().st_size == 0:
        raise VolumeReadError(path, "the file is empty (0 bytes); expected a NIfTI volume")
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a file that is not NIfTI
        raise VolumeReadError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeReadError(path, f"not a NIfTI image (nibabel read it as {type(image).__name__})")
    volume = volume_from_image(image, strip_nifti_suffix(path), as_label=as_label, path=path)
    if volume.is_label:
        volume.label_table = read_label_sidecars(path)
    return volume


def volume_from_image(
    image: nib.Nifti1Image | nib.Nifti2Image,
    name: str,
    as_label: bool | None = None,
    path: str | os.PathLike | None = None,
) -> Volume:
    """A nibabel NIfTI image (from a file or made in memory) → :class:`Volume` in display order.

    Errors name ``path`` (or ``name`` for in-memory images) and the problem.
    """
    where = path if path is not None else name
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) not in (3, 4):
        raise VolumeReadError(
            where, f"has {len(image.shape)} dimensions {tuple(image.shape)}; expected a 3D volume or a 4D stack"
        )
    try:
        data = np.asanyarray(image.dataobj).reshape(shape)
    except Exception as exc:  # truncated/corrupt payload surfaces here
        raise VolumeReadError(where, f"image data cannot be read, the file may be truncated ({exc})") from exc
    source = source_of_image(image, path)
    display = to_display_order(data, source)
    if np.shares_memory(display, data):  # a pure axis reversal can be a view: the volume owns its data
        display = display.copy()
    if as_label is None:
        as_label = display.ndim == 3 and looks_like_labels(name, display)
    if as_label:
        display = _as_label_array(display, where)
    return Volume(data=display, display_affine=source.display_affine, name=name, is_label=as_label, source=source)


def source_of_image(image: nib.Nifti1Image | nib.Nifti2Image, path: str | os.PathLike | None = None) -> NiftiSource:
    """The grid of a nibabel image (affine, spatial shape, header), without reading its voxels."""
    header = image.header
    return NiftiSource(
        affine=np.array(image.affine, dtype=float),
        shape=tuple(int(s) for s in image.shape[:3]),  # type: ignore[arg-type]
        header=header.copy() if isinstance(header, nib.Nifti1Header) else nib.Nifti1Header.from_header(header),
        path=str(path) if path is not None else None,
    )


def to_display_order(data: np.ndarray, source: NiftiSource) -> np.ndarray:
    """File voxel order ``(i, j, k[, t])`` → display order ``(Z, Y, X)`` or ``(C, Z, Y, X)``."""
    canonical = apply_orientation(data, source.canonical_transform)
    if canonical.ndim == 4:
        return np.ascontiguousarray(np.transpose(canonical, (3, 2, 1, 0)))
    return np.ascontiguousarray(np.transpose(canonical, (2, 1, 0)))


def to_file_order(data: np.ndarray, source: NiftiSource) -> np.ndarray:
    """Inverse of :func:`to_display_order`; a channel-first array gets the channels last, as NIfTI expects."""
    if data.ndim == 4:
        canonical = np.transpose(data, (3, 2, 1, 0))
    else:
        canonical = np.transpose(data, (2, 1, 0))
    back = ornt_transform(_RAS, io_orientation(source.affine))
    return apply_orientation(canonical, back)


def looks_like_labels(name: str, data: np.ndarray) -> bool:
    """Integer-valued data that is named like a segmentation, or has few distinct integer values."""
    named = bool(LABEL_NAME_PATTERN.search(name))
    if data.dtype.kind in "iub":
        if named:
            return True
        sample = data[:: max(1, data.shape[0] // 32)]
        return len(np.unique(sample)) <= MAX_LABEL_VALUES // 4 and len(np.unique(data)) <= MAX_LABEL_VALUES
    if named and data.dtype.kind == "f":
        finite = np.isfinite(data).all()
        return bool(finite and np.array_equal(data, np.round(data)) and len(np.unique(data)) <= MAX_LABEL_VALUES)
    return False


def _as_label_array(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise VolumeReadError(path, "label file contains NaN or infinite values")
        rounded = np.round(data)
        fractional = data != rounded
        if fractional.any():
            example = float(data[fractional].flat[0])
            raise VolumeReadError(
                path,
                f"label file holds fractional values ({int(fractional.sum()):,} voxels, e.g. {example:g}); labels "
                "must be whole class numbers. Is it a probability map or a mask resampled with linear "
                "interpolation? Threshold it, or resample it with nearest-neighbour interpolation",
            )
        data = rounded
    if data.min() < 0:
        raise VolumeReadError(path, f"label file contains negative labels (min {data.min()})")
    top = int(data.max())
    if top > MAX_LABEL_VALUE:
        raise VolumeReadError(
            path, f"label file holds the value {top}, beyond the largest label value supported ({MAX_LABEL_VALUE:,})"
        )
    return data.astype(label_dtype(top), copy=False)


def write_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    source: NiftiSource | None = None,
    display_affine: np.ndarray | None = None,
    is_label: bool = False,
) -> Path:
    """Write a display-order array ``(Z, Y, X)`` or ``(C, Z, Y, X)`` as NIfTI, atomically.

    With ``source`` the data go back to the source file's voxel order, affine, qform and sform (the shape must
    be the source's display shape). Without it, ``display_affine`` (4, 4) gives the geometry.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise VolumeWriteError(path, "the file name must end in .nii or .nii.gz")
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise VolumeWriteError(path, f"expected a 3D volume (or a 4D channel stack), got shape {data.shape}")
    if is_label:
        data = _label_dtype(data, path)
    if source is not None:
        if tuple(data.shape[-3:]) != source.display_shape:
            where = f" ({source.path})" if source.path else ""
            raise VolumeWriteError(
                path,
                f"data shape {tuple(data.shape[-3:])} differs from its source volume{where} "
                f"{source.display_shape}; it is not on the source grid",
            )
        image = nib.Nifti1Image(to_file_order(data, source), source.affine, header=source.header.copy())
        header = source.header
        qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
        # the source's qform and sform with their codes, exactly; a form whose code is 0 stays unset
        image.set_qform(header.get_qform() if qform_code else None, code=qform_code)
        image.set_sform(header.get_sform() if sform_code else None, code=sform_code)
        if qform_code == 0 and sform_code == 0:  # the source had no orientation: record the affine we used
            image.set_sform(source.affine, code=1)
    else:
        if display_affine is None:
            raise VolumeWriteError(path, "no geometry: give the source volume or a display affine")
        ras = display_to_ras_affine(display_affine)
        canonical = np.transpose(data, (3, 2, 1, 0) if data.ndim == 4 else (2, 1, 0))
        image = nib.Nifti1Image(canonical, ras)
        image.set_qform(ras, code=1)
        image.set_sform(ras, code=1)
    image.set_data_dtype(data.dtype)
    image.header.set_slope_inter(None, None)
    if data.ndim == 4:
        image.header.set_intent("vector")
    return _atomic_save(image, path)


def _label_dtype(data: np.ndarray, path: Path) -> np.ndarray:
    if data.dtype.kind not in "iub":
        raise VolumeWriteError(path, f"labels must be integers, got {data.dtype}")
    if data.size and data.min() < 0:
        raise VolumeWriteError(path, "labels must be non-negative")
    top = int(data.max()) if data.size else 0
    if top > MAX_LABEL_VALUE:
        raise VolumeWriteError(
            path, f"label value {top} is beyond what a NIfTI label file holds (0–{MAX_LABEL_VALUE:,})"
        )
    return data.astype(label_dtype(top), copy=False)


def _atomic_save(image: nib.Nifti1Image, path: Path) -> Path:
    """Save next to the target and rename, so a crash never leaves a half-written file under ``path``."""
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(image, tmp)
    return path


def save_labels_nifti(
    path: str | os.PathLike,
    labels: np.ndarray,
    table: LabelTable,
    source: NiftiSource | None = None,
    display_affine: np.ndarray | None = None,
) -> tuple[list[Path], list[str]]:
    """Write display-order ``(Z, Y, X)`` labels as NIfTI (see :func:`write_nifti`) with their class names and
    colours in both sidecars (:mod:`.label_table`); returns ``(written paths, notes)``, the NIfTI first. Names are
    checked before anything is written."""
    check_names(table, sidecar_paths(path)[1])
    written = [write_nifti(path, labels, source=source, display_affine=display_affine, is_label=True)]
    sidecars, notes = write_label_sidecars(path, table)
    return written + sidecars, notes
