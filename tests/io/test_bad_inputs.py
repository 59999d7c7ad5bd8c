"""Bad inputs for every reader — a FIFO, a folder where a file is expected, an empty, a truncated and a garbage
file — each give a :class:`DomaingenIOError` whose message starts with the path and names the problem, at once
(a FIFO is never opened: a test that would hang fails after a few seconds instead)."""

from __future__ import annotations

import os
import re
import threading
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.io.dicom import read_series
from napari_domaingen.io.dicom_seg import is_dicom_seg, read_dicom_seg, write_dicom_seg
from napari_domaingen.io.dicom_series import list_series, unsafe_member
from napari_domaingen.io.errors import DomaingenIOError
from napari_domaingen.io.histology import read_histology
from napari_domaingen.io.nifti import read_nifti
from napari_domaingen.io.volume_info import format_info, info
from napari_domaingen.io.volume_scan import scan

from .test_dicom import write_series

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")

SECONDS = 10.0  # far more than any of these needs; a reader blocked on a FIFO is stopped here


def _call_with_timeout(function, path: Path):
    """``function(path)``'s exception (or result) within :data:`SECONDS`; a call still blocked then (e.g. opening a
    FIFO) is released by opening the FIFO's other end, and the test fails."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = function(path)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(SECONDS)
    if thread.is_alive():
        for fifo in [path, *(path.iterdir() if path.is_dir() else ())]:
            if fifo.is_fifo():
                try:  # unblock a reader waiting in open(): a writer appears and leaves at once
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
        thread.join(2.0)
        pytest.fail(f"{function.__name__}({path}) hung for more than {SECONDS:g} s")
    return outcome, time.monotonic() - start


# ------------------------------------------------------------------------------------------ real inputs


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """One real file per format (small): NIfTI labels, a DICOM slice, a DICOM-SEG, a PNG, a DICOM zip."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("originals")
    rng = np.random.default_rng(0)
    labels = np.zeros((12, 10, 6), np.uint8)
    labels[3:8, 2:7, 1:5] = 1
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    nib.save(nib.Nifti1Image(labels, affine), folder / "seg.nii.gz")
    voxels = rng.integers(0, 1000, size=labels.shape).astype(np.int16)
    _uid, files = write_series(folder / "series", voxels, affine, modality="MR")
    volume = read_series(folder / "series")
    seg = write_dicom_seg(folder / "seg.dcm", (volume.data > 500).astype(np.uint8), folder / "series")
    Image.fromarray(rng.integers(0, 255, size=(64, 48, 3), dtype=np.uint8)).save(folder / "tile.png")
    with zipfile.ZipFile(folder / "series.zip", "w") as archive:
        for path in files:
            archive.write(path, f"series/{path.name}")
    return {
        "seg.nii.gz": folder / "seg.nii.gz",
        "slice.dcm": files[0],
        "labels.dcm": seg,
        "tile.png": folder / "tile.png",
        "series.zip": folder / "series.zip",
    }


def _make(kind: str, name: str, originals: dict[str, Path], folder: Path) -> Path:
    """A bad input of ``kind`` named ``name`` (alone in its own folder)."""
    folder.mkdir()
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = originals[name].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


FIFO = r"is a named pipe \(FIFO\), not a file"
FOLDER = r"is a folder, but the .* must be a file"
EMPTY = r"empty \(0 bytes\)"

# reader, file name, kind of bad input, the problem the message names
CASES = [
    *[
        (reader, "seg.nii.gz", kind, problem)
        for reader in (read_nifti, info, lambda p: scan([p]))
        for kind, problem in (
            ("fifo", FIFO),
            ("folder", FOLDER),
            ("empty", EMPTY),
            ("truncated", r"(truncated|not a readable NIfTI)"),
            ("garbage", r"not a readable NIfTI"),
        )
    ],
    *[
        (read_dicom_seg, "labels.dcm", kind, problem)
        for kind, problem in (
            ("fifo", FIFO),
            ("folder", FOLDER),
            ("empty", EMPTY),
            ("truncated", r"not a readable DICOM Segmentation"),
            ("garbage", r"not a readable DICOM Segmentation"),
        )
    ],
    *[
        (read_histology, "tile.png", kind, problem)
        for kind, problem in (
            ("fifo", FIFO),
            ("folder", FOLDER),
            ("empty", EMPTY),
            ("truncated", r"truncated or corrupt"),
            ("garbage", r"not an image file that can be read"),
        )
    ],
    *[
        (reader, "slice.dcm", kind, problem)
        for reader in (read_series, info)
        for kind, problem in (
            ("fifo", FIFO),
            ("empty", r"not a (NIfTI file, a )?DICOM file"),
            ("garbage", r"not a (NIfTI file, a )?DICOM file"),
        )
    ],
    (read_series, "slice.dcm", "truncated", r"cannot be read as DICOM|truncated|pixel data cannot be read"),
    *[
        (reader, "series.zip", kind, problem)
        for reader in (read_series, list_series, info)
        for kind, problem in (
            ("fifo", FIFO),
            ("empty", r"not a (folder or a \.zip|NIfTI file, a DICOM file|DICOM file)"),
            ("truncated", r"not a (folder or a \.zip|NIfTI file, a DICOM file|DICOM file)|cannot open the zip"),
            ("garbage", r"not a (folder or a \.zip|NIfTI file, a DICOM file|DICOM file)"),
        )
    ],
]


