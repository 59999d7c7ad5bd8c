"""The plugin's own sample data, all offline: from installed packages or computed from them.

MRI (nilearn ships the files; volumes in display order ``(Z, Y, X)`` = 189 × 233 × 197, 1 mm isotropic, on the
MNI152 2009 grid, see :mod:`napari_domaingen.io.geometry`):

* :func:`mni152_t1` — the MNI ICBM152 2009 nonlinear symmetric T1 template (real data, float32 in [0, 1]).
* :func:`mni152_tissue_labels` — uint8 labels 0 background, 1 grey matter, 2 white matter, 3 CSF / other
  intracranial, derived from the template's probability maps and brain mask.
* :func:`mni152_flair_like` — a **synthetic** FLAIR-like contrast of the same anatomy on the same grid.

Histology (``(Y, X, 3)`` uint8 RGB, pixel size unknown):

* :func:`ihc` — scikit-image's immunohistochemistry image (real data, 512 × 512).
* :func:`he_like_restain` — a **synthetic** H&E-like restain of the same image.

Nothing here reads the project's shared test data, imports napari or Qt, or uses the network.
"""

from __future__ import annotations

from functools import cache, lru_cache

import nibabel as nib
import numpy as np

from .histology import HistologyImage
from .nifti import Volume, source_of_image, volume_from_image

TISSUE_LABEL_NAMES = {0: "background", 1: "grey matter", 2: "white matter", 3: "CSF / other"}

MNI152_SHAPE = (189, 233, 197)  # display order (Z, Y, X); the NIfTI files are 197 × 233 × 189 (i, j, k)

# FLAIR-like tissue intensities (arbitrary units): CSF suppressed, white matter darker than grey matter.
_FLAIR_GM, _FLAIR_WM, _FLAIR_CSF = 0.80, 0.55, 0.06
_FLAIR_BIAS_STRENGTH = 0.12  # standard deviation of the log bias field's polynomial coefficients
_FLAIR_NOISE_SIGMA = 0.02  # Rician noise, in the same units as the tissue intensities

# H&E-like restain: stain optical-density vectors (R, G, B). Haematoxylin as in scikit-image's HED matrix;
# eosin tilted towards blue absorption so it renders pink-red rather than magenta.
_HAEMATOXYLIN_OD = (0.65, 0.70, 0.29)
_EOSIN_OD = (0.16, 0.82, 0.56)


# --------------------------------------------------------------------------------------------------------------
# MRI


@cache
def _mni152_image(kind: str) -> nib.Nifti1Image:
    """nilearn's 1 mm MNI152 2009 images, loaded once per process (``t1``, ``gm``, ``wm`` or ``mask``)."""
    from nilearn import datasets  # imported lazily: importing nilearn takes seconds

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "mask": datasets.load_mni152_brain_mask,
    }
    return loaders[kind](resolution=1)


