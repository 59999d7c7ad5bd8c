"""Cohort input: a folder of case folders or a CSV manifest, read from headers only."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.io.cohort import CohortError, canonical_contrast, read_cohort


def _volume(path, shape=(6, 7, 8), zooms=(1.0, 1.0, 2.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.diag([*zooms, 1.0])), path)
    return path


def test_a_folder_of_case_folders_is_read_by_contrast(tmp_path):
    _volume(tmp_path / "sub-02" / "sub-02_T1w.nii.gz")
    _volume(tmp_path / "sub-02" / "sub-02_FLAIR.nii.gz")
    _volume(tmp_path / "BraTS-1" / "BraTS-1-t2f.nii.gz")
    _volume(tmp_path / "BraTS-1" / "BraTS-1-t1n.nii.gz")
    _volume(tmp_path / "BraTS-1" / "BraTS-1-seg.nii.gz")
    _volume(tmp_path / "twice" / "a_t1.nii.gz")
    _volume(tmp_path / "twice" / "b_t1.nii.gz")
    (tmp_path / ".hidden").mkdir()
    cohort = read_cohort(tmp_path)
    assert [c.name for c in cohort.cases] == ["BraTS-1", "sub-02", "twice"]
    brats, sub, twice = cohort.cases
    assert set(brats.volumes) == {"T1", "FLAIR", "labels"} and set(sub.volumes) == {"T1", "FLAIR"}
    assert brats.path_of("FLAIR").endswith("BraTS-1-t2f.nii.gz")
    assert twice.problems and "two T1 volumes" in twice.problems[0]
    with pytest.raises(ValueError, match="case sub-02 has no T2 volume .it has T1, FLAIR."):
        sub.path_of("T2")
    text = cohort.describe()
    assert "6×7×8 @ 1×1×2 mm" in text and "problem: two T1 volumes" in text


def test_a_manifest_gives_paths_by_contrast(tmp_path):
    _volume(tmp_path / "data" / "one.nii.gz")
    _volume(tmp_path / "data" / "two.nii.gz")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case,t1,Flair\nA,data/one.nii.gz,data/two.nii.gz\nB,data/missing.nii.gz,\n")
    cohort = read_cohort(manifest)
    a, b = cohort.cases
    assert a.path_of("T1") == str(tmp_path / "data" / "one.nii.gz") and "FLAIR" in a.volumes
    assert b.volumes == {} and "T1: " in b.problems[0] and "no such file" in b.problems[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case,t1,weird\nA,x,y\n", "unknown column.s. weird; allowed: case, T1, T1c, T2, FLAIR, labels, image, label"),
        ("case,t1\nA,x\nA,y\n", "case 'A' appears twice .rows 2 and 3.; names must be unique"),
        ("subject,t1\nA,x\n", "needs a 'case' column"),
        ("case,t1\n", "the manifest has no rows"),
    ],
)
def test_bad_manifests_say_what_is_wrong(tmp_path, text, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(CohortError, match=message):
        read_cohort(manifest)


def test_empty_folders_and_unknown_contrasts_are_refused(tmp_path):
    with pytest.raises(CohortError, match="contains no case folders"):
        read_cohort(tmp_path)
    with pytest.raises(CohortError, match="no such folder or CSV manifest"):
        read_cohort(tmp_path / "nothing")
    assert canonical_contrast("t1C") == "T1c" and canonical_contrast("flair") == "FLAIR"
    with pytest.raises(ValueError, match="unknown contrast 'pd'"):
        canonical_contrast("pd")


@pytest.mark.parametrize("name", ["../../escaped_case", "/tmp/absolute", ".", "..", "a\\b", "tab\there"])
def test_a_manifest_case_name_that_could_leave_the_batch_folder_is_refused(tmp_path, name):
    _volume(tmp_path / "sub" / "t1.nii.gz")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f'case,T1\nfine,sub/t1.nii.gz\n"{name}",sub/t1.nii.gz\n')
    with pytest.raises(CohortError) as error:
        read_cohort(manifest)
    assert str(error.value).startswith(f"{manifest}: row 3: case name {name!r}")


def test_a_case_folder_with_a_control_character_is_flagged(tmp_path):
    _volume(tmp_path / "good" / "good_t1.nii.gz")
    _volume(tmp_path / "bad\x1bname" / "bad_t1.nii.gz")
    cohort = read_cohort(tmp_path)
    flagged = [case for case in cohort.cases if case.name != "good"]
    assert flagged and "control characters" in flagged[0].problems[-1]
    assert not next(case for case in cohort.cases if case.name == "good").problems
