"""Several volumes of one subject: find them, recognise their contrast, load them, put them on one grid.

Researchers load the contrasts of one subject (T1, T1c, T2, FLAIR and a segmentation) together; radiologists
bring DICOM series. This module is the pure part of the "Load volumes" dock widget:

* :func:`contrast_of` recognises a contrast from a file name or series description (token based,
  case-insensitive: BraTS ``-t1n``/``-t1c``/``-t2w``/``-t2f``, TCGA ``_t1_``/``_t1c_``/``_t2_``/``_fla_``,
  ``t1ce``, ``flair``, ``seg``/``label``/``mask`` …) → ``"T1"``, ``"T1c"``, ``"T2"``, ``"FLAIR"``, ``"labels"``.
* :func:`scan` turns files, folders and zips into :class:`Candidate` rows with their header facts.
* :func:`load_group` (or the progress generator :func:`iter_load_group`) reads them into
  :class:`~.nifti.Volume` objects named ``"<subject> <contrast>"``.
* :func:`grid_report` says which volumes are not on the reference's grid and why;
  :func:`resample_onto` and :func:`resample_isotropic` resample through the affines.
* :func:`contrast_limits_for` computes display windows (CT Hounsfield windows, MRI percentile clips).

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .dicom import DicomSeries, info, list_series, read_series
from .errors import VolumeReadError
from .geometry import display_to_ras_affine, resample_to_grid, same_grid
from .intensity import CT_WINDOWS, label_dtype
from .nifti import NiftiSource, Volume, is_nifti_path, read_nifti, strip_nifti_suffix

Progress = dict[str, Any]

CONTRASTS = ("T1", "T1c", "T2", "FLAIR", "labels")

# token → contrast; a name is split into lower-case alphanumeric tokens
_TOKENS: dict[str, str] = {
    **dict.fromkeys(("t1", "t1n", "t1w", "t1native", "mprage", "spgr"), "T1"),
    **dict.fromkeys(("t1c", "t1ce", "t1gd", "t1post", "t1wce", "t1cgd", "t1contrast"), "T1c"),
    **dict.fromkeys(("t2", "t2w"), "T2"),
    **dict.fromkeys(("flair", "fla", "t2f", "t2flair"), "FLAIR"),
    **dict.fromkeys(("seg", "segmentation", "label", "labels", "mask", "aseg", "parc"), "labels"),
}
# a T1 name with one of these tokens is post-contrast (BIDS "ce-gd_T1w", DICOM "T1 AX POST GD")
_CONTRAST_AGENT = {"ce", "gd", "gad", "gado", "gadolinium", "post", "contrast", "c"}
# when a name carries several contrast tokens, the first of this list wins ("t2_flair" is FLAIR, "t1_seg" labels)
_PRIORITY = ("labels", "FLAIR", "T1c", "T2", "T1")
_SEPARATORS = re.compile(r"([^A-Za-z0-9]+)")

_RANK = {contrast: rank for rank, contrast in enumerate(CONTRASTS)}  # folder listing order: T1 first

LAYER_STYLE: dict[str, dict[str, Any]] = {
    "T1": {"name": "T1", "colormap": "gray", "layer_type": "image"},
    "T1c": {"name": "T1c", "colormap": "gray", "layer_type": "image"},
    "T2": {"name": "T2", "colormap": "gray", "layer_type": "image"},
    "FLAIR": {"name": "FLAIR", "colormap": "gray", "layer_type": "image"},
    "labels": {"name": "labels", "colormap": None, "layer_type": "labels"},
}


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def contrast_of(name: str | os.PathLike) -> str | None:
    """The contrast a file name or series description names, or ``None``.

    Folders and NIfTI suffixes are ignored; matching is on whole tokens (``"t1"`` in ``"_t1_bet"``, not in
    ``"t10"``). Returns one of :data:`CONTRASTS`.
    """
    text = strip_nifti_suffix(name) if is_nifti_path(name) else Path(str(name)).name
    tokens = _tokens(text)
    found = {_TOKENS[t] for t in tokens if t in _TOKENS}
    if "T1" in found and _CONTRAST_AGENT & set(tokens):
        found.add("T1c")
    for contrast in _PRIORITY:
        if contrast in found:
            return contrast
    return None


# -------------------------------------------------------------------------------------------------- scanning


@dataclass
class Candidate:
    """One loadable volume: a NIfTI file or a DICOM series, with header facts (nothing loaded yet).

    ``dims``/``spacing``/``orientation`` are in the file's voxel order ``(i, j, k)`` (DICOM: column, row,
    slice) as :func:`~.dicom.info` reports them; ``value_range`` is known for NIfTI only (DICOM: ``None``).
    ``stem`` is the file name without suffix (NIfTI) or the series description (DICOM).
    """

    path: Path
    kind: str  # "nifti" | "dicom"
    stem: str
    contrast: str | None = None
    uid: str | None = None
    dims: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    orientation: str = ""
    modality: str = ""
    dtype: str = ""
    value_range: tuple[float, float] | None = None
    series: DicomSeries | None = field(default=None, repr=False)
    facts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_label(self) -> bool:
        return self.contrast == "labels"

    @property
    def source_text(self) -> str:
        """The file, or ``<folder> [series description]`` for DICOM."""
        if self.kind == "dicom":
            return f"{self.path} [{self.stem}]"
        return str(self.path)


def scan(paths: Iterable[str | os.PathLike], errors: list[str] | None = None) -> list[Candidate]:
    """Candidates from NIfTI files, folders (the NIfTI files directly inside, DICOM series at any depth) and
    DICOM zips or single DICOM files (their whole series).

    A path that holds nothing loadable raises :class:`VolumeReadError`, or, when ``errors`` is a list, adds
    its message there and goes on. Duplicates (same file or series) are listed once.
    """
    out: list[Candidate] = []
    seen: set[tuple[str, str | None]] = set()
    for raw in paths:
        path = Path(raw)
        try:
            found = _scan_one(path)
        except VolumeReadError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        for candidate in found:
            key = (str(candidate.path.resolve()), candidate.uid)
            if key not in seen:
                seen.add(key)
                out.append(candidate)
    return out


def _scan_one(path: Path) -> list[Candidate]:
    if not path.exists():
        raise VolumeReadError(path, "no such file or folder")
    if path.is_file() and is_nifti_path(path):
        return [_nifti_candidate(path)]
    if path.is_dir():
        niftis = [_nifti_candidate(p) for p in sorted(path.iterdir()) if p.is_file() and is_nifti_path(p)]
        niftis.sort(key=lambda c: (_RANK.get(c.contrast, len(_RANK)), c.stem.lower()))
        try:
            series = _dicom_candidates(path)
        except VolumeReadError as exc:
            if niftis and "no DICOM" in exc.problem:
                series = []
            elif niftis:
                raise
            else:
                raise VolumeReadError(path, f"no NIfTI files and {exc.problem}") from exc
        return niftis + series
    if zipfile.is_zipfile(path):
        return _dicom_candidates(path)
    # one DICOM file: its series, from the files next to it
    series = [s for s in list_series(path.parent, recursive=False) if path in s.files]
    if not series:
        raise VolumeReadError(path, "not a NIfTI file, a DICOM file, or a folder or zip of DICOM files")
    return [_series_candidate(s, path.parent) for s in series]


def _nifti_candidate(path: Path) -> Candidate:
    facts = info(path)[0]
    stem = strip_nifti_suffix(path)
    return Candidate(
        path=path,
        kind="nifti",
        stem=stem,
        contrast=contrast_of(path),
        dims=tuple(facts["dims"]),
        spacing=tuple(facts["spacing"]),
        orientation=str(facts["orientation"]),
        dtype=str(facts["dtype"]),
        value_range=tuple(facts["range"]),  # type: ignore[arg-type]
        facts=facts,
    )


def _dicom_candidates(root: Path) -> list[Candidate]:
    return [_series_candidate(s, root) for s in list_series(root)]


def _series_candidate(series: DicomSeries, root: Path) -> Candidate:
    return Candidate(
        path=root,
        kind="dicom",
        stem=series.name,
        contrast=contrast_of(series.name),
        uid=series.uid,
        dims=(series.columns, series.rows, series.n_slices),
        spacing=tuple(round(s, 6) for s in reversed(series.spacing)),
        orientation=series.orientation,
        modality=series.modality,
        dtype=series.dtype,
        series=series,
        facts={"uid": series.uid, "n_files": len(series.files), "transfer_syntax": series.transfer_syntax,
               "rescale": series.rescale},
    )


# --------------------------------------------------------------------------------------------------- loading


def subject_of(stems: Sequence[str]) -> str:
    """The common leading tokens of the names (case-insensitive, cut at a separator), trimmed.

    One name: everything before its contrast token (``"BraTS-GLI-00001-000-t1c"`` → ``"BraTS-GLI-00001-000"``).
    """
    if not stems:
        return ""
    split = [_SEPARATORS.split(s) for s in stems]  # tokens interleaved with separators
    if len(split) == 1:
        parts = split[0]
        for index, part in enumerate(parts):
            if part.lower() in _TOKENS:
                return "".join(parts[:index]).strip("-_. ")
        return ""
    common: list[str] = []
    for items in zip(*split):
        if all(i.lower() == items[0].lower() for i in items):
            common.append(items[0])
        else:
            break
    return "".join(common).strip("-_. ")


def layer_names(candidates: Sequence[Candidate]) -> list[str]:
    """``"<subject> <contrast>"`` per candidate; unrecognised ones keep their own name.

    A contrast that occurs more than once keeps the rest of each file name (``"<subject> inpainting-mask"``).
    """
    subject = subject_of([c.stem for c in candidates])
    counts: dict[str | None, int] = {}
    for c in candidates:
        counts[c.contrast] = counts.get(c.contrast, 0) + 1
    names = []
    for c in candidates:
        if c.contrast is None:
            names.append(c.stem)
            continue
        label = LAYER_STYLE[c.contrast]["name"]
        if counts[c.contrast] > 1:
            rest = c.stem[len(subject):].strip("-_. ") if c.stem.lower().startswith(subject.lower()) else c.stem
            label = rest or label
        names.append(f"{subject} {label}".strip())
    return _unique(names)


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        candidate, n = name, 2
        while candidate in out:
            candidate, n = f"{name} ({n})", n + 1
        out.append(candidate)
    return out


def load_candidate(candidate: Candidate, name: str | None = None) -> Volume:
    """Read one candidate; ``contrast == "labels"`` forces a label volume, a recognised image contrast an image."""
    if candidate.kind == "dicom":
        volume = read_series(candidate.series if candidate.series is not None else candidate.path, uid=candidate.uid)
        if candidate.is_label:
            volume = Volume(volume.data.astype(label_dtype(int(volume.data.max()) if volume.data.size else 0)), volume.display_affine, volume.name,
                            True, volume.source)
    else:
        as_label = True if candidate.is_label else (False if candidate.contrast is not None else None)
        volume = read_nifti(candidate.path, as_label=as_label)
    if name is not None:
        volume.name = name
    return volume


def iter_load_group(
    candidates: Sequence[Candidate],
    isotropic: float | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, list[Volume]]:
    """Load candidates one by one (progress dicts between them); ``isotropic`` (mm) resamples each volume.

    Raises :class:`~napari_domaingen.core.progress.Cancelled` when ``cancel()`` turns true.
    """
    names = layer_names(candidates)
    volumes: list[Volume] = []
    n = max(1, len(candidates))
    for index, (candidate, name) in enumerate(zip(candidates, names)):
        if cancel is not None and cancel():
            from ..core.progress import Cancelled  # noqa: PLC0415

            raise Cancelled("loading cancelled")
        yield {"stage": "load", "fraction": index / n, "message": f"reading {name} ({index + 1}/{n})"}
        volume = load_candidate(candidate, name)
        if isotropic is not None:
            yield {"stage": "resample", "fraction": (index + 0.5) / n,
                   "message": f"resampling {name} to {isotropic:g} mm"}
            volume = resample_isotropic(volume, isotropic)
        volumes.append(volume)
    yield {"stage": "done", "fraction": 1.0, "message": f"{len(volumes)} volume(s) read"}
    return volumes


def load_group(candidates: Sequence[Candidate], isotropic: float | None = None) -> list[Volume]:
    """Read candidates as volumes named ``"<subject> <contrast>"`` (see :func:`layer_names`)."""
    job = iter_load_group(candidates, isotropic)
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


# ------------------------------------------------------------------------------------------------------ grids


def reference_index(volumes: Sequence[Volume]) -> int:
    """The reference of a group: the first image (non-label) volume, else the first volume."""
    for index, volume in enumerate(volumes):
        if not volume.is_label:
            return index
    return 0


def off_grid(volumes: Sequence[Volume], reference: int | None = None) -> list[int]:
    """Indices of the volumes that are not on the reference's grid (shape and affine)."""
    ref = volumes[reference_index(volumes) if reference is None else reference]
    return [
        i for i, v in enumerate(volumes)
        if not same_grid(v.spatial_shape, v.display_affine, ref.spatial_shape, ref.display_affine)
    ]


