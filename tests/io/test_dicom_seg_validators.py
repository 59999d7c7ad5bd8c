"""Every kind of DICOM-SEG we write is valid for third-party tools: Debian's ``dciodvfy`` (dicom3tools) reports no
error, and dcmqi's ``segimage2itkimage`` reads each segment back onto the very voxels of our labels in world
coordinates. Values DICOM does not allow (a newline, a backslash or 65 characters in a segment label, a UID with a
leading zero) are refused before anything is written.

The series are real TCGA crops (``../shared``) written as DICOM; the tests skip cleanly without ``dciodvfy`` or
dcmqi or the shared data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_domaingen.io.dicom_seg import write_dicom_seg
from napari_domaingen.io.dicom_vr import lo_problem, normalised_date, safe_lo, uid_problem
from napari_domaingen.io.errors import VolumeWriteError
from napari_domaingen.io.label_table import LabelTable
from napari_domaingen.io.nifti import volume_from_image

from .._oblique import oblique_affine
from ..conftest import tiny_erm_model
from .test_dicom import write_series
from .test_dicom_seg import NAMES, _tcga_crop

DCIODVFY = shutil.which("dciodvfy")
_SEGIMAGE = Path(sys.executable).with_name("segimage2itkimage")
SEGIMAGE2ITKIMAGE = str(_SEGIMAGE) if _SEGIMAGE.exists() else shutil.which("segimage2itkimage")


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines ``dciodvfy`` prints for ``path`` (warnings are allowed)."""
    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, timeout=300)
    text = (run.stdout + run.stderr).decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.startswith("Error")]


