"""DICOM Segmentations: labels on a real DICOM series (built from a TCGA crop) → SEG → highdicom and our reader."""

from __future__ import annotations

import re

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_domaingen.io.dicom import read_series
from napari_domaingen.io.dicom_seg import is_dicom_seg, read_dicom_seg, segment_codes, write_dicom_seg
from napari_domaingen.io.errors import VolumeReadError, VolumeWriteError
from napari_domaingen.io.geometry import voxel_to_world
from napari_domaingen.io.label_table import LabelTable
from napari_domaingen.io.nifti import volume_from_image

from .._oblique import oblique_affine
from ..conftest import shared_file
from .test_dicom import write_series

NAMES = {1: "necrotic tumour core", 2: "peritumoral edema", 4: "enhancing tumour"}


def _tcga_crop(size=(36, 30, 24)):
    """T1 voxels and tumour labels (values 1, 2, 4 as in BraTS) of a crop around the TCGA tumour, file order."""
    folder = ("data", "mri", "tcga-du-7294")
    t1 = nib.load(shared_file(*folder, "TCGA-DU-7294_t1_bet.nii.gz"))
    seg = np.asarray(nib.load(shared_file(*folder, "tcga-du-7294_seg-fusion-simple.nii.gz")).dataobj)
    centre = [int(np.mean(axis)) for axis in np.nonzero(seg)]
    box = tuple(slice(c - n // 2, c - n // 2 + n) for c, n in zip(centre, size))
    labels = seg[box].astype(np.uint8)
    labels[labels == 2] = 4
    labels[(labels == 0) & (np.asarray(t1.dataobj)[box] > 0) & (np.arange(size[2]) % 5 == 0)] = 2  # a 3rd class
    return np.asarray(t1.dataobj)[box].astype(np.int16), labels


@pytest.fixture(scope="module")
def oblique_case(tmp_path_factory):
    """A real oblique, anisotropic series (LPS-like order) and its labels as a display-order Volume."""
    folder = tmp_path_factory.mktemp("dicom")
    voxels, labels = _tcga_crop()
    affine = oblique_affine("LPS")
    uid, files = write_series(folder / "series", voxels, affine, modality="MR", description="T1 oblique")
    volume = volume_from_image(nib.Nifti1Image(labels, affine), "labels", as_label=True)
    return folder / "series", uid, files, volume


def test_seg_references_the_series_and_round_trips_labels_names_and_world_coordinates(oblique_case, tmp_path):
    series, uid, files, labels = oblique_case
    table = LabelTable.from_names(
        [1, 2, 4], NAMES, {4: (250, 200, 0)}, source_series_uid=uid, algorithm={"name": "MaskGen", "version": "f" * 64}
    )
    out = write_dicom_seg(tmp_path / "seg.dcm", labels.data, series, table, labels_affine=labels.display_affine)
    assert is_dicom_seg(out) and not is_dicom_seg(files[0])

    seg = hd.seg.segread(out)  # highdicom reads it back
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert list(seg.segment_numbers) == [1, 2, 3]
    descriptions = [seg.get_segment_description(n) for n in (1, 2, 3)]
    assert [d.segment_label for d in descriptions] == [NAMES[1], NAMES[2], NAMES[4]]
    assert [d.tracking_id for d in descriptions] == ["label value 1", "label value 2", "label value 4"]
    assert [d.segmented_property_type.meaning for d in descriptions] == ["Necrosis", "Edema", "Neoplasm"]
    assert descriptions[0].algorithm_type.value == "AUTOMATIC"
    assert descriptions[0].algorithm_identification[0].AlgorithmName == "MaskGen"
    assert descriptions[0].algorithm_identification[0].AlgorithmVersion == "f" * 64
    # every instance of the series is referenced, and no other
    instances = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid and referenced == instances
    assert seg.StudyInstanceUID == pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID

    back = read_dicom_seg(out)  # our reader: identical labels at identical world coordinates
    assert back.is_label and np.array_equal(back.data, labels.data)
    idx = np.array([[0, 0, 0], [s - 1 for s in back.data.shape], [3, 5, 7]])
    np.testing.assert_allclose(
        voxel_to_world(back.display_affine, idx), voxel_to_world(labels.display_affine, idx), atol=1e-3
    )
    assert back.label_table.names() == NAMES and back.label_table.colours()[4] == pytest.approx((250, 200, 0), abs=2)
    assert back.label_table.source_series_uid == uid and back.source.dicom_series_uid == uid
    assert back.label_table.algorithm == {"name": "MaskGen", "version": "f" * 64}


def test_classes_the_labels_do_not_contain_stay_listed_as_empty_segments(oblique_case, tmp_path):
    series, uid, _files, labels = oblique_case
    data = np.where(labels.data == 4, 0, labels.data).astype(np.uint8)  # the model found no enhancing tumour
    table = LabelTable.from_names([0, 1, 2, 4], NAMES, source_series_uid=uid)
    out = write_dicom_seg(tmp_path / "seg.dcm", data, series, table)
    seg = hd.seg.segread(out)
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == list(NAMES.values())
    back = read_dicom_seg(out)
    assert np.array_equal(back.data, data) and back.label_table.names() == NAMES


def test_drawn_labels_are_manual_and_the_series_volume_matches(oblique_case, tmp_path):
    series, uid, _files, labels = oblique_case
    reference = read_series(series)  # the labels are on the grid our reader gives the series
    np.testing.assert_allclose(reference.display_affine, labels.display_affine, atol=1e-4)
    out = write_dicom_seg(tmp_path / "drawn.dcm", labels.data, series)  # no table: default names, MANUAL
    seg = hd.seg.segread(out)
    assert seg.get_segment_description(1).algorithm_type.value == "MANUAL"
    assert seg.get_segment_description(3).segment_label == "class 4"
    assert seg.get_segment_description(3).segmented_property_type.meaning == "Tissue"
    assert np.array_equal(read_dicom_seg(out).data, labels.data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", "not on the reference series' grid: 23 × 30 × 36 voxels, but T1 oblique has 24 × 30 × 36"),
        ("shift", "corners up to 2 mm away"),
        ("big", "label value 70000 is beyond what DICOM-SEG allows"),
        ("negative", "label value -1 is negative"),
        ("empty", "the labels are empty (every voxel is 0) and name no class"),
        ("series", "the labels were made on series 1.2.3, but"),
        ("float", "labels must be integers"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_written(oblique_case, tmp_path, change, message):
    series, _uid, _files, labels = oblique_case
    data, affine, table = labels.data, labels.display_affine.copy(), None
    if change == "shape":
        data = data[:-1]
    elif change == "shift":
        affine[:3, 3] += [0.0, 2.0, 0.0]
    elif change == "big":
        data = data.astype(np.int32)
        data[0, 0, 0] = 70000
    elif change == "negative":
        data = data.astype(np.int16)
        data[0, 0, 0] = -1
    elif change == "empty":
        data = np.zeros_like(data)
    elif change == "series":
        table = LabelTable.from_names([1], source_series_uid="1.2.3")
    elif change == "float":
        data = data.astype(np.float32)
    out = tmp_path / "seg.dcm"
    with pytest.raises(VolumeWriteError, match=re.escape(message)):
        write_dicom_seg(out, data, series, table, labels_affine=affine)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_two_series_uses_the_one_the_labels_came_from(oblique_case, tmp_path):
    series, uid, files, labels = oblique_case
    both = tmp_path / "study"
    other_uid, _ = write_series(both / "other", np.zeros((36, 30, 24), np.int16), oblique_affine("LPS"), seed=5)
    for f in files:
        (both / "t1").mkdir(parents=True, exist_ok=True)
        (both / "t1" / f.name).write_bytes(f.read_bytes())
    made_on = LabelTable.from_names([1, 2, 4], NAMES, source_series_uid=uid)
    out = write_dicom_seg(tmp_path / "seg.dcm", labels.data, both, made_on)
    assert hd.seg.segread(out).ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    with pytest.raises(VolumeReadError, match="contains 2 series"):  # nothing says which: the user must choose
        write_dicom_seg(tmp_path / "other.dcm", labels.data, both)
    missing = LabelTable.from_names([1], source_series_uid="9.9.9")
    with pytest.raises(VolumeWriteError, match="does not hold series 9.9.9, the series the labels were made on"):
        write_dicom_seg(tmp_path / "missing.dcm", labels.data, both, missing)
    assert other_uid != uid and not (tmp_path / "other.dcm").exists() and not (tmp_path / "missing.dcm").exists()


def test_not_a_segmentation_is_a_clear_read_error(oblique_case, tmp_path):
    _series, _uid, files, _labels = oblique_case
    with pytest.raises(VolumeReadError, match="not a readable DICOM Segmentation"):
        read_dicom_seg(files[0])


def test_segment_codes_follow_the_class_name():
    assert segment_codes("White matter")[1].meaning == "White Matter"
    assert segment_codes("GM")[1].meaning == "Gray Matter"
    assert segment_codes("CSF")[1].meaning == "Cerebrospinal Fluid"
    assert segment_codes("class 3")[0].meaning == "Tissue" and segment_codes("class 3")[1].meaning == "Tissue"
    assert segment_codes("gemstone")[1].meaning == "Tissue"  # "gm" only as a word