def grid_report(volumes: Sequence[Volume], reference: int | None = None) -> list[str]:
    """One line per volume that is not on the reference's grid, saying why (empty list: one grid)."""
    if not volumes:
        return []
    ref_index = reference_index(volumes) if reference is None else reference
    ref = volumes[ref_index]
    return [_difference(volumes[i], ref) for i in off_grid(volumes, ref_index)]


def _difference(volume: Volume, ref: Volume) -> str:
    reasons = []
    if volume.spatial_shape != ref.spatial_shape:
        reasons.append(f"shape {_shape(volume.spatial_shape)} vs {_shape(ref.spatial_shape)}")
    a, b = np.asarray(volume.display_affine, float), np.asarray(ref.display_affine, float)
    spacing_a, spacing_b = np.linalg.norm(a[:3, :3], axis=0), np.linalg.norm(b[:3, :3], axis=0)
    if not np.allclose(spacing_a, spacing_b, atol=1e-4):
        reasons.append(f"spacing {_mm(spacing_a)} vs {_mm(spacing_b)} mm")
    direction_a, direction_b = a[:3, :3] / spacing_a, b[:3, :3] / spacing_b
    cos = np.clip((np.trace(direction_a.T @ direction_b) - 1) / 2, -1.0, 1.0)
    angle = math.degrees(math.acos(cos))
    if angle > 0.01:
        reasons.append(f"rotated by {angle:.1f}°")
    shift = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    if shift > 1e-4:
        reasons.append(f"origin shifted by {shift:.1f} mm")
    if not reasons:
        reasons.append(f"affines differ (max {np.abs(a - b).max():.3g})")
    return f"{volume.name}: {', '.join(reasons)} (reference {ref.name})"


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def _mm(values: Sequence[float]) -> str:
    return "×".join(f"{float(v):.3g}" for v in values)


