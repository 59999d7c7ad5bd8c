"""A registration's result as a spatial transform in ITK/ANTs conventions: what maps the fixed grid into the moving
image, how it is applied, written, read back and inverted.

Convention (as ANTs): the transform maps a **fixed** point ``x`` (LPS mm) to the **moving** point it samples,
``y = A · (x + u(x))``: first the displacement ``u`` (LPS mm, a vector image on a grid in the fixed space; none
for rigid/affine results), then the linear part ``A`` ((4, 4), fixed LPS → moving LPS). Files:

* ``affine.mat`` / ``affine_inverse.mat`` — ITK ``AffineTransform_double_3_3`` (SimpleITK, ANTs, ITK-SNAP, 3D Slicer);
* ``warp.nii.gz`` / ``warp_inverse.nii.gz`` — displacement fields, NIfTI vector images in LPS mm.

``antsApplyTransforms -r FIXED -i MOVING -t warp.nii.gz -t affine.mat`` applies it (the last ``-t`` first, to the
image); for points in the moving image, ``-t [affine.mat,1] -t warp_inverse.nii.gz``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.atomic import atomic_path
from ..io.nifti import is_nifti_path

__all__ = [
    "AFFINE_FILE",
    "AFFINE_INVERSE_FILE",
    "WARP_FILE",
    "WARP_INVERSE_FILE",
    "SpatialTransform",
    "TransformFileError",
    "read_transform",
]

AFFINE_FILE, AFFINE_INVERSE_FILE = "affine.mat", "affine_inverse.mat"
WARP_FILE, WARP_INVERSE_FILE = "warp.nii.gz", "warp_inverse.nii.gz"
_LINEAR_SUFFIXES = (".mat", ".tfm", ".txt")
_LINEAR_KINDS = ("AffineTransform", "Euler3DTransform", "Similarity3DTransform", "VersorRigid3DTransform",
                 "ScaleVersor3DTransform", "ScaleSkewVersor3DTransform", "TranslationTransform",
                 "MatrixOffsetTransformBase", "ComposeScaleSkewVersor3DTransform")  # fmt: skip


class TransformFileError(ValueError):
    """A transform file that cannot be used: ``"<file>: <problem>"``."""


def _affine_itk(matrix: np.ndarray) -> sitk.AffineTransform:
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in matrix[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in matrix[:3, 3]])
    return transform


def _matrix_of(transform: sitk.Transform) -> np.ndarray:
    """The (4, 4) matrix of a linear SimpleITK transform (its centre folded into the translation)."""
    linear = np.eye(4)
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        linear[:3, axis] = np.asarray(transform.TransformPoint(unit.tolist())) - origin
    linear[:3, 3] = origin
    return linear


def _as_field(image: sitk.Image) -> sitk.Image:
    return sitk.Cast(image, sitk.sitkVectorFloat64)


def _field_transform(field: sitk.Image) -> sitk.DisplacementFieldTransform:
    """A displacement-field transform of a copy of ``field`` (SimpleITK's constructor empties the image it gets)."""
    return sitk.DisplacementFieldTransform(sitk.Image(field))


@dataclass
class SpatialTransform:
    """``y = matrix · (x + warp(x))``, fixed LPS mm → moving LPS mm.

    ``matrix`` (4, 4) float64; ``warp``: displacement ``u`` (LPS mm) as a 3-component SimpleITK vector image on a
    grid in the fixed space (kept as float64), or ``None`` (a linear transform).
    """

    matrix: np.ndarray
    warp: sitk.Image | None = None
    _inverse_warp: sitk.Image | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        if self.warp is not None:
            self.warp = _as_field(self.warp)  # float64 vectors, once

    @classmethod
    def identity(cls) -> SpatialTransform:
        return cls(np.eye(4))

    @property
    def is_linear(self) -> bool:
        return self.warp is None

    def itk(self) -> sitk.Transform:
        """The transform as one SimpleITK transform (what :func:`sitk.Resample` takes)."""
        affine = _affine_itk(self.matrix)
        if self.warp is None:
            return affine
        # a composite applies its last transform first: the displacement, then the affine
        return sitk.CompositeTransform([affine, _field_transform(self.warp)])

    def inverse_warp(self) -> sitk.Image | None:
        """The displacement ``w`` with ``x = z + w(z)`` where ``z = x + u(x)`` (SimpleITK's fixed-point inversion,
        on the warp's grid); ``None`` for a linear transform."""
        if self.warp is None:
            return None
        if self._inverse_warp is None:
            self._inverse_warp = sitk.InvertDisplacementField(
                self.warp,
                maximumNumberOfIterations=50,
                maxErrorToleranceThreshold=0.01,
                meanErrorToleranceThreshold=0.001,
                enforceBoundaryCondition=True,
            )
        return self._inverse_warp

    def inverse_itk(self) -> sitk.Transform:
        """The inverse (moving LPS → fixed LPS): ``x = z + w(z)``, ``z = A⁻¹ y``."""
        inverse = _affine_itk(np.linalg.inv(self.matrix))
        if self.warp is None:
            return inverse
        return sitk.CompositeTransform([_field_transform(self.inverse_warp()), inverse])

    def resample(self, moving: sitk.Image, reference: sitk.Image, labels: bool = False) -> sitk.Image:
        """``moving`` on ``reference``'s grid through the transform: linear (``labels``: nearest neighbour),
        0 outside the moving image."""
        interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
        return sitk.Resample(moving, reference, self.itk(), interpolator, 0.0, moving.GetPixelID())

    def move_array(
        self, data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], reference_affine: np.ndarray, labels=False
    ) -> np.ndarray:
        """A display-order ``(Z, Y, X)`` array (display affine ``affine``) moved onto the grid ``shape`` /
        ``reference_affine`` → ``(Z, Y, X)``: images linear, float32; labels nearest neighbour, their dtype."""
        from .registration_space import as_array, as_sitk

        data = np.asarray(data)
        moving = as_sitk(data, affine, np.int32 if labels else np.float32)
        reference = as_sitk(np.zeros(tuple(shape), np.uint8), reference_affine, np.uint8)
        moved = as_array(self.resample(moving, reference, labels=labels))
        return moved.astype(data.dtype) if labels else moved

    def folds(self) -> int:
        """Voxels of the warp's grid where the transform folds (Jacobian determinant ≤ 0); for a linear one 0, or
        −1 when it mirrors (its determinant is negative everywhere)."""
        sign = np.sign(np.linalg.det(self.matrix[:3, :3]))
        if self.warp is None:
            return 0 if sign > 0 else -1
        jacobian = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(self.warp))
        return int(np.count_nonzero(jacobian * sign <= 0))

    def displacement_mm(self, reference: sitk.Image) -> np.ndarray:
        """``|y − x|`` (mm) at every voxel of ``reference`` ``(Z, Y, X)`` float32: how far each fixed voxel's
        sample point lies from it."""
        field_image = sitk.TransformToDisplacementField(
            self.itk(),
            sitk.sitkVectorFloat64,
            reference.GetSize(),
            reference.GetOrigin(),
            reference.GetSpacing(),
            reference.GetDirection(),
        )
        return np.linalg.norm(sitk.GetArrayFromImage(field_image), axis=-1).astype(np.float32)

    def write(self, folder: str | Path) -> list[Path]:
        """``affine.mat``, ``affine_inverse.mat`` and (deformable) ``warp.nii.gz``, ``warp_inverse.nii.gz`` in
        ``folder``, each atomically; returns the paths. A linear transform removes the warps an earlier one left
        there (they would be read back with this affine)."""
        folder = Path(folder)
        written = []
        if self.warp is None:
            for name in (WARP_FILE, WARP_INVERSE_FILE):
                (folder / name).unlink(missing_ok=True)
        for name, transform in ((AFFINE_FILE, _affine_itk(self.matrix)),
                                (AFFINE_INVERSE_FILE, _affine_itk(np.linalg.inv(self.matrix)))):  # fmt: skip
            with atomic_path(folder / name, suffix=".mat") as tmp:
                sitk.WriteTransform(transform, str(tmp))
            written.append(folder / name)
        if self.warp is not None:
            for name, image in ((WARP_FILE, self.warp), (WARP_INVERSE_FILE, self.inverse_warp())):
                with atomic_path(folder / name, suffix=".nii.gz") as tmp:
                    sitk.WriteImage(sitk.Cast(image, sitk.sitkVectorFloat32), str(tmp))
                written.append(folder / name)
        return written


