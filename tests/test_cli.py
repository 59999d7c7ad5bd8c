import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from skimage.io import imread

from napari_domaingen.cli import main


def test_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "napari_domaingen", "demo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--out" in result.stdout and "--gui" in result.stdout


def test_demo_writes_samples(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    t1 = nib.load(str(tmp_path / "mni152_t1.nii.gz"))
    labels = nib.load(str(tmp_path / "mni152_tissue_labels.nii.gz"))
    flair = nib.load(str(tmp_path / "mni152_flair_like_synthetic.nii.gz"))
    assert t1.shape == labels.shape == flair.shape == (197, 233, 189)
    assert np.array_equal(t1.affine, labels.affine) and np.array_equal(t1.affine, flair.affine)
    assert set(np.unique(np.asanyarray(labels.dataobj))) == {0, 1, 2, 3}
    for name in ("mni152_t1_preview.png", "ihc.png", "he_like_restain_synthetic.png"):
        image = imread(str(tmp_path / name))
        assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0
    assert "wrote" in capsys.readouterr().out