# ------------------------------------------------------------------------------------------------- resampling


def _resample(data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target: np.ndarray, label: bool):
    order = 0 if label else 1
    if data.ndim == 4:
        return np.stack([resample_to_grid(c, affine, shape, target, order) for c in data])
    out = resample_to_grid(data, affine, shape, target, order)
    return out.astype(data.dtype, copy=False) if label else out


def resample_onto(volume: Volume, reference: Volume) -> Volume:
    """``volume`` resampled through both affines onto ``reference``'s grid (linear for images → float32,
    nearest for labels, label dtype kept; outside the volume → 0).

    The result's ``source`` is the reference's, so writing it puts it on the reference's file grid;
    its ``name`` is unchanged.
    """
    data = _resample(volume.data, volume.display_affine, reference.spatial_shape, reference.display_affine,
                     volume.is_label)
    return Volume(
        data=data,
        display_affine=np.array(reference.display_affine, dtype=float),
        name=volume.name,
        is_label=volume.is_label,
        source=reference.source,
    )


@dataclass(frozen=True)
class ResampledSource(NiftiSource):
    """The grid of a volume resampled in memory: ``resampled_from`` is the original file (or name) and
    ``original_spacing`` its display-order spacing (mm)."""

    resampled_from: str | None = None
    original_spacing: tuple[float, float, float] | None = None


