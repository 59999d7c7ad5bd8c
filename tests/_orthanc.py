"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the DICOMweb tests: started on 127.0.0.1 on a
free port with a temporary storage folder and HTTP basic auth, stopped when the session ends; and test studies
built from ../shared data, uploaded through Orthanc's own REST API (not through the code under test)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from pydicom.uid import generate_uid

USER, PASSWORD = "radiologist", "pacs-secret-42"


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its DICOMweb root ``url``, REST root ``rest``, credentials and log file."""

    url: str
    rest: str
    log: Path

    def upload(self, files: list[Path]) -> None:
        """Store DICOM files through Orthanc's REST API (``POST /instances``)."""
        for file in files:
            answer = requests.post(f"{self.rest}/instances", data=file.read_bytes(), auth=(USER, PASSWORD), timeout=10)
            answer.raise_for_status()


def _plugin() -> str | None:
    found = sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))
    return str(found[0]) if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_orthanc(root: Path) -> tuple[Orthanc, subprocess.Popen]:
    """Start Orthanc with DICOMweb on 127.0.0.1 on a free port, its storage in ``root``; raises ``RuntimeError``
    with the end of its log when it does not answer within 30 s (also used by scripts/docs_screenshots.py)."""
    binary, plugin = shutil.which("Orthanc"), _plugin()
    if binary is None or plugin is None:
        raise FileNotFoundError(
            "Orthanc with its DICOMweb plugin is not installed (apt install orthanc orthanc-dicomweb)"
        )
    port = _free_port()
    config = {
        "Name": "domaingen-tests",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{port}"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = root / "orthanc.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=handle, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{rest}/system", auth=(USER, PASSWORD), timeout=2).ok:
                return Orthanc(f"{rest}/dicom-web", rest, log), process
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Orthanc did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop_orthanc(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Orthanc:
    """Orthanc with DICOMweb on 127.0.0.1 (skips when Debian's packages are not installed; CI installs them)."""
    try:
        server, process = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    stop_orthanc(process)


@pytest.fixture
def pacs_env(orthanc, monkeypatch, tmp_path) -> Orthanc:
    """The running Orthanc with its credentials in the environment and a cache and settings folder of the test's
    own."""
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_USER", USER)
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.delenv("DOMAINGEN_DICOMWEB_TOKEN", raising=False)
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_CACHE", str(tmp_path / "dicomweb-cache"))
    monkeypatch.setenv("DOMAINGEN_DICOMWEB_SETTINGS", str(tmp_path / "no-settings.json"))
    return orthanc


def tcga_crop(size: int = 32) -> dict[str, nib.Nifti1Image]:
    """A ``size``³ crop around the tumour of the TCGA case: T1, FLAIR and the fused tumour labels (0, 1, 2)."""
    from .conftest import shared_file

    folder = ("data", "mri", "tcga-du-7294")
    images = {
        "T1": nib.load(str(shared_file(*folder, "TCGA-DU-7294_t1_bet.nii.gz"))),
        "FLAIR": nib.load(str(shared_file(*folder, "TCGA-DU-7294_fla_bet.nii.gz"))),
        "labels": nib.load(str(shared_file(*folder, "tcga-du-7294_seg-fusion-simple.nii.gz"))),
    }
    labels = np.asanyarray(images["labels"].dataobj)
    centre = [int(np.mean(axis)) for axis in np.nonzero(labels)]
    box = tuple(slice(c - size // 2, c - size // 2 + size) for c in centre)
    return {name: image.slicer[box] for name, image in images.items()}


def write_study(
    folder: Path, patient_id: str, date: str = "20260315", accession: str = "", contrasts=("T1", "FLAIR"), size=32
) -> dict[str, tuple[str, list[Path], Path]]:
    """One study (one StudyInstanceUID) of the TCGA crop: a DICOM series per contrast (description ``"<contrast>
    axial"``). Returns ``{contrast: (series UID, files, series folder)}``."""
    from .io.test_dicom import write_series

    crop = tcga_crop(size)
    study, frame = generate_uid(), generate_uid()
    written = {}
    for number, contrast in enumerate(contrasts, start=1):
        image = crop[contrast]
        voxels = np.round(np.asarray(image.dataobj)).astype(np.int16)
        series_folder = folder / patient_id / contrast
        uid, files = write_series(
            series_folder,
            voxels,
            image.affine,
            modality="MR",
            description=f"{contrast} axial",
            series_number=number,
            extra={
                "PatientID": patient_id,
                "PatientName": f"Test^{patient_id}",
                "StudyInstanceUID": study,
                "FrameOfReferenceUID": frame,
                "StudyDate": date,
                "AccessionNumber": accession,
            },
        )
        written[contrast] = (uid, files, series_folder)
    return written