def _id(case) -> str:
    reader, name, kind, _ = case
    return f"{getattr(reader, '__name__', 'scan').replace('<lambda>', 'scan')}-{name}-{kind}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_a_bad_input_is_refused_at_once_naming_the_file_and_the_problem(case, originals, tmp_path):
    reader, name, kind, problem = case
    path = _make(kind, name, originals, tmp_path / "input")
    outcome, seconds = _call_with_timeout(reader, path)
    error = outcome.get("error")
    assert isinstance(error, DomaingenIOError), f"expected a DomaingenIOError, got {outcome!r}"
    message = str(error)
    assert message.startswith(str(path)), message
    assert re.search(problem, message), message
    assert "Traceback" not in message and seconds < SECONDS


def test_the_originals_read(originals):
    """The inputs the table breaks are good to begin with."""
    assert read_nifti(originals["seg.nii.gz"]).is_label
    assert read_series(originals["slice.dcm"]).data.shape == (6, 10, 12)
    assert read_series(originals["series.zip"]).data.shape == (6, 10, 12)
    assert is_dicom_seg(originals["labels.dcm"]) and read_dicom_seg(originals["labels.dcm"]).is_label
    assert read_histology(originals["tile.png"]).data.shape == (64, 48, 3)


def test_a_fifo_inside_a_dicom_folder_is_skipped_never_opened(originals, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for path in originals["slice.dcm"].parent.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    os.mkfifo(folder / "pipe.dcm")
    os.mkfifo(folder / "labels.nii.gz")
    outcome, _ = _call_with_timeout(list_series, folder)
    assert "error" not in outcome, outcome
    assert [s.n_slices for s in outcome["result"]] == [6]
    outcome, _ = _call_with_timeout(read_series, folder)
    assert outcome["result"].data.shape == (6, 10, 12)
    outcome, _ = _call_with_timeout(lambda p: scan([p]), folder)
    assert [c.kind for c in outcome["result"]] == ["dicom"]  # the FIFO named *.nii.gz is not a NIfTI candidate


def test_a_sidecar_that_is_not_a_file_is_named(originals, tmp_path):
    labels = tmp_path / "seg.nii.gz"
    labels.write_bytes(originals["seg.nii.gz"].read_bytes())
    os.mkfifo(tmp_path / "seg.txt")
    outcome, _ = _call_with_timeout(read_nifti, labels)
    assert str(outcome["error"]).startswith(str(tmp_path / "seg.txt") + ": is a named pipe (FIFO)")
    (tmp_path / "seg.txt").unlink()
    (tmp_path / "seg.json").mkdir()
    with pytest.raises(DomaingenIOError, match=r"seg\.json: is a folder, but the label table"):
        read_nifti(labels)


def test_unsafe_zip_members_are_skipped_alike_by_info_and_the_reader(originals, tmp_path):
    archive = tmp_path / "series.zip"
    files = list_series(originals["slice.dcm"].parent)[0].files  # in slice order
    with zipfile.ZipFile(archive, "w") as out:
        for path in files[:-1]:
            out.write(path, f"series/{path.name}")
        out.write(files[-1], f"../{files[-1].name}")  # a member that would land outside the extraction folder
    facts = info(archive)
    assert len(facts) == 1 and facts[0]["n_files"] == len(files) - 1
    assert facts[0]["skipped_unsafe_members"] == (f"../{files[-1].name}",)
    assert "skipped unsafe members: ../" in format_info(facts)
    series = list_series(archive)[0]
    assert len(series.files) == len(files) - 1
    assert all(not unsafe_member(p.relative_to(archive).as_posix()) for p in series.files)
    # the reader reads exactly the files info counted (here one slice short at an end: still a regular stack)
    assert read_series(archive).data.shape[0] == len(files) - 1
    only_unsafe = tmp_path / "evil.zip"
    with zipfile.ZipFile(only_unsafe, "w") as out:
        out.writestr(zipfile.ZipInfo("/abs.dcm"), files[0].read_bytes())  # ZipInfo keeps the name as it is
        out.writestr(zipfile.ZipInfo("a/../../up.dcm"), files[1].read_bytes())
    with pytest.raises(DomaingenIOError, match=r"evil\.zip: no DICOM files found; 2 zip member\(s\) with unsafe"):
        info(only_unsafe)


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [("a/b.dcm", False), ("../b.dcm", True), ("a/../../b.dcm", True), ("/b.dcm", True), ("C:b.dcm", True),
     ("a\\..\\..\\b.dcm", True), ("a..b/c.dcm", False)],
)  # fmt: skip
def test_unsafe_member_names(name, unsafe):
    assert unsafe_member(name) is unsafe


def test_label_values_beyond_the_writers_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "huge_seg.nii.gz"
    data = np.zeros((4, 4, 4), np.int64)
    data[0, 0, 0] = 5_000_000_000
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=np.int64), path)
    with pytest.raises(DomaingenIOError, match=r"huge_seg\.nii\.gz: label file holds the value 5000000000, beyond"):
        read_nifti(path, as_label=True)
    from napari_domaingen.io.nifti import write_nifti

    with pytest.raises(DomaingenIOError, match=r"out_seg\.nii\.gz: label value 5000000000 is beyond"):
        write_nifti(tmp_path / "out_seg.nii.gz", data, display_affine=np.eye(4), is_label=True)
    assert not (tmp_path / "out_seg.nii.gz").exists()
