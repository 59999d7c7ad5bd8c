"""The single-case jobs (core/jobs): options checked when a job is built, the output guard before any work (inputs
never written over, nothing added to an input DICOM series), a model loaded once for many cases, and statistics of
a DICOM-SEG that covers only some slices of its series."""

from __future__ import annotations

import hashlib
import shutil
from collections import OrderedDict

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.cli import main
from napari_domaingen.core.batch_jobs import job_named
from napari_domaingen.core.features import FeatureSettings
from napari_domaingen.core.jobs import (
    CompareJob,
    CompareSettings,
    ExportJob,
    FeaturesJob,
    SegmentJob,
    SegmentOptions,
    SegmentRunner,
    SegmentSettings,
    StatsJob,
    run_compare,
    run_export,
    run_segment,
)
from napari_domaingen.io.output_guard import OutputError
from napari_domaingen.progress import run

from ..conftest import tiny_erm_model
from ..io.test_dicom import write_series

AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_case(folder, name="case"):
    """``<name>_t1.nii.gz`` (20×20×12, a bright box on a gradient) and ``<name>_seg.nii.gz`` (values 0/1/2)."""
    folder.mkdir(parents=True, exist_ok=True)
    i, j, k = np.meshgrid(np.arange(20), np.arange(20), np.arange(12), indexing="ij")
    image = (10 * i + 3 * j + 7 * k).astype(np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[6:14, 6:14, 4:8] = 1
    labels[8:12, 8:12, 5:7] = 2
    image[labels > 0] += 400
    nib.save(nib.Nifti1Image(image, AFFINE), folder / f"{name}_t1.nii.gz")
    nib.save(nib.Nifti1Image(labels, AFFINE), folder / f"{name}_seg.nii.gz")
    return folder / f"{name}_t1.nii.gz", folder / f"{name}_seg.nii.gz"


def tiny_model(path):
    """An untrained ERM model (base 4, 2 levels, 16³ windows): fast, and a real model file."""
    return tiny_erm_model(path, spacing=(2.0, 1.5, 1.5))


@pytest.fixture
def count_loads(monkeypatch):
    """Counts segmentation-model loads (the per-process model cache starts empty)."""
    from napari_domaingen.core import segment

    loads = []
    real = segment.load_model
    monkeypatch.setattr(segment, "_MODELS", OrderedDict())
    monkeypatch.setattr(segment, "load_model", lambda path, device: loads.append(path) or real(path, device))
    return loads


# ------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FeaturesJob("a.nii.gz", "f.nii.gz", FeatureSettings(overlap=1.5)), "overlap must be in [0, 1)"),
        (lambda: FeaturesJob("a.nii.gz", "f.nii.gz", FeatureSettings(layer="last")), "layer must be one of"),
        (lambda: FeaturesJob("a.nii.gz", "f.png"), "must end in .nii or .nii.gz"),
        (lambda: CompareSettings(mode="hsv"), "colour mode must be one of pca, channels"),
        (lambda: SegmentOptions("m.pt", SegmentSettings(feature_mode="fast")), "feature mode must be one of"),
        (lambda: SegmentJob("a.nii.gz", "s.nii.gz", SegmentOptions("m.pt"), stats="stats.txt"), "must end in .csv"),
        (lambda: StatsJob("labels.png", "s.csv"), "labels must be a NIfTI file"),
        (lambda: ExportJob("l.nii.gz", "series.zip", "seg.nii"), "must end in .dcm"),
        (lambda: job_named("segment", {"image": "T1"}, FeatureSettings()), "needs SegmentOptions"),
    ],
)
def test_a_bad_option_fails_when_the_job_is_built(make, message):
    with pytest.raises((ValueError, TypeError), match=None) as error:
        make()
    assert message in str(error.value)


# ------------------------------------------------------------------------------------------ output guard