def dcmqi_segments(path: Path, folder: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each segment of a SEG as dcmqi reads it: label value (from the TrackingIdentifier) → ``(ijk, affine)``, the
    voxel indices of the segment in dcmqi's NIfTI file and that file's RAS affine."""
    if SEGIMAGE2ITKIMAGE is None:
        pytest.skip("dcmqi's segimage2itkimage is not installed (pip install dcmqi)")
    folder.mkdir()
    command = [SEGIMAGE2ITKIMAGE, "--inputDICOM", str(path), "--outputDirectory", str(folder), "-t", "nifti"]
    run = subprocess.run([*command, "-p", "seg"], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    meta = json.loads((folder / "seg-meta.json").read_text(encoding="utf-8"))
    out = {}
    for group, attributes in enumerate(meta["segmentAttributes"], start=1):
        image = nib.load(folder / f"seg-{group}.nii.gz")
        data = np.asarray(image.dataobj)
        for segment in attributes:
            value = int(re.fullmatch(r"label value (\d+)", segment["TrackingIdentifier"]).group(1))
            out[value] = (np.argwhere(data == segment["labelID"]), image.affine)
    return out


def assert_same_voxels_in_world(segments, labels: np.ndarray, affine: np.ndarray, values) -> None:
    """dcmqi's segments land on exactly the voxels of ``labels`` (file order, RAS ``affine``) holding each value."""
    assert sorted(segments) == sorted(values)
    to_labels = np.linalg.inv(affine)
    for value, (ijk, seg_affine) in segments.items():
        assert len(ijk) == int((labels == value).sum()), f"label value {value}: voxel counts differ"
        if not len(ijk):
            continue
        world = np.c_[ijk, np.ones(len(ijk))] @ seg_affine.T
        index = world @ to_labels.T
        np.testing.assert_allclose(index[:, :3], np.round(index[:, :3]), atol=1e-3)  # on our grid
        index = np.round(index[:, :3]).astype(int)
        assert (index >= 0).all() and (index < labels.shape).all()
        assert (labels[tuple(index.T)] == value).all(), f"label value {value}: voxels differ"


def _dicom_tags(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


# ------------------------------------------------------------------------------------------ the cases


@pytest.fixture(scope="module")
def oblique(tmp_path_factory):
    """A real oblique, anisotropic MR series and its labels (values 1, 2, 4; file order) with their RAS affine."""
    folder = tmp_path_factory.mktemp("oblique")
    voxels, labels = _tcga_crop((24, 20, 16))
    affine = oblique_affine("LPS")
    uid, _ = write_series(folder / "series", voxels, affine, modality="MR", description="T1 oblique")
    return folder / "series", uid, labels, affine


ALGORITHMS = {
    "MANUAL": None,
    "SEMIAUTOMATIC": {"name": "MaskGen", "version": "a" * 64, "type": "SEMIAUTOMATIC"},
    "AUTOMATIC": {"name": "ERM", "version": "0123456789abcdef" * 4, "type": "AUTOMATIC"},
}


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_written_segs_pass_dciodvfy_and_dcmqi_reads_our_voxels(kind, oblique, tmp_path):
    series, uid, labels, affine = oblique
    names = {**NAMES, 2: "œdème péritumoral", 9: "named but absent"}  # UTF-8 text, an empty segment
    table = LabelTable.from_names([1, 2, 4], names, source_series_uid=uid, algorithm=ALGORITHMS[kind])
    volume = volume_from_image(nib.Nifti1Image(labels, affine), "labels", as_label=True)
    out = write_dicom_seg(tmp_path / "seg.dcm", volume.data, series, table, labels_affine=volume.display_affine)

    assert dciodvfy_errors(out) == []
    seg = hd.seg.segread(out)
    assert {str(seg.get_segment_description(n).algorithm_type.value) for n in seg.segment_numbers} == {kind}
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == [
        names[v] for v in (1, 2, 4, 9)
    ]
    segments = dcmqi_segments(out, tmp_path / "dcmqi")
    present = [v for v in segments if v != 9]
    assert_same_voxels_in_world({v: segments[v] for v in present}, labels, affine, [1, 2, 4])
    assert 9 not in segments or len(segments[9][0]) == 0


@pytest.fixture
def cli_case(tmp_path):
    """The TCGA crop as NIfTI (T1 + labels 0/1/2) and as a DICOM series with the T1's geometry."""
    from tests.test_cli import _tumour_crop

    image, labels = _tumour_crop(tmp_path, size=24)
    t1 = nib.load(str(image))
    uid, _ = write_series(tmp_path / "dicom", np.asarray(t1.dataobj).astype(np.int16), t1.affine, modality="MR")
    return image, labels, tmp_path / "dicom", uid


def test_domaingen_export_writes_a_valid_seg(cli_case, tmp_path):
    from napari_domaingen.cli import main

    _image, labels, folder, _uid = cli_case
    out = tmp_path / "export.dcm"
    argv = [
        "export",
        str(labels),
        "--reference",
        str(folder),
        "--out",
        str(out),
        "--class-names",
        "background,core,edema",
    ]
    assert main(argv) == 0
    assert dciodvfy_errors(out) == []
    nifti = nib.load(str(labels))
    data = np.asarray(nifti.dataobj)
    assert_same_voxels_in_world(dcmqi_segments(out, tmp_path / "dcmqi"), data, nifti.affine, [1, 2])


@pytest.mark.slow
def test_domaingen_segment_writes_a_valid_seg(cli_case, tmp_path, offline):
    """``segment SERIES --out SEG.dcm`` (AUTOMATIC, the model's class names) with a small ERM model; the labels of
    the same model written as NIfTI on the series' grid are the voxels dcmqi reads from the SEG."""
    from napari_domaingen.cli import main

    _image, _labels, folder, _uid = cli_case
    model = tiny_erm_model(tmp_path / "erm.pt", class_names=("background", "necrosis", "oedema"))
    seg, nifti = tmp_path / "seg.dcm", tmp_path / "seg.nii.gz"
    assert main(["segment", str(folder), "--model", str(model), "--out", str(seg), "--quiet"]) == 0
    assert main(["segment", str(folder), "--model", str(model), "--out", str(nifti), "--quiet"]) == 0
    assert dciodvfy_errors(seg) == []
    dataset = hd.seg.segread(seg)
    assert {str(dataset.get_segment_description(n).algorithm_type.value) for n in dataset.segment_numbers} == {
        "AUTOMATIC"
    }
    image = nib.load(str(nifti))
    data = np.asarray(image.dataobj)
    values = [v for v in (1, 2) if (data == v).any()] or [1, 2]
    segments = dcmqi_segments(seg, tmp_path / "dcmqi")
    assert_same_voxels_in_world({v: s for v, s in segments.items() if v in values}, data, image.affine, values)
    for value in set(segments) - set(values):  # a class the model found nowhere: listed, empty
        assert len(segments[value][0]) == 0


# ------------------------------------------------------------------------- values DICOM does not allow


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            LabelTable.from_names([1, 2], {1: "line1\nline2"}),
            r"the name of class 1 \('line1\\nline2'\) holds a newline",
        ),
        (LabelTable.from_names([1, 2], {2: "tab\there"}), r"the name of class 2 .* holds a tab"),
        (LabelTable.from_names([1, 2], {1: "dir\\"}), r"the name of class 1 .* holds a backslash"),
        (LabelTable.from_names([1, 2], {1: "x" * 65}), r"the name of class 1 .* is 65 characters long; .* at most 64"),
        (LabelTable.from_names([1, 2], {1: "  "}), r"the name of class 1 .* is empty"),
        (
            LabelTable.from_names([1, 2], algorithm={"name": "a\\b", "version": "1"}),
            r"the algorithm name \('a\\\\b'\) holds a backslash",
        ),
        (
            LabelTable.from_names([1, 2], algorithm={"name": "ERM", "version": "v" * 70}),
            r"the algorithm version .* is 70 characters long",
        ),
        (
            LabelTable.from_names([1, 2], algorithm={"name": "ERM", "version": "1", "type": "automatic-ish"}),
            r"the algorithm type 'automatic-ish' is not one of MANUAL, SEMIAUTOMATIC, AUTOMATIC",
        ),
    ],
)
def test_values_dicom_does_not_allow_are_refused_before_writing(table, message, oblique, tmp_path):
    series, _uid, labels, affine = oblique
    volume = volume_from_image(nib.Nifti1Image(labels, affine), "labels", as_label=True)
    out = tmp_path / "seg.dcm"
    with pytest.raises(VolumeWriteError, match=message) as error:
        write_dicom_seg(out, np.minimum(volume.data, 2), series, table, labels_affine=volume.display_affine)
    assert str(error.value).startswith(f"{out}: ") and not out.exists() and list(tmp_path.iterdir()) == []


