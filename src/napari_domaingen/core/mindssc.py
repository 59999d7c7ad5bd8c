"""MIND-SSC: the modality-independent neighbourhood descriptor with self-similarity context (Heinrich et al., MICCAI
2013), the weight-free features registration uses across contrasts.

For every voxel, the six neighbours at ``dilation`` voxels along ±z, ±y, ±x form twelve pairs that lie
``dilation·√2`` apart; each pair's patch distance (squared difference averaged over a ``(2·radius+1)³`` box) is
turned into a similarity ``exp(−(d − min d) / v)``, with ``v`` the voxel's mean distance (clamped to 10⁻³…10³ times
its volume mean). Twelve channels per voxel, each in (0, 1]; an intensity change by any monotone-ish contrast
mapping changes them far less than it changes the intensities.

Example::

    >>> import torch
    >>> volume = torch.rand(20, 24, 28)
    >>> mind_ssc(volume).shape
    torch.Size([12, 20, 24, 28])
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CHANNELS", "mind_ssc"]

CHANNELS = 12
_NEIGHBOURS = np.array([(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)])
#: the twelve neighbour pairs √2 apart (edges of the octahedron the six neighbours span)
_PAIRS = [
    (a, b) for a, b in itertools.combinations(range(6), 2) if int(((_NEIGHBOURS[a] - _NEIGHBOURS[b]) ** 2).sum()) == 2
]


def mind_ssc(volume: torch.Tensor | np.ndarray, radius: int = 1, dilation: int = 2) -> torch.Tensor:
    """MIND-SSC of a ``(Z, Y, X)`` volume → ``(12, Z, Y, X)`` float32 (values in (0, 1]) on the volume's device.

    ``radius``: half-width of the patch box (voxels); ``dilation``: the neighbours' distance (voxels). Borders
    are replicated. ``ValueError`` for anything but a 3D volume.
    """
    volume = torch.as_tensor(volume)
    if volume.ndim != 3:
        raise ValueError(f"MIND-SSC needs a (Z, Y, X) volume, got shape {tuple(volume.shape)}")
    if radius < 0 or dilation < 1:
        raise ValueError(f"MIND-SSC needs radius >= 0 and dilation >= 1, got {radius} and {dilation}")
    image = volume.to(torch.float32)[None, None]
    z, y, x = image.shape[2:]
    padded = F.pad(image, (dilation,) * 6, mode="replicate")

    def neighbour(index: int) -> torch.Tensor:
        dz, dy, dx = (_NEIGHBOURS[index] + 1) * dilation
        return padded[:, :, dz : dz + z, dy : dy + y, dx : dx + x]

    distances = torch.cat([(neighbour(a) - neighbour(b)) ** 2 for a, b in _PAIRS], dim=1)
    if radius:
        distances = F.avg_pool3d(F.pad(distances, (radius,) * 6, mode="replicate"), 2 * radius + 1, stride=1)
    distances = distances - distances.amin(dim=1, keepdim=True)
    variance = distances.mean(dim=1, keepdim=True)
    mean = variance.mean().clamp_min(torch.finfo(torch.float32).tiny)
    variance = variance.clamp(mean * 1e-3, mean * 1e3)
    return torch.exp(-distances / variance)[0]
