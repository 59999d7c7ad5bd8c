"""DICOM series reading: real DICOM files written with pydicom from real and synthetic NIfTI volumes.

Every series is written slice by slice with shuffled random file names, so nothing can rely on file order.
The reference is the NIfTI volume the series was made from, read by ``read_nifti``: both must give the same
display-order voxels and the same display affine (world error at the 8 corners ≤ 1e-3 mm).
"""

from __future__ import annotations

import itertools
import uuid
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from napari_domaingen.io.dicom import DicomSeries, format_info, info, list_series, read_series
from napari_domaingen.io.errors import VolumeReadError
from napari_domaingen.io.geometry import voxel_to_world
from napari_domaingen.io.nifti import read_nifti, write_nifti

from .._oblique import oblique_affine
from ..conftest import shared_file

CT_PATH = ("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz")
BRATS_T1_PATH = ("data", "mri", "brats23-gli-00001-000", "BraTS-GLI-00001-000-t1n.nii.gz")
WORLD_TOL_MM = 1e-3
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------------ helpers


def _ds(values) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def write_series(
    folder: Path,
    voxels: np.ndarray,
    ras_affine: np.ndarray,
    *,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = 0.0,
    description: str = "test series",
    series_uid: str | None = None,
    series_number: int = 1,
    seed: int = 0,
    positions: dict[int, np.ndarray] | None = None,
    orientations: dict[int, np.ndarray] | None = None,
    extra: dict[str, object] | None = None,
) -> tuple[str, list[Path]]:
    """Write ``voxels`` (i, j, k) with RAS ``ras_affine`` as one DICOM file per k slice, in random order/names.

    Stored pixels are ``(value - intercept) / slope`` as int16 (they must be exact). ``positions`` /
    ``orientations`` override the ImagePositionPatient / ImageOrientationPatient of chosen slices; ``extra`` sets
    more attributes by keyword on every file (e.g. ``PatientID``, ``StudyInstanceUID``).
    Returns the SeriesInstanceUID and the files in slice (k) order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lps = _LPS @ np.asarray(ras_affine, dtype=float)
    column_spacing, row_spacing = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    iop = np.concatenate([lps[:3, 0] / column_spacing, lps[:3, 1] / row_spacing])
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()  # distinct UIDs, as DICOM expects (dciodvfy checks it)
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    rng = np.random.default_rng(seed)
    order = rng.permutation(voxels.shape[2])
    files: dict[int, Path] = {}
    for k in order:  # written in shuffled order under random names
        stored = (voxels[:, :, k].T.astype(np.float64) - intercept) / slope
        assert np.array_equal(stored, np.round(stored)), "test data must be exactly representable"
        stored = stored.astype(np.int16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.PatientID = "TEST-0001"
        ds.PatientName = "Test^Volume"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.Modality = modality
        ds.InstanceNumber = int(k) + 1
        ds.FrameOfReferenceUID = frame_uid
        position = lps[:3, 3] + k * lps[:3, 2]
        if positions and k in positions:
            position = positions[k]
        ds.ImagePositionPatient = _ds(position)
        ds.ImageOrientationPatient = _ds(orientations[k] if orientations and k in orientations else iop)
        ds.PixelSpacing = _ds([row_spacing, column_spacing])
        ds.SliceThickness = format_number_as_ds(float(np.linalg.norm(lps[:3, 2])))
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = format_number_as_ds(float(slope))
        ds.RescaleIntercept = format_number_as_ds(float(intercept))
        ds.PixelData = stored.tobytes()
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value)
        path = folder / f"{uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(k)).hex[:12]}"
        ds.save_as(path, enforce_file_format=True)
        files[int(k)] = path
    return series_uid, [files[k] for k in range(voxels.shape[2])]


def _save_nifti(path: Path, image: nib.Nifti1Image) -> Path:
    nib.save(image, str(path))
    return path


def _crop(path: Path, box: tuple[slice, slice, slice]) -> nib.Nifti1Image:
    image = nib.load(str(path))
    cropped = image.slicer[box]
    return nib.Nifti1Image(np.asarray(cropped.dataobj), cropped.affine)


def corner_error_mm(affine_a: np.ndarray, affine_b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest world-coordinate distance (mm) between two display affines at the 8 corners of ``shape``."""
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape[-3:]])), dtype=float)
    return float(np.linalg.norm(voxel_to_world(affine_a, corners) - voxel_to_world(affine_b, corners), axis=1).max())