def test_stats_and_segment_refuse_to_write_over_their_inputs(tmp_path, capsys):
    image, labels = write_case(tmp_path)
    before = sha256(labels), sha256(image)
    assert main(["stats", str(labels), "--out", str(labels)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert main(["stats", str(labels), "--image", str(image), "--out", str(image)]) == 2
    model = tiny_model(tmp_path / "erm.pt")
    assert main(["segment", str(image), "--model", str(model), "--out", str(image)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    # the labels' sidecars are outputs too: an input named like one is refused
    with pytest.raises(OutputError, match="would overwrite the input"):
        run(run_segment(SegmentJob(labels, tmp_path / "case_seg.nii.gz", SegmentOptions(model))))
    assert (sha256(labels), sha256(image)) == before


def test_export_refuses_to_add_a_file_to_its_reference_series(tmp_path, capsys):
    image, labels = write_case(tmp_path / "nifti")
    _uid, files = write_series(tmp_path / "series", nib.load(image).get_fdata().astype(np.int16), AFFINE)
    files[1] = files[1].rename(tmp_path / "series" / "IM0002.dcm")
    before = {p.name: sha256(p) for p in files}
    inside, new = files[1], tmp_path / "series" / "IM0099.dcm"
    assert main(["export", str(labels), "--reference", str(tmp_path / "series"), "--out", str(inside)]) == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    # a file of the series (or a zip) as the reference: its folder counts
    with pytest.raises(OutputError, match="would overwrite the input"):
        run(run_export(ExportJob(labels, inside, inside)))
    with pytest.raises(OutputError, match="inside the input folder"):
        run(run_export(ExportJob(labels, files[0], new)))
    zipped = shutil.make_archive(str(tmp_path / "series"), "zip", tmp_path / "series")
    with pytest.raises(OutputError, match="inside the input folder"):
        run(run_export(ExportJob(labels, zipped, tmp_path / "beside_the_zip.dcm")))
    assert not new.exists() and {p.name: sha256(p) for p in files} == before
    seg = tmp_path / "nifti" / "seg.dcm"
    assert main(["export", str(labels), "--reference", str(files[0]), "--out", str(seg)]) == 0
    assert seg.is_file()


def test_compare_may_write_beside_its_inputs_but_not_over_them(tmp_path, monkeypatch):
    image, _labels = write_case(tmp_path)
    clash = tmp_path / "cosine_similarity.nii.gz"
    shutil.copy(image, clash)
    with pytest.raises(OutputError, match="would overwrite the input"):  # its cosine map would replace B
        run(run_compare(CompareJob(image, clash, tmp_path)))
    # a folder holding the inputs is fine when no output is an input: the guard lets it through
    from napari_domaingen.core.jobs import base

    base.guard(CompareJob(image, clash, tmp_path / "elsewhere").outputs, [image, clash])
    base.guard(CompareJob(image, _labels, tmp_path).outputs, [image, _labels])
    # two inputs of one file name would have one rendering written over the other: refused too
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(image, other / image.name)
    with pytest.raises(OutputError, match="the same file is given for two outputs"):
        run(run_compare(CompareJob(image, other / image.name, tmp_path / "cmp")))
    series = tmp_path / "series"
    write_series(series, nib.load(image).get_fdata().astype(np.int16), AFFINE)
    with pytest.raises(OutputError, match="inside the input folder"):
        run(run_compare(CompareJob(series, image, series)))


# ------------------------------------------------------------------------------------------ model once


def test_a_runner_loads_its_model_once_for_many_cases(tmp_path, count_loads):
    model = tiny_model(tmp_path / "erm.pt")
    runner = SegmentRunner(SegmentOptions(model, SegmentSettings(device="cpu")))
    for n in range(3):
        image, _ = write_case(tmp_path / f"c{n}", f"c{n}")
        result = run(runner.run(SegmentJob(image, tmp_path / f"c{n}" / "out.nii.gz", runner.options)))
        assert result.written[0].is_file() and result.lines[0].startswith("wrote ")
    # a plain run_segment in the same process reuses it as well, until the file changes
    image = tmp_path / "c0" / "c0_t1.nii.gz"
    run(run_segment(SegmentJob(image, tmp_path / "again.nii.gz", SegmentOptions(model, SegmentSettings(device="cpu")))))
    assert len(count_loads) == 1
    tiny_model(model)
    run(run_segment(SegmentJob(image, tmp_path / "again.nii.gz", SegmentOptions(model, SegmentSettings(device="cpu")))))
    assert len(count_loads) == 2


# ------------------------------------------------------------------------------------------ partial SEG


def test_stats_of_a_seg_covering_some_slices_of_its_series(tmp_path, capsys):
    image, labels = write_case(tmp_path / "nifti")
    voxels = nib.load(image).get_fdata().astype(np.int16)
    _uid, files = write_series(tmp_path / "series", voxels, AFFINE, modality="MR")
    part = tmp_path / "part"  # the slices holding labels only, as dcmqi writes a SEG without empty frames
    part.mkdir()
    for k in range(4, 8):
        shutil.copy(files[k], part / files[k].name)
    cut = nib.load(labels).slicer[:, :, 4:8]
    nib.save(nib.Nifti1Image(np.asarray(cut.dataobj), cut.affine), tmp_path / "cut_seg.nii.gz")
    seg = tmp_path / "partial.dcm"
    assert main(["export", str(tmp_path / "cut_seg.nii.gz"), "--reference", str(part), "--out", str(seg)]) == 0
    capsys.readouterr()

    out, full = tmp_path / "partial.csv", tmp_path / "full.csv"
    assert main(["stats", str(seg), "--image", str(tmp_path / "series"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "covers 4 of the 12 slices" in printed and f"wrote {out}: 2 classes" in printed
    assert main(["stats", str(labels), "--image", str(image), "--out", str(full)]) == 0
    rows = [line.split(",")[2:] for line in out.read_text().splitlines()[1:]]
    expected = [line.split(",")[2:] for line in full.read_text().splitlines()[1:]]
    assert rows == expected  # voxels, volume, mean, std of every class: the same as on the whole grid
