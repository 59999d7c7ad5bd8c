"""A synthetic oblique affine used by several tests."""

import nibabel as nib
import numpy as np


def oblique_affine(codes: str = "RAS") -> np.ndarray:
    """(4, 4): rotated about two axes, anisotropic (0.8, 1.2, 2.0 mm), closest orientation ``codes``."""
    a, b = np.deg2rad(20), np.deg2rad(-12)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    perm = np.zeros((3, 3))
    for i, (axis, flip) in enumerate(nib.orientations.axcodes2ornt(tuple(codes))):
        perm[int(axis), i] = flip
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ perm @ np.diag([0.8, 1.2, 2.0])
    affine[:3, 3] = [-31.0, 17.5, 4.25]
    return affine