def isotropic_grid(display_affine: np.ndarray, shape: Sequence[int], spacing: float) -> tuple[np.ndarray, tuple]:
    """(display affine, shape) of a grid with ``spacing`` mm voxels covering the same field of view:
    same direction cosines and origin (the centre of voxel 0), ``ceil(extent / spacing)`` voxels per axis."""
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    affine = np.asarray(display_affine, float)
    old = np.linalg.norm(affine[:3, :3], axis=0)
    extent = np.asarray(shape[-3:], float) * old
    new_shape = tuple(max(1, int(math.ceil(e / spacing - 1e-6))) for e in extent)
    new = np.eye(4)
    new[:3, :3] = affine[:3, :3] / old * spacing
    new[:3, 3] = affine[:3, 3]
    return new, new_shape


def resample_isotropic(volume: Volume, spacing: float = 1.0) -> Volume:
    """``volume`` on an isotropic grid (see :func:`isotropic_grid`), linear for images, nearest for labels.

    The result's ``source`` is a :class:`ResampledSource` describing the new grid (RAS-ordered, header dims and
    zooms updated, ``resampled_from`` = the original file), so
    ``write_nifti(path, result.data, source=result.source)`` writes a NIfTI file on the new grid.
    Already isotropic at ``spacing`` → the volume itself.
    """
    if np.allclose(volume.spacing, spacing, atol=1e-4):
        return volume
    affine, shape = isotropic_grid(volume.display_affine, volume.spatial_shape, spacing)
    data = _resample(volume.data, volume.display_affine, shape, affine, volume.is_label)
    old = volume.source
    ras = display_to_ras_affine(affine)
    file_shape = tuple(reversed(shape))
    header = nib.Nifti1Header.from_header(old.header) if old is not None else nib.Nifti1Header()
    if data.ndim == 4:
        header.set_data_shape((*file_shape, data.shape[0]))
        header.set_zooms((spacing, spacing, spacing, 1.0))
    else:
        header.set_data_shape(file_shape)
        header.set_zooms((spacing, spacing, spacing))
    header.set_data_dtype(data.dtype)
    qcode = int(header["qform_code"]) if old is not None else 0
    scode = int(header["sform_code"]) if old is not None else 0
    if qcode == 0 and scode == 0:
        scode = 1
    header.set_qform(ras if qcode else None, code=qcode)
    header.set_sform(ras if scode else None, code=scode)
    origin = old.path if old is not None and old.path else volume.name
    header["descrip"] = f"resampled to {spacing:g} mm by napari-domaingen".encode()[:79]
    source = ResampledSource(
        affine=ras,
        shape=file_shape,  # type: ignore[arg-type]
        header=header,
        path=None,
        resampled_from=str(origin),
        original_spacing=volume.spacing,
    )
    if source.display_shape != tuple(data.shape[-3:]) or not np.allclose(source.display_affine, affine, atol=1e-6):
        raise AssertionError("internal error: the resampled grid is not RAS-ordered")  # pragma: no cover
    return Volume(data=data, display_affine=affine, name=volume.name, is_label=volume.is_label, source=source)