def _assert_same_volume(nifti_path: Path, folder: Path) -> float:
    expected = read_nifti(nifti_path, as_label=False)
    volume = read_series(folder)
    assert volume.data.shape == expected.data.shape
    assert volume.data.dtype == expected.data.dtype
    assert np.array_equal(volume.data, expected.data)
    error = corner_error_mm(volume.display_affine, expected.display_affine, volume.data.shape)
    assert error <= WORLD_TOL_MM, error
    return error


def _synthetic_voxels(shape=(24, 20, 12), seed=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 3000, size=shape).astype(np.int16)


# ------------------------------------------------------------------------------------------ geometry, voxels


def test_real_ct_crop_matches_its_nifti(tmp_path):
    image = _crop(shared_file(*CT_PATH), (slice(96, 160), slice(100, 164), slice(40, 80)))
    nifti = _save_nifti(tmp_path / "ct_crop.nii.gz", image)
    write_series(tmp_path / "dicom", np.asarray(image.dataobj), image.affine, intercept=-1024)
    _assert_same_volume(nifti, tmp_path / "dicom")
    volume = read_series(tmp_path / "dicom")
    assert volume.spacing == pytest.approx((1.5, 0.95703119, 0.95703119), abs=1e-6)
    assert volume.data.min() < -500 < 500 < volume.data.max()  # air and bone in HU
    assert volume.name == "test series"


def test_real_brats_lps_crop_matches_its_nifti(tmp_path):
    image = _crop(shared_file(*BRATS_T1_PATH), (slice(90, 154), slice(80, 144), slice(50, 90)))
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    nifti = _save_nifti(tmp_path / "t1_crop.nii.gz", image)
    write_series(tmp_path / "dicom", np.asarray(image.dataobj), image.affine, modality="MR")
    _assert_same_volume(nifti, tmp_path / "dicom")
    (series,) = list_series(tmp_path / "dicom")
    assert series.orientation == "LPS"  # standard axial DICOM stack: columns → L, rows → P, slices → S
    assert (series.columns, series.rows, series.n_slices) == (64, 64, 40)


@pytest.mark.parametrize("codes", ["LPS", "PSR", "ILA", "RAS"])
def test_oblique_series_matches_its_nifti(tmp_path, codes):
    voxels = _synthetic_voxels()
    image = nib.Nifti1Image(voxels, oblique_affine(codes))
    nifti = _save_nifti(tmp_path / "oblique.nii.gz", image)
    write_series(tmp_path / "dicom", voxels, image.affine, modality="MR")
    _assert_same_volume(nifti, tmp_path / "dicom")


def test_gantry_tilt_keeps_sheared_geometry_and_writes_back(tmp_path):
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[1, 2] = 0.6  # each slice shifted 0.6 mm anteriorly: a tilted gantry
    voxels = _synthetic_voxels((16, 18, 10))
    nifti = _save_nifti(tmp_path / "tilt.nii.gz", nib.Nifti1Image(voxels, affine))
    write_series(tmp_path / "dicom", voxels, affine)
    _assert_same_volume(nifti, tmp_path / "dicom")
    volume = read_series(tmp_path / "dicom")
    out = write_nifti(tmp_path / "back.nii.gz", volume.data, source=volume.source)
    again = read_nifti(out, as_label=False)
    assert np.array_equal(again.data, volume.data)
    assert corner_error_mm(again.display_affine, volume.display_affine, volume.data.shape) <= WORLD_TOL_MM


def test_written_nifti_round_trips_the_dicom_grid(tmp_path):
    voxels = _synthetic_voxels()
    write_series(tmp_path / "dicom", voxels, oblique_affine("LPS"))
    volume = read_series(tmp_path / "dicom")
    out = write_nifti(tmp_path / "from_dicom.nii.gz", volume.data, source=volume.source)
    again = read_nifti(out, as_label=False)
    assert np.array_equal(again.data, volume.data)
    assert corner_error_mm(again.display_affine, volume.display_affine, volume.data.shape) <= 1e-6


