"""Enhanced (multi-frame) DICOM: real single-frame series written with pydicom (``write_series``), converted to one
Legacy Converted Enhanced MR/CT file with highdicom, must read as exactly the series' Volume; broken or unstackable
multi-frame files and non-image objects (DICOM-SEG) are refused or left out of listings.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MultiFrameGrayscaleWordSecondaryCaptureImageStorage, generate_uid

from napari_domaingen.io.dicom import format_info, info, list_series, read_series
from napari_domaingen.io.errors import VolumeReadError

from .._oblique import oblique_affine
from ..conftest import shared_file
from .test_dicom import _LPS, BRATS_T1_PATH, CT_PATH, _crop, _synthetic_voxels, corner_error_mm, write_series

AFFINE_TOL_MM = 1e-4


@pytest.fixture(autouse=True)
def _quiet_highdicom():
    """highdicom's converter logs every attribute it cannot fill in; not useful here."""
    logger = logging.getLogger("highdicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def enhanced_from_series(files: list[Path], path: Path, modality: str = "MR") -> Path:
    """Convert a single-frame series into one Legacy Converted Enhanced MR/CT file at ``path`` (same description)."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage

    datasets = [pydicom.dcmread(f) for f in files]
    convert = LegacyConvertedEnhancedCTImage if modality == "CT" else LegacyConvertedEnhancedMRImage
    enhanced = convert(datasets, generate_uid(), 7, generate_uid(), 1)
    enhanced.SeriesDescription = datasets[0].SeriesDescription
    path.parent.mkdir(parents=True, exist_ok=True)
    enhanced.save_as(path, enforce_file_format=True)
    return path


def reframe(path: Path, order: list[int], edit=None) -> Path:
    """Rewrite a multi-frame file keeping the frames ``order`` (0-based; repeats allowed), items and pixels alike.

    ``edit(position, item)`` may change the per-frame item of each new frame.
    """
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    items = [copy.deepcopy(ds.PerFrameFunctionalGroupsSequence[n]) for n in order]
    if edit is not None:
        for position, item in enumerate(items):
            edit(position, item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.NumberOfFrames = len(order)
    ds.PixelData = np.ascontiguousarray(pixels[order]).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def assert_same_volume(multiframe, series) -> None:
    assert multiframe.data.shape == series.data.shape
    assert multiframe.data.dtype == series.data.dtype
    assert np.array_equal(multiframe.data, series.data)
    assert corner_error_mm(multiframe.display_affine, series.display_affine, series.data.shape) <= AFFINE_TOL_MM
    assert multiframe.name == series.name


def _series_and_enhanced(tmp_path: Path, voxels: np.ndarray, affine: np.ndarray, modality: str = "MR", **kwargs):
    _, files = write_series(tmp_path / "series", voxels, affine, modality=modality, **kwargs)
    path = enhanced_from_series(files, tmp_path / "enhanced" / "volume.dcm", modality)
    return read_series(tmp_path / "series"), path


# ------------------------------------------------------------------------------------------ same as a series


def test_enhanced_mr_reads_like_its_series(tmp_path):
    image = _crop(shared_file(*BRATS_T1_PATH), (slice(100, 132), slice(90, 122), slice(60, 76)))
    series_volume, path = _series_and_enhanced(tmp_path, np.asarray(image.dataobj), image.affine)
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    for source in (path, path.parent):  # the file itself, or its folder
        volume = read_series(source)
        assert_same_volume(volume, series_volume)
        assert volume.source.dicom_series_uid == uid
    (series,) = list_series(path.parent)
    assert series.multiframe and series.files == [path]
    assert (series.columns, series.rows, series.n_slices) == (32, 32, 16)
    assert series.spacing == pytest.approx(tuple(reversed(image.header.get_zooms())), abs=1e-6)
    assert series.orientation == "LPS" and series.sop_class == "Legacy Converted Enhanced MR Image Storage"
    assert_same_volume(read_series(series), series_volume)


def test_enhanced_ct_keeps_hounsfield_units(tmp_path):
    image = _crop(shared_file(*CT_PATH), (slice(110, 142), slice(110, 142), slice(50, 62)))
    series_volume, path = _series_and_enhanced(
        tmp_path, np.asarray(image.dataobj), image.affine, modality="CT", intercept=-1024
    )
    ds = pydicom.dcmread(path)
    assert "PixelValueTransformationSequence" in ds.SharedFunctionalGroupsSequence[0]
    volume = read_series(path)
    assert_same_volume(volume, series_volume)
    assert volume.data.dtype == np.int16
    assert int(ds.pixel_array.min()) - 1024 == int(volume.data.min())  # stored + RescaleIntercept: HU


@pytest.mark.parametrize("codes", ["PSR", "ILA"])
def test_oblique_enhanced_reads_like_its_series(tmp_path, codes):
    voxels = _synthetic_voxels((16, 12, 8))
    series_volume, path = _series_and_enhanced(tmp_path, voxels, oblique_affine(codes))
    assert_same_volume(read_series(path), series_volume)


def test_frames_are_ordered_by_position_not_frame_number(tmp_path):
    voxels = _synthetic_voxels((16, 12, 9))
    series_volume, path = _series_and_enhanced(tmp_path, voxels, oblique_affine("LPS"))
    shuffled = [int(n) for n in np.random.default_rng(4).permutation(9)]
    reframe(path, shuffled)
    assert_same_volume(read_series(path), series_volume)


# ------------------------------------------------------------------------------------------------- refused


def test_missing_frame_is_reported(tmp_path):
    voxels = _synthetic_voxels((16, 12, 10))
    _, path = _series_and_enhanced(tmp_path, voxels, np.diag([1.0, 1.0, 1.5, 1.0]))
    reframe(path, [n for n in range(10) if n != 4])
    with pytest.raises(VolumeReadError, match="missing slice") as err:
        read_series(path)
    message = str(err.value)
    assert str(path) in message and "between positions" in message and "frames " in message


def test_two_orientations_are_reported(tmp_path):
    voxels = _synthetic_voxels((16, 16, 8))
    sagittal = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    _, files = write_series(
        tmp_path / "series", voxels, np.eye(4), modality="MR", orientations=dict.fromkeys(range(4, 8), sagittal)
    )
    path = enhanced_from_series(files, tmp_path / "enhanced" / "two.dcm")
    with pytest.raises(VolumeReadError, match="2 orientations") as err:
        read_series(path)
    assert "cannot form one volume" in str(err.value) and str(path) in str(err.value)
    (series,) = list_series(path.parent)
    assert series.orientation == "mixed" and series.n_slices == 8


def test_temporal_positions_at_one_position_are_reported(tmp_path):
    _, path = _series_and_enhanced(tmp_path, _synthetic_voxels((8, 8, 5)), np.eye(4))

    def phase(position: int, item: Dataset) -> None:
        item.FrameContentSequence[0].TemporalPositionIndex = 1 + position // 5

    reframe(path, list(range(5)) * 2, edit=phase)  # the same 5 positions at two times
    with pytest.raises(VolumeReadError, match=r"only 5 position\(s\).*2 temporal positions \(TemporalPositionIndex"):
        read_series(path)


def test_frame_without_plane_position_is_reported(tmp_path):
    _, path = _series_and_enhanced(tmp_path, _synthetic_voxels((8, 8, 5)), np.eye(4))

    def drop(position: int, item: Dataset) -> None:
        if position == 2:
            del item.PlanePositionSequence

    reframe(path, list(range(5)), edit=drop)
    with pytest.raises(VolumeReadError, match=r"1 of 5 frames \(frame 3\) have no plane position"):
        read_series(path)


def test_several_multiframe_files_in_one_series_are_refused(tmp_path):
    _, path = _series_and_enhanced(tmp_path, _synthetic_voxels((8, 8, 6)), np.eye(4))
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(path.with_name("second.dcm"), enforce_file_format=True)
    (series,) = list_series(path.parent)
    assert len(series.files) == 2 and series.n_slices == 12
    with pytest.raises(VolumeReadError, match="2 multi-frame file"):
        read_series(path.parent)


def _multiframe_file(path: Path, frames: int = 4, samples: int = 1, groups: bool = True) -> Path:
    """A small multi-frame secondary capture: grey or RGB, with or without functional groups."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = 6, 5
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
    else:
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
    ds.PixelRepresentation = 0
    dtype = np.uint8 if samples == 3 else np.uint16
    ds.PixelData = np.arange(frames * 6 * 5 * samples, dtype=dtype).tobytes()
    if groups:
        shared = Dataset()
        shared.PlaneOrientationSequence = Sequence([Dataset()])
        shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        shared.PixelMeasuresSequence = Sequence([Dataset()])
        shared.PixelMeasuresSequence[0].PixelSpacing = [1, 1]
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        items = []
        for n in range(frames):
            item = Dataset()
            item.PlanePositionSequence = Sequence([Dataset()])
            item.PlanePositionSequence[0].ImagePositionPatient = [0, 0, 2 * n]
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_grey_multiframe_with_functional_groups_reads(tmp_path):
    volume = read_series(_multiframe_file(tmp_path / "grey" / "mf.dcm"))
    assert volume.data.shape == (4, 6, 5) and volume.spacing == pytest.approx((2.0, 1.0, 1.0))
    assert np.array_equal(volume.data[:, ::-1, ::-1].ravel(), np.arange(120))  # IOP LPS axes → display RAS flips


def test_colour_multiframe_is_refused(tmp_path):
    path = _multiframe_file(tmp_path / "rgb" / "mf.dcm", samples=3)
    with pytest.raises(VolumeReadError, match=r"colour multi-frame DICOM images \(RGB, 4 frames\)") as err:
        read_series(path)
    assert str(path) in str(err.value)


def test_classic_multiframe_without_geometry_is_refused(tmp_path):
    path = _multiframe_file(tmp_path / "cine" / "mf.dcm", groups=False)
    (series,) = list_series(path.parent)
    assert series.n_slices == 4 and series.orientation == "none"
    with pytest.raises(VolumeReadError, match="without per-frame geometry") as err:
        read_series(path)
    assert "Multi-frame Grayscale Word Secondary Capture" in str(err.value)


# ------------------------------------------------------------------------------------------ listing, info, SEG


def test_folder_with_a_multiframe_file_and_a_series_lists_both(tmp_path):
    voxels = _synthetic_voxels((16, 12, 6))
    _, files = write_series(tmp_path / "enhanced_src", voxels, _LPS @ np.diag([0.5, 0.6, 2.0, 1.0]), modality="MR")
    study = tmp_path / "study"
    path = enhanced_from_series(files, study / "enhanced.dcm")
    single_uid, _ = write_series(study / "single", voxels[:, :, :3], np.eye(4), description="single", seed=2)
    single, enhanced = list_series(study)  # ordered by series number: 1 (single), 7 (enhanced)
    assert single.uid == single_uid and not single.multiframe and single.n_slices == 3
    assert enhanced.files == [path] and enhanced.n_slices == 6
    assert enhanced.spacing == pytest.approx((2.0, 0.6, 0.5)) and enhanced.orientation == "LPS"
    with pytest.raises(VolumeReadError, match=r"contains 2 series.*\(single, 3 files\).*\(test series, 6 frames\)"):
        read_series(study)
    facts = {f["format"]: f for f in info(study)}
    multi = facts["DICOM multi-frame"]
    assert multi["dims"] == (16, 12, 6) and multi["n_frames"] == 6 and multi["n_files"] == 1
    assert multi["spacing"] == pytest.approx((0.5, 0.6, 2.0)) and multi["orientation"] == "LPS"
    (one,) = info(path)
    assert one["format"] == "DICOM multi-frame file" and one["dims"] == (16, 12, 6)
    assert one["spacing"] == pytest.approx((0.5, 0.6, 2.0)) and one["orientation"] == "LPS"
    assert "spacing: 0.5 × 0.6 × 2 mm" in format_info([one])


def test_segmentation_objects_are_not_listed_as_images(tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    voxels = _synthetic_voxels((8, 8, 4))
    uid, files = write_series(tmp_path / "study", voxels, np.eye(4), modality="MR")
    sources = [pydicom.dcmread(f) for f in files]
    for ds in sources:  # patient/study attributes a SEG copies from its source images
        ds.PatientBirthDate, ds.PatientSex, ds.StudyID, ds.AccessionNumber = "", "O", "1", ""
        ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20240101", "120000", ""
    mask = np.zeros((4, 8, 8), dtype=bool)
    mask[1:3, 2:6, 2:6] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=generate_uid(),
        series_number=9,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg_path = tmp_path / "study" / "seg.dcm"
    seg.save_as(seg_path)
    (series,) = list_series(tmp_path / "study")  # the SEG (Rows, Columns, PixelData, 2 frames) is left out
    assert series.uid == uid and series.n_slices == 4
    assert read_series(tmp_path / "study").data.shape == (4, 8, 8)
    with pytest.raises(VolumeReadError, match="is a DICOM Segmentation Storage .SEG. object, not an image series"):
        read_series(seg_path)
    only = tmp_path / "only_seg"
    only.mkdir()
    seg_path.rename(only / "seg.dcm")
    with pytest.raises(VolumeReadError, match="no DICOM images found"):
        list_series(only)


def test_single_frame_enhanced_image_loads_as_2d(tmp_path):
    volume = read_series(_multiframe_file(tmp_path / "one" / "mf.dcm", frames=1))
    assert volume.data.shape == (1, 6, 5) and volume.name.endswith("(2D)")
    assert volume.spacing == pytest.approx((1.0, 1.0, 1.0))
