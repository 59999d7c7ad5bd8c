"""``domaingen pacs find|get|send``, ``domaingen cohort`` / ``batch segment --send`` on a DICOMweb query, against a
real Orthanc: round trips read back with highdicom, and the bad cases each one line within 10 s."""

from __future__ import annotations

import csv
import time

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.cli import main
from napari_domaingen.io import dicomweb as dw
from napari_domaingen.io.dicom import read_series
from napari_domaingen.io.dicom_seg import read_dicom_seg, write_dicom_seg
from napari_domaingen.io.nifti import read_nifti
from napari_domaingen.progress import run

from ._orthanc import PASSWORD, tcga_crop, write_study
from .conftest import tiny_erm_model


def _patient(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def _seg_series(server, study_uid):
    return [s for s in dw.find_series(server, study_uid) if s.modality == "SEG"]


def test_find_get_export_send_and_read_the_seg_back(pacs_env, tmp_path, capsys):
    patient = _patient("PACS-CLI")
    written = write_study(tmp_path / "source", patient)
    pacs_env.upload([f for _, files, _ in written.values() for f in files])
    t1_uid = written["T1"][0]
    server = ["--server", pacs_env.url]

    assert main(["pacs", "find", *server, "--patient-id", patient]) == 0
    out = capsys.readouterr().out
    assert patient in out and t1_uid in out and "T1 axial" in out and "32 images" in out and PASSWORD not in out

    folder, nifti = tmp_path / "t1", tmp_path / "t1.nii.gz"
    assert main(["pacs", "get", *server, "--series", t1_uid, "--out", str(folder), "--quiet"]) == 0
    assert main(["pacs", "get", *server, "--series", t1_uid, "--out", str(nifti), "--quiet"]) == 0
    assert len(list(folder.glob("*.dcm"))) == 32
    original = read_series(written["T1"][2])
    assert np.array_equal(read_series(folder).data, original.data)
    converted = nib.load(str(nifti))
    reference = tmp_path / "reference.nii.gz"
    assert main(["convert", str(written["T1"][2]), "--out", str(reference)]) == 0
    assert np.array_equal(converted.affine, nib.load(str(reference)).affine)
    assert np.array_equal(np.asarray(converted.dataobj), np.asarray(nib.load(str(reference)).dataobj))

    labels = tmp_path / "tumour.nii.gz"  # the tumour labels on the retrieved grid, as a user would draw them
    crop = tcga_crop()["labels"]
    nib.save(nib.Nifti1Image(np.asarray(crop.dataobj).astype(np.uint8), converted.affine), str(labels))
    seg = tmp_path / "tumour.dcm"
    assert main(["export", str(labels), "--reference", str(folder), "--out", str(seg)]) == 0
    capsys.readouterr()
    assert main(["pacs", "send", *server, str(seg)]) == 0
    out = capsys.readouterr().out
    sent = hd.seg.segread(seg)
    assert f"stored {seg}" in out and sent.SeriesInstanceUID in out and sent.SOPInstanceUID in out

    study_uid = dw.find_studies(dw.server_from(pacs_env.url), patient_id=patient)[0].uid
    assert main(["pacs", "find", *server, "--patient-id", patient]) == 0
    assert sent.SeriesInstanceUID in capsys.readouterr().out  # the SEG is listed in its study
    stored = _seg_series(dw.server_from(pacs_env.url), study_uid)
    assert [s.uid for s in stored] == [sent.SeriesInstanceUID]
    back = run(dw.get_series(dw.server_from(pacs_env.url), study_uid, stored[0].uid))
    (file,) = back.glob("*.dcm")
    assert hd.seg.segread(file).SOPInstanceUID == sent.SOPInstanceUID
    assert np.array_equal(read_dicom_seg(file).data, read_nifti(labels, as_label=True).data)


@pytest.mark.slow
def test_batch_segment_over_two_studies_stores_both_segs(pacs_env, tmp_path, capsys):
    prefix = _patient("PACS-BATCH")
    for number in (1, 2):
        written = write_study(tmp_path / "source", f"{prefix}-{number}", date=f"2026040{number}")
        pacs_env.upload([f for _, files, _ in written.values() for f in files])
    cohort = f"dicomweb+{pacs_env.url}?PatientID={prefix}-*"
    assert main(["cohort", cohort]) == 0
    listing = capsys.readouterr().out
    assert f"{prefix}-1_20260401" in listing and f"{prefix}-2_20260402" in listing
    assert (
        listing.count("[T1 axial]") == 2
        and listing.count("[FLAIR axial]") == 2
        and "2 cases, 0 with problems" in listing
    )

    model = tiny_erm_model(tmp_path / "tiny.pt")
    out = tmp_path / "batch"
    command = ["batch", "segment", cohort, "--contrast", "T1", "--out", str(out), "--workers", "1", "--send"]
    assert main([*command, "--model", str(model)]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    server = dw.server_from(pacs_env.url)
    for row in rows:
        case = out / row["case"]
        study_uid = dw.find_studies(server, patient_id=row["case"].split("_")[0])[0].uid
        (stored,) = _seg_series(server, study_uid)
        assert stored.uid == row["seg_series_uid"]
        back = next(run(dw.get_series(server, study_uid, stored.uid)).glob("*.dcm"))
        assert hd.seg.segread(back).SOPInstanceUID == row["seg_instance_uid"]
        assert np.array_equal(read_dicom_seg(back).data, read_nifti(case / "labels.nii.gz", as_label=True).data)
    capsys.readouterr()
    assert main([*command, "--model", str(model)]) == 0  # a rerun finds both done and stores nothing again
    assert "0 ok, 2 skipped" in capsys.readouterr().out
    assert all(len(_seg_series(server, s.uid)) == 1 for s in dw.find_studies(server, patient_id=f"{prefix}-*"))


def test_bad_cases_are_one_line_each_within_ten_seconds(pacs_env, tmp_path, capsys, monkeypatch):
    patient = _patient("PACS-BAD")
    good = write_study(tmp_path / "good", patient, contrasts=("T1",))
    gap = write_study(tmp_path / "gap", f"{patient}-GAP", contrasts=("T1",))
    files = gap["T1"][1]
    pacs_env.upload([*good["T1"][1], *files[:10], *files[11:]])  # one slice missing: the reader refuses it
    lonely = write_study(tmp_path / "lonely", f"{patient}-SEGONLY", contrasts=("T1",))  # only its SEG is uploaded
    seg = write_dicom_seg(tmp_path / "lonely.dcm", np.ones((32, 32, 32), np.uint8), lonely["T1"][2])
    pacs_env.upload([seg])
    server = ["--server", pacs_env.url]

    def one_line_error(argv, status=2):
        start = time.monotonic()
        assert main(argv) == status
        seconds = time.monotonic() - start
        captured = capsys.readouterr()
        text = (captured.err or captured.out).strip()
        assert seconds < 10 and PASSWORD not in text, (seconds, text)
        return text

    text = one_line_error(["pacs", "get", *server, "--series", gap["T1"][0], "--out", str(tmp_path / "gap.nii.gz")])
    assert "missing slice(s)" in text and gap["T1"][0] in text and "\n" not in text
    text = one_line_error(["cohort", f"dicomweb+{pacs_env.url}?PatientID={patient}-SEGONLY"], status=0)
    assert "has no image series (its series: SEG)" in text
    other_study = dw.find_studies(dw.server_from(pacs_env.url), patient_id=patient)[0].uid
    text = one_line_error(["pacs", "send", *server, "--study", other_study, str(seg)])
    assert "refused 1 of 1 instances" in text and "\n" not in text
    text = one_line_error(["pacs", "find", *server, "--patient-id", "NOBODY"], status=1)
    assert "no study" in text
    text = one_line_error(["cohort", f"dicomweb+{pacs_env.url}?PatientID=NOBODY"])
    assert "no study matches PatientID=NOBODY" in text and "\n" not in text
    text = one_line_error(["pacs", "find", "--server", "http://127.0.0.1:9/dicom-web"])
    assert "cannot connect" in text and "\n" not in text
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_PASSWORD", "not-the-password")
    text = one_line_error(["pacs", "find", *server])
    assert "HTTP 401" in text and "not-the-password" not in text and "\n" not in text
    text = one_line_error(["pacs", "send", *server, str(tmp_path / "nothing.dcm")])
    assert "nothing.dcm" in text