def test_single_file_path_reads_its_whole_series(tmp_path):
    voxels = _synthetic_voxels()
    _, files = write_series(tmp_path / "dicom", voxels, np.diag([1.0, 1.0, 2.0, 1.0]))
    assert read_series(files[5]).data.shape == (12, 20, 24)
    other = tmp_path / "dicom" / "other"
    write_series(other, voxels[:, :, :4], np.eye(4), seed=2)  # a subfolder with another series is not mixed in
    assert read_series(files[5]).data.shape == (12, 20, 24)
    assert read_series(next(other.iterdir())).data.shape == (4, 20, 24)


# ------------------------------------------------------------------------------------------------ intensities


def test_rescale_slope_and_intercept_give_hounsfield_units(tmp_path):
    image = _crop(shared_file(*CT_PATH), (slice(96, 160), slice(100, 164), slice(40, 60)))
    hu = (np.asarray(image.dataobj).astype(np.int32) // 2 * 2).astype(np.int16)  # even: stored = (hu + 1024) / 2
    nifti = _save_nifti(tmp_path / "hu.nii.gz", nib.Nifti1Image(hu, image.affine))
    write_series(tmp_path / "dicom", hu, image.affine, slope=2.0, intercept=-1024.0)
    stored = pydicom.dcmread(next((tmp_path / "dicom").iterdir())).pixel_array
    assert stored.min() >= 0  # really stored shifted and halved
    _assert_same_volume(nifti, tmp_path / "dicom")
    assert read_series(tmp_path / "dicom").data.dtype == np.int16


def test_fractional_rescale_gives_float32(tmp_path):
    values = _synthetic_voxels().astype(np.float64) * 0.25 + 0.5  # stored = the int16 voxels
    write_series(tmp_path / "dicom", values, np.eye(4), slope=0.25, intercept=0.5)
    volume = read_series(tmp_path / "dicom")
    assert volume.data.dtype == np.float32
    expected = read_nifti(_save_nifti(tmp_path / "v.nii.gz", nib.Nifti1Image(values.astype(np.float32), np.eye(4))))
    assert np.array_equal(volume.data, expected.data)


# ------------------------------------------------------------------------------------------------- listing


def test_two_series_in_one_folder_are_listed_separately(tmp_path):
    voxels = _synthetic_voxels()
    folder = tmp_path / "study"
    uid_ct, _ = write_series(folder, voxels, np.diag([0.5, 0.5, 3.0, 1.0]), description="CT head", series_number=2)
    uid_mr, mr_files = write_series(
        folder / "sub",
        voxels[:, :, :7],
        oblique_affine("LPS"),
        modality="MR",
        description="T1 oblique",
        series_number=1,
        seed=5,
    )
    (folder / "README.txt").write_text("not DICOM")
    series = list_series(folder)
    assert [s.uid for s in series] == [uid_mr, uid_ct]  # by series number
    mr, ct = series
    assert isinstance(mr, DicomSeries)
    assert (ct.modality, ct.description, ct.n_slices, ct.rows, ct.columns) == ("CT", "CT head", 12, 20, 24)
    assert ct.spacing == pytest.approx((3.0, 0.5, 0.5))
    assert ct.orientation == "RAS"  # these slices were written with RAS-ordered voxel axes
    assert (ct.dtype, ct.transfer_syntax) == ("int16", "Explicit VR Little Endian")
    assert mr.n_slices == 7 and mr.spacing == pytest.approx((2.0, 1.2, 0.8))
    assert mr.files == mr_files  # its slice axis points along the normal (row × column), so k order
    with pytest.raises(VolumeReadError, match="contains 2 series"):
        read_series(folder)
    assert read_series(folder, uid=uid_mr).data.shape == (7, 20, 24)
    assert read_series(ct).name == "CT head"


def test_files_are_sorted_by_position_not_name(tmp_path):
    voxels = _synthetic_voxels()
    _, files = write_series(tmp_path / "dicom", voxels, np.diag([1.0, 1.0, 2.0, 1.0]), seed=11)
    (series,) = list_series(tmp_path / "dicom")
    assert series.files == files  # k order == ascending position along the normal (+S)
    assert series.files != sorted(files)


def test_folder_without_dicom_is_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / "fake").write_bytes(b"\x08\x00" + bytes(50))  # looks like a preamble-less file, is not
    with pytest.raises(VolumeReadError, match="no DICOM files found") as err:
        list_series(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(VolumeReadError, match="no DICOM"):
        read_series(tmp_path)


# -------------------------------------------------------------------------------------------- broken series


def test_missing_slice_is_reported(tmp_path):
    voxels = _synthetic_voxels()
    _, files = write_series(tmp_path / "dicom", voxels, np.diag([1.0, 1.0, 1.5, 1.0]))
    files[6].unlink()
    with pytest.raises(VolumeReadError, match="missing slice") as err:
        read_series(tmp_path / "dicom")
    assert "between positions 7.50 and 10.50" in str(err.value)


def test_irregular_spacing_is_reported(tmp_path):
    voxels = _synthetic_voxels()
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    lps = _LPS @ affine
    shifted = {k: lps[:3, 3] + (k * 1.5 + 0.5 * (k - 7)) * np.array([0, 0, 1.0]) for k in range(8, 12)}
    write_series(tmp_path / "dicom", voxels, affine, positions=shifted)
    with pytest.raises(VolumeReadError, match="inconsistent slice spacing"):
        read_series(tmp_path / "dicom")


def test_positions_rounded_by_the_scanner_are_accepted(tmp_path):
    voxels = _synthetic_voxels()
    affine = np.diag([0.5, 0.5, 0.625, 1.0])
    lps = _LPS @ affine
    rounded = {k: np.round(lps[:3, 3] + k * lps[:3, 2], 2) for k in range(voxels.shape[2])}  # 0.62/0.63 mm gaps
    write_series(tmp_path / "dicom", voxels, affine, positions=rounded)
    volume = read_series(tmp_path / "dicom")
    assert volume.spacing[0] == pytest.approx(0.625, abs=0.01)
    expected = read_nifti(_save_nifti(tmp_path / "v.nii.gz", nib.Nifti1Image(voxels, affine)), as_label=False)
    assert np.array_equal(volume.data, expected.data)


def test_mixed_orientations_are_reported(tmp_path):
    voxels = _synthetic_voxels()
    sagittal = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    write_series(tmp_path / "dicom", voxels, np.eye(4), orientations={3: sagittal, 4: sagittal})
    with pytest.raises(VolumeReadError, match="mixed orientations"):
        read_series(tmp_path / "dicom")


def test_duplicate_positions_are_reported(tmp_path):
    voxels = _synthetic_voxels()
    lps = _LPS @ np.eye(4)
    write_series(tmp_path / "dicom", voxels, np.eye(4), positions={4: lps[:3, 3] + 3 * lps[:3, 2]})
    with pytest.raises(VolumeReadError, match="share a position"):
        read_series(tmp_path / "dicom")


def _jpeg_file(path: Path, transfer_syntax) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0 garbage, not a JPEG stream \xff\xd9"])
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("transfer_syntax", [JPEGBaseline8Bit, JPEGLosslessSV1], ids=["baseline", "lossless"])
def test_compressed_pixels_without_decoder_name_the_syntax_and_the_fix(tmp_path, transfer_syntax):
    folder = tmp_path / "jpeg"
    folder.mkdir()
    path = _jpeg_file(folder / "IM0001", transfer_syntax)
    with pytest.raises(VolumeReadError) as err:
        read_series(folder)
    message = str(err.value)
    assert transfer_syntax.name in message and "pylibjpeg" in message
    assert str(path) in message
    # with pydicom alone, JPEG Baseline has Pillow as decoder (which fails on the garbage); lossless has none
    (series,) = list_series(folder)
    assert series.transfer_syntax == transfer_syntax.name


# ------------------------------------------------------------------------------------------------ 2D images


def test_single_radiograph_loads_as_one_slice_as_stored(tmp_path):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4096, size=(30, 40)).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.SeriesDescription = "Chest PA"
    ds.ImagerPixelSpacing = [0.2, 0.15]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    folder = tmp_path / "xray"
    folder.mkdir()
    ds.save_as(folder / "chest.dcm", enforce_file_format=True)
    volume = read_series(folder)
    assert volume.name == "Chest PA (2D)"
    assert volume.data.shape == (1, 30, 40)
    assert np.array_equal(volume.data[0], pixels)  # row 0 on top, column 0 on the left, not flipped
    assert volume.spacing == pytest.approx((1.0, 0.2, 0.15))
    (series,) = list_series(folder)
    assert series.orientation == "none" and series.n_slices == 1


