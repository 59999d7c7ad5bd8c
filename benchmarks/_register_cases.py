"""A known-deformation case for registration benchmarks and tests: a FLAIR moved by a known affine (rotation,
scaling, shift) and a known smooth deformation (several mm), with its labels; the truth maps fixed → moving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def known_transform(fixed: sitk.Image, amplitude_mm: float = 4.0) -> sitk.Transform:
    """``y = A (x + u(x))``: A rotates 6°/−4°/8°, scales 1.05/0.95/1.03 about the centre, shifts (5, −4, 3) mm;
    u is a smooth field of up to ``amplitude_mm`` on the fixed grid."""
    centre = fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()])
    rotation = sitk.Euler3DTransform(centre, np.deg2rad(6), np.deg2rad(-4), np.deg2rad(8), (5.0, -4.0, 3.0))
    affine = sitk.AffineTransform(3)
    affine.SetCenter(centre)
    affine.SetMatrix((np.array(rotation.GetMatrix()).reshape(3, 3) @ np.diag([1.05, 0.95, 1.03])).ravel().tolist())
    affine.SetTranslation(rotation.GetTranslation())
    z, y, x = np.meshgrid(*[np.arange(n) for n in fixed.GetSize()[::-1]], indexing="ij")
    a = amplitude_mm
    u = np.stack(
        [a * np.sin(2 * np.pi * y / 120), a * np.sin(2 * np.pi * z / 100 + 1), 0.75 * a * np.cos(2 * np.pi * x / 110)],
        -1,
    )
    field = sitk.GetImageFromArray(u.astype(np.float64), isVector=True)
    field.CopyInformation(fixed)
    return sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(field)])


def make_case(
    fixed_path: Path, moving_path: Path, labels_path: Path, folder: Path
) -> tuple[Path, Path, sitk.Transform]:
    """Write the moved FLAIR and labels into ``folder``; returns their paths and the true fixed → moving map."""
    fixed = sitk.ReadImage(str(fixed_path), sitk.sitkFloat32)
    truth = known_transform(fixed)
    folder.mkdir(parents=True, exist_ok=True)
    moving = sitk.Resample(sitk.ReadImage(str(moving_path), sitk.sitkFloat32), fixed, truth)
    labels = sitk.Resample(sitk.ReadImage(str(labels_path)), fixed, truth, sitk.sitkNearestNeighbor, 0)
    out_moving, out_labels = folder / "flair_moved_known.nii.gz", folder / "labels_moved_known.nii.gz"
    sitk.WriteImage(moving, str(out_moving))
    sitk.WriteImage(labels, str(out_labels))
    return out_moving, out_labels, truth


def landmark_errors(fixed: sitk.Image, found: sitk.Transform, truth: sitk.Transform, n: int = 20, seed: int = 0):
    """Distances (mm) at ``n`` random brain points ``x`` of the fixed image between where the found map and the
    true one send them: the found map ``x → y`` registers the moved image (``moving(truth(.))``) back, so the
    truth's inverse is what it should recover: ``|truth(found(x)) − x|``."""
    brain = np.argwhere(sitk.GetArrayFromImage(fixed) > 0)
    points = brain[np.random.default_rng(seed).choice(len(brain), n, replace=False)]
    out = []
    for z, y, x in points:
        p = fixed.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        out.append(float(np.linalg.norm(np.subtract(truth.TransformPoint(found.TransformPoint(p)), p))))
    return np.asarray(out)