def test_a_bad_description_is_refused(oblique, tmp_path):
    series, _uid, labels, affine = oblique
    volume = volume_from_image(nib.Nifti1Image(labels, affine), "labels", as_label=True)
    with pytest.raises(VolumeWriteError, match=r"the description \('two\\nlines'\) holds a newline"):
        write_dicom_seg(
            tmp_path / "s.dcm", volume.data, series, labels_affine=volume.display_affine, description="two\nlines"
        )


def test_source_uids_are_checked_and_dates_made_valid(oblique, tmp_path):
    series, _uid, labels, affine = oblique
    volume = volume_from_image(nib.Nifti1Image(labels, affine), "labels", as_label=True)
    dated = tmp_path / "dated"
    shutil.copytree(series, dated)
    for path in dated.iterdir():  # an old ACR-NEMA date and a date that is no date
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():  # pydicom warns about the invalid values it is asked to store
            warnings.simplefilter("ignore")
            ds.StudyDate, ds.PatientBirthDate = "2020.01.31", "19991399"
        ds.save_as(path)
    out = write_dicom_seg(tmp_path / "seg.dcm", volume.data, dated, labels_affine=volume.display_affine)
    tags = _dicom_tags(out)
    assert tags.StudyDate == "20200131" and tags.PatientBirthDate == ""
    assert dciodvfy_errors(out) == []

    bad = tmp_path / "bad_uid"
    shutil.copytree(series, bad)
    for path in bad.iterdir():
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.StudyInstanceUID = "1.2.03.4"  # a leading zero in a component
        ds.save_as(path)
    with pytest.raises(VolumeWriteError, match=r"seg2\.dcm: the source image .* has StudyInstanceUID '1\.2\.03\.4'"):
        write_dicom_seg(tmp_path / "seg2.dcm", volume.data, bad, labels_affine=volume.display_affine)
    assert not (tmp_path / "seg2.dcm").exists()


def test_vr_helpers():
    assert lo_problem("x" * 64) is None and "65 characters" in lo_problem("x" * 65)
    assert lo_problem("a\\b").startswith("holds a backslash") and lo_problem("a\rb").startswith("holds a carriage")
    assert safe_lo("Segmentation of a\\b\nc" + "x" * 80) == ("Segmentation of a/b c" + "x" * 80)[:64]
    assert uid_problem("1.2.840.10008.5.1.4.1.1.66.4") is None and uid_problem("1.2.0.3") is None
    for bad in ("", "1.2.", ".1.2", "1..2", "1.2a", "1.02", "1." + "2" * 64):
        assert uid_problem(bad) is not None, bad
    assert normalised_date("20240229") == "20240229" and normalised_date("20230229") == ""
    assert normalised_date("2020-01-31") == "20200131" and normalised_date("31/01/2020") == ""
