"""Opening a series from a PACS against reading the same files from a folder, and how fast each bad case answers.

A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) is started on 127.0.0.1 as the tests start it; the
TCGA-DU-7294 T1 of ../shared (240 × 240 × 155, 1 mm) is written as a DICOM series of 155 files and uploaded through
Orthanc's REST API. Measured in one run, each ``--repeats`` times (median):

* first open: retrieve the series (WADO-RS) into an empty cache and read it (the same reader as folders);
* reopen: the same call again (the cache answers; no request);
* folder: read the same files from a local folder (the baseline: what opening an exported folder costs);

and the voxels and affine of the retrieved series against the folder's. Then the seconds to a one-line error for a
server that is down, a wrong password, a query that matches nothing, a series the reader refuses (a missing
slice) and a store the server refuses.

    python benchmarks/bench_pacs.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
T1 = SHARED / "data" / "mri" / "tcga-du-7294" / "TCGA-DU-7294_t1_bet.nii.gz"


def _seconds(call) -> tuple[float, object]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def _error(call) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # the message a user reads
        return time.perf_counter() - start, str(exc)
    return time.perf_counter() - start, "(no error)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not T1.is_file():
        sys.exit(f"needs ../shared: {T1} not found")
    sys.path.insert(0, str(ROOT))
    from tests._orthanc import PASSWORD, USER, start_orthanc, stop_orthanc
    from tests.io.test_dicom import write_series

    work = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    server_info, process = start_orthanc(work)
    os.environ.update(DOMAINGEN_DICOMWEB_USER=USER, DOMAINGEN_DICOMWEB_PASSWORD=PASSWORD)
    os.environ["DOMAINGEN_DICOMWEB_SETTINGS"] = str(work / "none.json")
    from napari_domaingen.io import dicomweb as dw
    from napari_domaingen.io.dicom import read_series
    from napari_domaingen.io.dicomweb_cohort import pacs_cases
    from napari_domaingen.progress import run

    try:
        image = nib.load(str(T1))
        voxels = np.round(np.asarray(image.dataobj)).astype(np.int16)
        uid, files = write_series(work / "t1", voxels, image.affine, modality="MR", description="T1 axial",
                                  extra={"PatientID": "BENCH-PACS"})  # fmt: skip
        gap_uid, gap_files = write_series(work / "gap", voxels, image.affine, modality="MR", description="T1 gap",
                                          extra={"PatientID": "BENCH-GAP"})  # fmt: skip
        server_info.upload([*files, *gap_files[:70], *gap_files[71:]])
        server = dw.server_from(server_info.url)
        study = dw.find_studies(server, patient_id="BENCH-PACS")[0].uid
        first, again, folder = [], [], []
        for repeat in range(args.repeats):
            os.environ["DOMAINGEN_DICOMWEB_CACHE"] = str(work / f"cache{repeat}")

            def open_series():
                return read_series(run(dw.get_series(server, study, uid, len(files))))

            seconds, got = _seconds(open_series)
            first.append(seconds)
            again.append(_seconds(open_series)[0])
            seconds, local = _seconds(lambda: read_series(work / "t1"))
            folder.append(seconds)
            same = np.array_equal(got.data, local.data) and np.array_equal(got.display_affine, local.display_affine)
        median = statistics.median
        print(f"series: {len(files)} images of {voxels.shape[0]} x {voxels.shape[1]}, int16; medians of {args.repeats}")
        print(f"  first open (retrieve + read) {median(first):.2f} s = {median(first) / median(folder):.2f} x folder")
        print(f"  reopen from the cache        {median(again):.2f} s = {median(again) / median(folder):.2f} x folder")
        print(f"  read the files from a folder {median(folder):.2f} s")
        print(f"  retrieved voxels and affine identical to the folder's: {same}")
        gap_study = dw.find_studies(server, patient_id="BENCH-GAP")[0].uid
        cases = {
            "server down": lambda: dw.find_studies(dw.server_from("http://127.0.0.1:9/dicom-web")),
            "query matching nothing": lambda: pacs_cases(f"dicomweb+{server.url}?PatientID=NOBODY"),
            "series the reader refuses": lambda: read_series(run(dw.get_series(server, gap_study, gap_uid))),
            "store refused": lambda: dw.send(server, files[:1], study_uid=gap_study),
        }
        print("bad cases (seconds to the one-line message):")
        for name, call in cases.items():
            seconds, message = _error(call)
            print(f"  {name:<26} {seconds:5.2f} s  {message[:150]}")
        os.environ["DOMAINGEN_DICOMWEB_PASSWORD"] = "wrong"
        seconds, message = _error(lambda: dw.find_studies(dw.server_from(server_info.url)))
        print(f"  {'wrong password':<26} {seconds:5.2f} s  {message[:150]}")
    finally:
        stop_orthanc(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
