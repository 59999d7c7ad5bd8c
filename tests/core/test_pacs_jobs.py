"""core.jobs.pacs: labels go back only to the server their series came from; a refused SEG is kept and said where."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_domaingen.core.jobs import pacs as pacs_jobs
from napari_domaingen.io import dicomweb as dw
from napari_domaingen.io.dicomweb_server import PacsError
from napari_domaingen.progress import run

from .._orthanc import write_study


@pytest.fixture
def retrieved(pacs_env, tmp_path):
    patient = f"PACS-JOB-{time.time_ns()}"
    written = write_study(tmp_path / "source", patient, contrasts=("T1",))
    pacs_env.upload(written["T1"][1])
    server = dw.server_from(pacs_env.url)
    study = dw.find_studies(server, patient_id=patient)[0].uid
    return run(dw.get_series(server, study, written["T1"][0])), written["T1"][2], study


def test_labels_on_a_local_series_are_refused(retrieved, tmp_path):
    _, local_folder, _ = retrieved
    with pytest.raises(PacsError, match="not on a series retrieved from a DICOMweb server"):
        pacs_jobs.send_labels(np.ones((32, 32, 32), np.uint8), local_folder, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_a_refused_seg_is_kept_and_the_message_says_where(retrieved, tmp_path, monkeypatch):
    folder, _, study = retrieved
    assert pacs_jobs.retrieved_series(folder)[1:] == (study, folder.name)

    def refuse(server, files, study_uid=None):
        raise PacsError(server.url, "the server refused 1 of 1 instances (HTTP 409): 0x0110 (processing failure)")

    monkeypatch.setattr(dw, "send", refuse)
    out = tmp_path / "seg.dcm"
    with pytest.raises(PacsError, match="refused") as caught:
        pacs_jobs.send_labels(np.ones((32, 32, 32), np.uint8), folder, out)
    assert f"the SEG is kept at {out}" in str(caught.value) and out.is_file()