def test_single_ct_slice_keeps_its_position(tmp_path):
    voxels = _synthetic_voxels((24, 20, 1))
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 33.0]
    nifti = _save_nifti(tmp_path / "one.nii.gz", nib.Nifti1Image(voxels, affine))
    write_series(tmp_path / "dicom", voxels, affine)
    volume = read_series(tmp_path / "dicom")
    assert volume.name == "test series (2D)" and volume.data.shape == (1, 20, 24)
    expected = read_nifti(nifti, as_label=False)
    assert np.array_equal(volume.data, expected.data)
    assert corner_error_mm(volume.display_affine, expected.display_affine, volume.data.shape) <= WORLD_TOL_MM


# --------------------------------------------------------------------------------------------------- zip


def test_zip_of_a_series_reads_like_the_folder(tmp_path):
    voxels = _synthetic_voxels()
    write_series(tmp_path / "dicom", voxels, oblique_affine("PSR"))
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in (tmp_path / "dicom").iterdir():
            zf.write(path, f"patient/series1/{path.name}")
        zf.writestr("patient/readme.txt", "not DICOM")
    from_folder = read_series(tmp_path / "dicom")
    (series,) = list_series(archive)
    assert series.archive == archive and series.n_slices == 12
    for volume in (read_series(archive), read_series(series)):
        assert np.array_equal(volume.data, from_folder.data)
        assert np.array_equal(volume.display_affine, from_folder.display_affine)