def _read_linear(path: Path) -> np.ndarray:
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as err:
        raise TransformFileError(f"{path}: not an ITK transform file ({str(err).strip().splitlines()[-1]})") from None
    kinds = [transform.GetName()]
    if kinds[0] == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        kinds = [composite.GetNthTransform(i).GetName() for i in range(composite.GetNumberOfTransforms())]
    if not all(kind in _LINEAR_KINDS for kind in kinds):
        raise TransformFileError(
            f"{path}: holds a {' + '.join(kinds)}, not a linear (rigid/affine) transform; give a deformable "
            "transform as a displacement-field NIfTI"
        )
    return _matrix_of(transform)


def _read_field(path: Path) -> sitk.Image:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise TransformFileError(f"{path}: not a readable image ({str(err).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 3:
        raise TransformFileError(
            f"{path}: not a displacement field: a 3D image with 3 components per voxel (LPS mm) was expected, "
            f"got a {image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} per voxel"
        )
    return _as_field(image)


def read_transform(*paths: str | Path) -> SpatialTransform:
    """A transform from files: a ``register`` output folder (its ``affine.mat`` and, if there, ``warp.nii.gz``),
    or a linear file (``.mat``/``.tfm``/``.txt``) and/or a displacement field (``.nii``/``.nii.gz``), in ANTs order
    (``warp``, then ``affine``, as ``-t`` takes them). :class:`TransformFileError` naming the file otherwise."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = [path / name for name in (WARP_FILE, AFFINE_FILE) if (path / name).is_file()]
            if not found:
                raise TransformFileError(f"{path}: holds no {AFFINE_FILE} (is it a register output folder?)")
            files += found
        elif not path.is_file():
            raise TransformFileError(f"{path}: no such transform file")
        else:
            files.append(path)
    matrix, warp, linear_seen = np.eye(4), None, False
    for path in files:  # ANTs order: for a point, the first listed transform is applied first
        if is_nifti_path(path):
            if warp is not None or linear_seen:
                raise TransformFileError(
                    f"{path}: a displacement field must come first and only once (warp, then linear transforms)"
                )
            warp = _read_field(path)
        elif path.suffix.lower() in _LINEAR_SUFFIXES:
            matrix, linear_seen = _read_linear(path) @ matrix, True
        else:
            raise TransformFileError(
                f"{path}: not a transform file this tool reads (.mat/.tfm/.txt linear, .nii/.nii.gz displacement field)"
            )
    return SpatialTransform(matrix, warp)
