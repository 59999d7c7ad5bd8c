"""The plugin's offline sample data (nilearn's MNI152 template, scikit-image's IHC image, synthetic variants)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.io import samples
from napari_domaingen.io.geometry import same_grid
from napari_domaingen.io.histology import HistologyImage
from napari_domaingen.io.nifti import Volume, read_nifti, write_nifti

MNI_DISPLAY_SHAPE = (189, 233, 197)


@pytest.fixture(scope="module")
def t1() -> Volume:
    return samples.mni152_t1()


@pytest.fixture(scope="module")
def labels() -> Volume:
    return samples.mni152_tissue_labels()


@pytest.fixture(scope="module")
def flair() -> Volume:
    return samples.mni152_flair_like()


def test_t1_template(t1):
    assert t1.data.shape == MNI_DISPLAY_SHAPE and t1.data.dtype == np.float32
    assert not t1.is_label and t1.name == "MNI152 T1"
    assert t1.spacing == (1.0, 1.0, 1.0)
    assert t1.source is not None and t1.source.shape == (197, 233, 189)
    # display (z, y, x) = (0, 0, 0) sits at the NIfTI origin, in (S, A, R) order
    assert np.allclose(t1.display_affine[:3, 3], (-72.0, -134.0, -98.0))
    assert 0.0 <= float(t1.data.min()) and float(t1.data.max()) <= 1.0 and t1.data.mean() > 0.05


def test_t1_data_is_independent_of_the_cache(t1):
    first = samples.mni152_t1()
    first.data[:] = -1.0
    assert np.array_equal(samples.mni152_t1().data, t1.data)


def test_t1_matches_the_nifti_reader_conventions(tmp_path, t1):
    path = write_nifti(tmp_path / "t1.nii", t1.data, source=t1.source)
    again = read_nifti(path, as_label=False)
    assert np.array_equal(again.data, t1.data)
    assert np.allclose(again.display_affine, t1.display_affine)


def test_tissue_labels(t1, labels):
    assert labels.is_label and labels.data.dtype == np.uint8
    assert labels.data.shape == MNI_DISPLAY_SHAPE
    assert set(np.unique(labels.data).tolist()) == {0, 1, 2, 3}
    assert samples.TISSUE_LABEL_NAMES == {0: "background", 1: "grey matter", 2: "white matter", 3: "CSF / other"}
    assert same_grid(labels.data.shape, labels.display_affine, t1.data.shape, t1.display_affine)
    counts = np.bincount(labels.data.ravel(), minlength=4)
    brain = counts[1:].sum()
    assert counts[1] > counts[2] > counts[3] > 0.02 * brain  # GM > WM > CSF inside the brain mask
    # the template's T1 contrast: white matter brighter than grey matter, CSF darkest
    means = [float(t1.data[labels.data == value].mean()) for value in (1, 2, 3)]
    assert means[1] > means[0] > means[2]


def test_tissue_labels_write_as_nifti_on_the_template_grid(tmp_path, labels):
    path = write_nifti(tmp_path / "tissue_labels.nii", labels.data, source=labels.source, is_label=True)
    saved = nib.load(str(path))
    template = samples._mni152_image("t1")
    assert saved.shape == template.shape and np.allclose(saved.affine, template.affine)
    assert np.array_equal(read_nifti(path, as_label=True).data, labels.data)


def test_flair_like_is_synthetic_on_the_t1_grid(t1, labels, flair):
    assert "synthetic" in flair.name.lower() and "flair" in flair.name.lower()
    assert flair.data.dtype == np.float32 and not flair.is_label
    assert np.array_equal(flair.display_affine, t1.display_affine)
    assert same_grid(flair.data.shape, flair.display_affine, t1.data.shape, t1.display_affine)
    assert flair.source is not None and flair.source.shape == t1.source.shape
    assert "synthetic" in (samples.mni152_flair_like.__doc__ or "").lower()
    # FLAIR-like ordering: grey matter > white matter > CSF (unlike T1, where white matter is brightest)
    means = [float(flair.data[labels.data == value].mean()) for value in (1, 2, 3)]
    assert means[0] > means[1] > means[2]


def test_flair_like_is_deterministic(flair):
    assert np.array_equal(samples.mni152_flair_like().data, flair.data)
    assert not np.array_equal(samples.mni152_flair_like(seed=1).data, flair.data)


def test_ihc():
    from skimage import data

    image = samples.ihc()
    assert isinstance(image, HistologyImage)
    assert image.data.shape == (512, 512, 3) and image.data.dtype == np.uint8
    assert np.array_equal(image.data, data.immunohistochemistry())
    assert image.name == "IHC (scikit-image)" and image.mpp is None and image.path is None


def test_he_like_restain_differs_in_colour_not_anatomy():
    from skimage import color

    ihc, restain = samples.ihc(), samples.he_like_restain()
    assert "synthetic" in restain.name.lower() and "h&e" in restain.name.lower()
    assert restain.data.shape == ihc.data.shape and restain.data.dtype == np.uint8
    lab_ihc = color.rgb2lab(ihc.data).reshape(-1, 3)
    lab_restain = color.rgb2lab(restain.data).reshape(-1, 3)
    # the mean colour moves far (CIE76 ΔE > 10) and toward pink/red: a* up, b* (yellow-brown of DAB) down
    assert np.linalg.norm(lab_ihc.mean(axis=0) - lab_restain.mean(axis=0)) > 10
    assert lab_restain[:, 1].mean() > lab_ihc[:, 1].mean() + 5
    assert lab_restain[:, 2].mean() < lab_ihc[:, 2].mean() - 5
    # the same anatomy: stain density (1 - lightness) is strongly correlated pixel-wise
    correlation = np.corrcoef(lab_ihc[:, 0], lab_restain[:, 0])[0, 1]
    assert correlation > 0.6
    assert np.array_equal(samples.he_like_restain().data, restain.data)  # deterministic


def test_samples_stay_offline_and_free_of_gui_imports():
    source = inspect.getsource(samples)
    assert "shared" not in source.replace("shared test data", "")
    code = (
        "import sys\n"
        "import napari_domaingen.io.histology, napari_domaingen.io.samples\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