# --------------------------------------------------------------------------------------------------- info


def test_info_on_a_nifti_file(tmp_path):
    voxels = _synthetic_voxels()
    path = _save_nifti(tmp_path / "v.nii.gz", nib.Nifti1Image(voxels, oblique_affine("LPS")))
    (facts,) = info(path)
    assert facts["format"] == "Nifti1"
    assert facts["dims"] == (24, 20, 12)
    assert facts["spacing"] == pytest.approx((0.8, 1.2, 2.0))
    assert facts["orientation"] == "LPS"
    assert facts["dtype"] == "int16"
    assert facts["range"] == (int(voxels.min()), int(voxels.max()))
    text = format_info([facts])
    assert "dims: 24 × 20 × 12" in text and "orientation: LPS" in text


def test_info_on_a_dicom_folder_and_file(tmp_path):
    voxels = _synthetic_voxels()
    uid, files = write_series(tmp_path / "dicom", voxels, _LPS @ np.diag([0.5, 0.6, 2.0, 1.0]), intercept=-1024)
    (facts,) = info(tmp_path / "dicom")
    assert facts["format"] == "DICOM series"
    assert (facts["uid"], facts["modality"], facts["description"]) == (uid, "CT", "test series")
    assert facts["dims"] == (24, 20, 12)
    assert facts["spacing"] == pytest.approx((0.5, 0.6, 2.0))
    assert facts["orientation"] == "LPS"
    assert facts["dtype"] == "int16" and facts["n_files"] == 12
    assert facts["rescale"] == (1.0, -1024.0)
    (one,) = info(files[0])
    assert one["format"] == "DICOM file" and one["dims"] == (24, 20, 1) and one["orientation"] == "LPS"
    text = format_info(info(tmp_path / "dicom") + [one])
    assert "DICOM series" in text and "DICOM file" in text and "spacing: 0.5 × 0.6 × 2 mm" in text


def test_info_on_something_else_is_an_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(VolumeReadError, match="not a NIfTI file"):
        info(path)
    with pytest.raises(VolumeReadError, match="no such file"):
        info(tmp_path / "missing")