# ------------------------------------------------------------------------------------------ intensity presets

_CT_PRESETS = {"CT brain": "brain", "CT subdural": "subdural", "CT bone": "bone", "CT soft tissue": "soft tissue"}
_PERCENTILE_PRESETS = {"MRI 1–99 %": (1.0, 99.0), "MRI 0.5–99.5 %": (0.5, 99.5)}
PRESETS: tuple[str, ...] = ("full range", *_PERCENTILE_PRESETS, *_CT_PRESETS)
_MAX_SAMPLES = 2_000_000


def _ct_window(preset: str) -> tuple[float, float]:
    low, high = CT_WINDOWS[_CT_PRESETS[preset]]
    return float(low), float(high)


def _finite_values(data: np.ndarray, sample: bool = True) -> np.ndarray:
    """The finite values of ``data``, flat: a regular sample of at most 2M of them when ``sample``."""
    flat = np.asarray(data).reshape(-1)
    if sample and flat.size > _MAX_SAMPLES:
        flat = flat[:: int(math.ceil(flat.size / _MAX_SAMPLES))]
    return flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat


def contrast_limits_for(data: np.ndarray, preset: str) -> tuple[float, float]:
    """Display contrast limits ``(low, high)`` for a preset of :data:`PRESETS`; the data are not changed.

    CT presets are fixed Hounsfield windows; MRI presets are percentiles of the non-zero voxels (a regular
    sample of at most 2M voxels); ``"full range"`` is the finite min and max.
    """
    if preset in _CT_PRESETS:
        return _ct_window(preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown intensity preset {preset!r}; choose one of {', '.join(PRESETS)}")
    flat = _finite_values(data, sample=preset in _PERCENTILE_PRESETS)
    if preset in _PERCENTILE_PRESETS:
        nonzero = flat[flat != 0]
        values = nonzero if nonzero.size else flat
        if values.size == 0:
            return 0.0, 1.0
        low, high = (float(v) for v in np.percentile(values, _PERCENTILE_PRESETS[preset]))
    else:
        if flat.size == 0:
            return 0.0, 1.0
        low, high = float(flat.min()), float(flat.max())
    if high <= low:
        high = low + 1.0
    return low, high


#: real CT has air near −1000 HU; a volume whose darkest voxels are brighter than this holds no air in HU
_HU_AIR_CEILING = -500.0


def preset_problem(data: np.ndarray, preset: str, name: str = "the volume") -> str | None:
    """Why ``preset`` does not fit ``data`` (``None`` when it does): a CT preset is a Hounsfield-unit window, and
    data without any air-dark voxel (e.g. uint8 0…255) are not in HU, so the window would show nothing useful."""
    if preset not in _CT_PRESETS:
        return None
    flat = _finite_values(data)
    if flat.size == 0:
        return None
    low, high = float(flat.min()), float(flat.max())
    if low <= _HU_AIR_CEILING:
        return None
    window_low, window_high = _ct_window(preset)
    return (f"'{name}' holds {low:g} … {high:g} ({np.asarray(data).dtype}), not Hounsfield units (CT air is near "
            f"−1000 HU): the {preset} window ({window_low:g}–{window_high:g} HU) may show nothing useful; use an MRI "
            "preset or 'full range' for these data")


def iter_resample_group(
    volumes: list[Volume], reference: int, cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, list[tuple[int, Volume]]]:
    """Resample every volume that is off the reference's grid onto it; returns ``(index, resampled)`` pairs.

    A job (progress dicts, ``cancel()`` checked between volumes).
    """
    from ..core.progress import Cancelled  # the job convention's exception (pure Python, no torch)

    cancel = cancel or (lambda: False)
    ref = volumes[reference]
    todo = off_grid(volumes, reference)
    out = []
    for n, index in enumerate(todo):
        if cancel():
            raise Cancelled("resampling cancelled")
        yield {"stage": "resample", "fraction": n / len(todo), "message": f"resampling {volumes[index].name} onto {ref.name}"}
        out.append((index, resample_onto(volumes[index], ref)))
    yield {"stage": "done", "fraction": 1.0, "message": "resampled"}
    return out
