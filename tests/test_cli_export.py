"""``domaingen segment`` on DICOM → DICOM-SEG and statistics; ``domaingen export`` and ``domaingen stats``."""

from __future__ import annotations

import csv

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.cli import main
from napari_domaingen.models.weights import sha256_file

from .io.test_dicom import write_series
from .test_cli import _FAST, _tumour_crop


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def dicom_case(tmp_path):
    """The TCGA crop as NIfTI (T1 + labels 0/1/2) and as a DICOM series with the T1's geometry."""
    image, labels = _tumour_crop(tmp_path, size=32)
    t1 = nib.load(str(image))
    uid, _ = write_series(tmp_path / "dicom", np.asarray(t1.dataobj).astype(np.int16), t1.affine, modality="MR")
    return image, labels, tmp_path / "dicom", uid


@pytest.mark.slow
def test_segment_a_dicom_series_into_a_seg_with_statistics(tmp_path, dicom_case, capsys, offline):
    image, labels, folder, uid = dicom_case
    model = tmp_path / "erm.pt"
    train = ["train", "--image", str(image), "--label", str(labels), "--out", str(model), *_FAST]
    assert (
        main(
            [
                *train,
                "--steps",
                "2",
                "--baseline",
                "erm",
                "--no-augment",
                "--quiet",
                "--class-names",
                "background,necrosis,oedema",
            ]
        )
        == 0
    )
    seg, stats = tmp_path / "seg.dcm", tmp_path / "stats.csv"
    assert (
        main(["segment", str(folder), "--model", str(model), "--out", str(seg), "--stats", str(stats), "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert f"wrote {seg}" in out and f"wrote {stats}" in out

    dataset = hd.seg.segread(seg)
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    for number in dataset.segment_numbers:
        description = dataset.get_segment_description(number)
        assert description.segment_label in ("necrosis", "oedema")
        assert description.algorithm_identification[0].AlgorithmName == "ERM"
        assert description.algorithm_identification[0].AlgorithmVersion == sha256_file(model)[:64]
    rows = _rows(stats)
    assert [r["name"] for r in rows] == ["necrosis", "oedema"]
    spacing = np.prod(nib.load(str(image)).header.get_zooms()[:3])
    for row in rows:
        assert float(row["volume_mm3"]) == pytest.approx(int(row["voxels"]) * spacing, rel=1e-6)
        assert row["mean"] == "" or np.isfinite(float(row["mean"]))

    # the same model on the NIfTI: labels + sidecars, the stats of those labels again with `domaingen stats`
    nifti = tmp_path / "seg.nii.gz"
    assert main(["segment", str(image), "--model", str(model), "--out", str(nifti), "--quiet"]) == 0
    assert (tmp_path / "seg.json").is_file() and (tmp_path / "seg.txt").is_file()
    again = tmp_path / "again.csv"
    assert main(["stats", str(nifti), "--image", str(image), "--out", str(again)]) == 0
    assert [r["name"] for r in _rows(again)] == ["necrosis", "oedema"]
    # a NIfTI segmentation is not a DICOM series: asking for a SEG of it is refused before segmenting
    assert main(["segment", str(image), "--model", str(model), "--out", str(tmp_path / "x.dcm")]) == 2
    assert "needs a DICOM series as IMAGE" in capsys.readouterr().err


def test_export_labels_with_names_to_seg_and_stats_of_it(tmp_path, dicom_case, capsys):
    _image, labels, folder, uid = dicom_case
    seg = tmp_path / "export.dcm"
    assert (
        main(
            [
                "export",
                str(labels),
                "--reference",
                str(folder),
                "--out",
                str(seg),
                "--class-names",
                "background,core,edema",
            ]
        )
        == 0
    )
    dataset = hd.seg.segread(seg)
    assert [dataset.get_segment_description(n).segment_label for n in dataset.segment_numbers] == ["core", "edema"]
    assert dataset.get_segment_description(1).algorithm_type.value == "MANUAL"
    # statistics straight from the DICOM-SEG equal those of the NIfTI labels
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["stats", str(seg), "--out", str(a)]) == 0
    assert main(["stats", str(labels), "--class-names", "background,core,edema", "--out", str(b)]) == 0
    assert _rows(a) == _rows(b) and len(_rows(a)) == 2


def test_export_and_stats_refuse_bad_inputs(tmp_path, dicom_case, capsys):
    image, labels, folder, _uid = dicom_case
    shifted = nib.load(str(labels))
    affine = shifted.affine.copy()
    affine[:3, 3] += 5.0
    moved = tmp_path / "moved_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj), affine), str(moved))
    out = tmp_path / "x.dcm"

    def refused(argv, message):
        assert main(argv) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()

    refused(["export", str(moved), "--reference", str(folder), "--out", str(out)], "not on the reference series' grid")
    # labels made on the series (their sidecar says so) against another series on the same grid
    from napari_domaingen.io.label_table import LabelTable
    from napari_domaingen.io.nifti import read_nifti, save_labels_nifti

    volume = read_nifti(labels, as_label=True)
    made_on = tmp_path / "made_on.nii.gz"
    save_labels_nifti(made_on, volume.data, LabelTable.from_names([1, 2], source_series_uid=_uid), volume.source)
    t1 = nib.load(str(image))
    write_series(tmp_path / "other", np.asarray(t1.dataobj).astype(np.int16), t1.affine, modality="MR", seed=4)
    refused(["export", str(made_on), "--reference", str(tmp_path / "other"), "--out", str(out)], "made on series")
    refused(["export", str(labels), "--reference", str(folder), "--out", str(tmp_path / "x.nii")], "must end in .dcm")
    refused(["stats", str(moved), "--image", str(image), "--out", str(out)], "not on the grid of --image")
    refused(["stats", str(image) + ".txt", "--out", str(out)], "labels must be a NIfTI file")