@lru_cache(maxsize=1)
def _tissue_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GM and WM probabilities (float32, [0, 1]) and the brain mask (bool), display order, read-only."""
    maps = []
    for kind in ("gm", "wm", "mask"):
        volume = volume_from_image(_mni152_image(kind), kind, as_label=False)
        data = volume.data > 0 if kind == "mask" else np.clip(volume.data.astype(np.float32), 0.0, 1.0)
        data.setflags(write=False)
        maps.append(data)
    return maps[0], maps[1], maps[2]


def mni152_t1() -> Volume:
    """The MNI ICBM152 2009 T1 template at 1 mm, shipped inside nilearn (real data, no download).

    ``data``: (189, 233, 197) float32 in [0, 1] (nilearn's scaling), display order ``(Z, Y, X)``, skull-stripped.
    ``display_affine`` maps ``(z, y, x)`` to MNI ``(S, A, R)`` mm; spacing 1 mm.
    """
    return volume_from_image(_mni152_image("t1"), "MNI152 T1", as_label=False)


def _on_t1_grid(data: np.ndarray, name: str, is_label: bool) -> Volume:
    source = source_of_image(_mni152_image("t1"))
    return Volume(data=data, display_affine=source.display_affine, name=name, is_label=is_label, source=source)


def mni152_tissue_labels() -> Volume:
    """Tissue labels on the T1 template's grid: (189, 233, 197) uint8, ``is_label=True``.

    Inside nilearn's MNI152 brain mask each voxel gets the most probable of grey matter (1), white matter (2) and
    CSF / other intracranial (3), with ``P(CSF) = 1 - P(GM) - P(WM)`` from the template's GM/WM probability maps;
    0 outside the mask. Names in :data:`TISSUE_LABEL_NAMES`.
    """
    gm, wm, mask = _tissue_maps()
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    labels = (np.argmax(np.stack([gm, wm, csf]), axis=0) + 1).astype(np.uint8)
    labels[~mask] = 0
    return _on_t1_grid(labels, "MNI152 tissue labels", is_label=True)


def mni152_flair_like(seed: int = 0) -> Volume:
    """A SYNTHETIC FLAIR-like contrast of the MNI152 anatomy, on exactly the T1 template's grid.

    Not a real FLAIR scan: intensities are mixed from the template's tissue probabilities with FLAIR's ordering
    (grey matter 0.80 > white matter 0.55 > suppressed CSF 0.06, arbitrary units; 0 outside a slightly smoothed
    brain mask), multiplied by a smooth bias field (exponential of a random quadratic polynomial, roughly
    ±20 %) and given Rician noise (σ = 0.02, so the background has the usual noise floor). Deterministic for a
    given ``seed``. ``data``: (189, 233, 197) float32, display order ``(Z, Y, X)``, 1 mm, same
    ``display_affine`` as :func:`mni152_t1`.
    """
    from scipy import ndimage

    gm, wm, mask = _tissue_maps()
    head = np.clip(ndimage.gaussian_filter(mask.astype(np.float32), sigma=1.0), 0.0, 1.0)
    csf = np.clip(head - gm - wm, 0.0, 1.0)
    signal = np.float32(_FLAIR_GM) * gm + np.float32(_FLAIR_WM) * wm + np.float32(_FLAIR_CSF) * csf

    rng = np.random.default_rng(seed)
    signal *= _bias_field(signal.shape, rng)
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(_FLAIR_NOISE_SIGMA)
    imaginary = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(_FLAIR_NOISE_SIGMA)
    flair = np.sqrt(real * real + imaginary * imaginary).astype(np.float32)
    return _on_t1_grid(flair, "MNI152 FLAIR-like (synthetic)", is_label=False)


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field ``exp(p(z, y, x))``, ``p`` a random quadratic in coordinates scaled to [-1, 1]."""
    z, y, x = (
        np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
        for i, n in enumerate(shape)
    )
    terms = [z, y, x, z * z, y * y, x * x, z * y, z * x, y * x]
    coefficients = rng.normal(0.0, _FLAIR_BIAS_STRENGTH, size=len(terms)).astype(np.float32)
    log_field = sum(c * t for c, t in zip(coefficients, terms))
    log_field = np.broadcast_to(log_field, shape)
    return np.exp(log_field - log_field.mean(), dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------
# Histology


def ihc() -> HistologyImage:
    """scikit-image's immunohistochemistry image (real data shipped in the wheel).

    Colonic glands, DAB (brown) immunostain with haematoxylin (blue) counterstain: (512, 512, 3) uint8 RGB,
    pixel size unknown (``mpp=None``, scale in pixels).
    """
    from skimage import data

    return HistologyImage(levels=[np.ascontiguousarray(data.immunohistochemistry())], name="IHC (scikit-image)")


def he_like_restain() -> HistologyImage:
    """A SYNTHETIC H&E-like restain of :func:`ihc`: same tissue, same (512, 512, 3) uint8 shape, another stain look.

    Colour deconvolution (scikit-image's ``rgb2hed``) separates haematoxylin and DAB. The image is re-rendered
    with a custom haematoxylin/eosin stain matrix: haematoxylin (×1.6, H&E nuclei are darker than an IHC
    counterstain) stays blue-purple, and eosin (pink) is the DAB signal (×0.45) plus a light baseline over all
    tissue (a smoothed map of total stain, since eosin stains cytoplasm and stroma broadly). Not a real H&E slide.
    """
    from scipy import ndimage
    from skimage import color

    rgb = ihc().data
    hed = color.rgb2hed(rgb)
    haematoxylin, dab = hed[..., 0], hed[..., 2]
    tissue = ndimage.gaussian_filter(haematoxylin + dab, sigma=4.0)
    tissue = np.clip(tissue / max(float(np.percentile(tissue, 99)), 1e-6), 0.0, 1.0)
    eosin = 0.45 * dab + 0.1 * tissue
    stains = np.stack([1.6 * haematoxylin, eosin, np.zeros_like(haematoxylin)], axis=-1)
    restained = color.combine_stains(stains, _stain_matrix(_HAEMATOXYLIN_OD, _EOSIN_OD))
    image = np.rint(np.clip(restained, 0.0, 1.0) * 255.0).astype(np.uint8)
    return HistologyImage(levels=[image], name="H&E-like restain (synthetic)")


def _stain_matrix(first: tuple[float, ...], second: tuple[float, ...]) -> np.ndarray:
    """``rgb_from_stains`` (3, 3) for ``skimage.color.combine_stains``: two unit OD vectors and their cross product."""
    a = np.asarray(first, dtype=float) / np.linalg.norm(first)
    b = np.asarray(second, dtype=float) / np.linalg.norm(second)
    c = np.cross(a, b)
    return np.stack([a, b, c / np.linalg.norm(c)])
