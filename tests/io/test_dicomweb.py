"""io.dicomweb against a real Orthanc: find, get into the cache (voxels and geometry as read from the folder),
send; credentials, settings file, cache bound, cancel; every bad case a one-line message within 10 s."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from napari_domaingen.io import dicomweb as dw
from napari_domaingen.io.dicom import read_series
from napari_domaingen.io.dicomweb_server import PacsError, server_from
from napari_domaingen.progress import Cancelled, run

from .._orthanc import PASSWORD, USER, write_study


@pytest.fixture
def study(pacs_env, tmp_path):
    """A T1 + FLAIR study of patient PACS-IO-<n> on the server."""
    patient = f"PACS-IO-{time.time_ns()}"
    written = write_study(tmp_path / "source", patient, accession="ACC-7")
    pacs_env.upload([f for _, files, _ in written.values() for f in files])
    return patient, written


def test_find_get_and_read_back_exactly_as_from_the_folder(pacs_env, study):
    patient, written = study
    server = server_from(pacs_env.url)
    studies = dw.find_studies(server, patient_id=patient)
    assert [s.patient_id for s in studies] == [patient]
    assert studies[0].accession == "ACC-7" and studies[0].date == "20260315" and studies[0].n_series == 2
    assert dw.find_studies(server, accession="ACC-7", patient_id=patient)[0].uid == studies[0].uid
    series = dw.find_series(server, studies[0].uid)
    assert [(s.description, s.modality, s.n_instances) for s in series] == [
        ("T1 axial", "MR", 32),
        ("FLAIR axial", "MR", 32),
    ]
    updates = []
    folder = run(dw.get_series(server, studies[0].uid, series[0].uid, 32), updates.append)
    assert len(updates) == 32 and updates[-1]["fraction"] == 1.0
    got, original = read_series(folder), read_series(written["T1"][2])
    assert np.array_equal(got.data, original.data)
    assert np.array_equal(got.display_affine, original.display_affine)
    assert got.source.dicom_series_uid == written["T1"][0]
    assert dw.origin_of(folder) == (server.url, studies[0].uid, series[0].uid)
    again = []  # reopening is from the cache: one update, no request
    assert run(dw.get_series(server, studies[0].uid, series[0].uid, 32), again.append) == folder
    assert len(again) == 1 and "in the cache" in again[0]["message"]


def test_a_cancelled_retrieval_leaves_nothing_in_the_cache(pacs_env, study):
    patient, written = study
    server = server_from(pacs_env.url)
    study_uid = dw.find_studies(server, patient_id=patient)[0].uid
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        run(dw.get_series(server, study_uid, written["FLAIR"][0], cancel=lambda: next(calls) >= 5))
    assert dw.cached(server, study_uid, written["FLAIR"][0]) is None
    assert not list(dw.cache_dir().rglob("*.dcm"))


def test_the_cache_is_kept_under_its_bound_by_dropping_the_oldest(pacs_env, study, monkeypatch):
    patient, written = study
    server = server_from(pacs_env.url)
    study_uid = dw.find_studies(server, patient_id=patient)[0].uid
    first = run(dw.get_series(server, study_uid, written["T1"][0]))
    size = sum(p.stat().st_size for p in first.iterdir())
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_CACHE_GB", str(1.5 * size / 1e9))  # room for one series
    second = run(dw.get_series(server, study_uid, written["FLAIR"][0]))
    assert second.is_dir() and not first.exists()


def test_send_stores_and_the_server_refuses_an_instance_of_another_study(pacs_env, study, tmp_path):
    patient, _ = study
    other = write_study(tmp_path / "other", f"{patient}-B", contrasts=("T1",))
    server = server_from(pacs_env.url)
    files = other["T1"][1]
    stored = dw.send(server, files[:2])
    assert len(stored) == 2 and all(item.sop_instance_uid for item in stored)
    target = dw.find_studies(server, patient_id=patient)[0].uid
    start = time.monotonic()
    with pytest.raises(PacsError, match="refused 1 of 1 instances") as caught:
        dw.send(server, files[2:3], study_uid=target)  # an instance of another study, sent into this one
    assert time.monotonic() - start < 10 and "\n" not in str(caught.value)


def test_bad_servers_and_credentials_are_one_line_without_secrets(pacs_env, monkeypatch):
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_PASSWORD", "wrong-password")
    start = time.monotonic()
    with pytest.raises(PacsError, match="HTTP 401") as caught:
        dw.find_studies(server_from(pacs_env.url))
    assert "wrong-password" not in str(caught.value) and USER not in str(caught.value)
    with pytest.raises(PacsError, match="cannot connect") as down:
        dw.find_studies(server_from("http://127.0.0.1:9/dicom-web"))  # nothing listens on port 9
    assert time.monotonic() - start < 10
    assert "\n" not in str(down.value)
    with pytest.raises(PacsError, match="must not hold a user or password") as in_address:
        server_from(f"http://{USER}:{PASSWORD}@127.0.0.1:8042/dicom-web")
    assert PASSWORD not in str(in_address.value)
    with pytest.raises(PacsError, match="not a DICOMweb address"):
        server_from("ftp://example.org/x")
    with pytest.raises(PacsError, match="CA file"):
        server_from(pacs_env.url, ca_file="/no/such/ca.pem")
    assert PASSWORD not in repr(server_from(pacs_env.url))


def test_a_query_that_matches_nothing_is_an_empty_list(pacs_env):
    assert dw.find_studies(server_from(pacs_env.url), patient_id="NOBODY-HERE") == []


def test_credentials_from_a_settings_file_only_when_private(pacs_env, monkeypatch, tmp_path):
    monkeypatch.delenv("DOMAINGEN_DICOMWEB_USER")
    monkeypatch.delenv("DOMAINGEN_DICOMWEB_PASSWORD")
    settings = tmp_path / "dicomweb.json"
    settings.write_text(f'{{"servers": {{"{pacs_env.url}/": {{"user": "{USER}", "password": "{PASSWORD}"}}}}}}')
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_SETTINGS", str(settings))
    os.chmod(settings, 0o644)
    with pytest.raises(PacsError, match="readable by other users"):
        server_from(pacs_env.url)
    os.chmod(settings, 0o600)
    server = server_from(f"dicomweb+{pacs_env.url}")
    assert server.credentials == f"user {USER}"
    assert isinstance(dw.find_studies(server, patient_id="NOBODY"), list)  # authenticated: no 401
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_TOKEN", "a-token")  # the environment wins; a bearer token Orthanc refuses
    with pytest.raises(PacsError, match="HTTP 401") as caught:
        dw.find_studies(server_from(pacs_env.url))
    assert "a-token" not in str(caught.value)


def test_addresses_of_series_and_queries():
    server = server_from("dicomweb://pacs.example.org/dicom-web/")
    assert server.url == "https://pacs.example.org/dicom-web"
    uri = dw.series_uri(server, "1.2", "1.2.3")
    assert uri == "dicomweb+https://pacs.example.org/dicom-web/studies/1.2/series/1.2.3"
    assert dw.parse_series_uri(uri) == ("https://pacs.example.org/dicom-web", "1.2", "1.2.3")
    assert dw.parse_query_uri("dicomweb+http://h:8042/dicom-web?ModalitiesInStudy=MR&StudyDate=20260101-") == (
        "dicomweb+http://h:8042/dicom-web",
        {"ModalitiesInStudy": "MR", "StudyDate": "20260101-"},
    )
    with pytest.raises(ValueError, match="not the address of a DICOMweb series"):
        dw.parse_series_uri("dicomweb+http://h/dicom-web/studies/1.2/series/../../x")


def test_an_enhanced_multiframe_series_reads_back_like_its_single_frame_original(pacs_env, tmp_path):
    from .test_dicom_multiframe import enhanced_from_series

    patient = f"PACS-MF-{time.time_ns()}"
    written = write_study(tmp_path / "source", patient, contrasts=("T1",))
    enhanced = enhanced_from_series(written["T1"][1], tmp_path / "enhanced" / "t1.dcm")
    pacs_env.upload([enhanced])
    server = server_from(pacs_env.url)
    study = dw.find_studies(server, patient_id=patient)[0]
    (series,) = dw.find_series(server, study.uid)
    assert series.n_instances == 1
    got, original = read_series(run(dw.get_series(server, study.uid, series.uid, 1))), read_series(written["T1"][2])
    assert np.array_equal(got.data, original.data)
    assert np.allclose(got.display_affine, original.display_affine, atol=1e-4)
