"""Volume sets: contrast recognition, scanning, group loading, grid checks, resampling and intensity presets."""

from __future__ import annotations

import zipfile

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.io.errors import VolumeReadError
from napari_domaingen.io.geometry import display_to_ras_affine, same_grid, voxel_to_world
from napari_domaingen.io.nifti import read_nifti, write_nifti
from napari_domaingen.io.volume_set import (
    LAYER_STYLE,
    PRESETS,
    Candidate,
    ResampledSource,
    contrast_limits_for,
    contrast_of,
    grid_report,
    layer_names,
    load_group,
    off_grid,
    resample_isotropic,
    resample_onto,
    scan,
    subject_of,
)

from ..conftest import shared_file
from .test_dicom import write_series

BRATS = ("data", "mri", "brats23-gli-00001-000")
CT_PATH = ("data", "mri", "invesalius-ct-cranium", "cranium_ct.nii.gz")
# an LPS file affine like BraTS (1 mm), origin somewhere in the head
LPS_AFFINE = np.array([[-1.0, 0, 0, 20.0], [0, -1.0, 0, 30.0], [0, 0, 1.0, -10.0], [0, 0, 0, 1]])


def rotation_shift(degrees: float, shift: tuple[float, float, float]) -> np.ndarray:
    """A world (RAS) transform: rotation about the S axis, then a shift (mm)."""
    t = np.radians(degrees)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    out[:3, 3] = shift
    return out


def linear_field(shape: tuple[int, int, int]) -> np.ndarray:
    """f(i, j, k) = 2i + 3j + 5k + 7 (file order): linear interpolation reproduces it exactly."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return 2 * i + 3 * j + 5 * k + 7


def save(path, data, affine):
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


# ------------------------------------------------------------------------------------------------- contrasts


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BraTS-GLI-00001-000-t1n.nii.gz", "T1"),
        ("BraTS-GLI-00001-000-t1c.nii.gz", "T1c"),
        ("BraTS-GLI-00001-000-t2w.nii.gz", "T2"),
        ("BraTS-GLI-00001-000-t2f.nii.gz", "FLAIR"),
        ("BraTS-GLI-00001-000-seg.nii.gz", "labels"),
        ("BraTS-GLI-00001-000-inpainting-mask.nii.gz", "labels"),
        ("TCGA-DU-7294_t1_bet.nii.gz", "T1"),
        ("TCGA-DU-7294_t1c_bet.nii.gz", "T1c"),
        ("TCGA-DU-7294_t2_bet.nii.gz", "T2"),
        ("TCGA-DU-7294_fla_bet.nii.gz", "FLAIR"),
        ("tcga-du-7294_seg-fusion-mav.nii.gz", "labels"),
        ("/data/BraTS19_x/BraTS19_2013_2_1_t1ce.nii.gz", "T1c"),
        ("BraTS19_2013_2_1_FLAIR.nii", "FLAIR"),
        ("sub-01_ce-gd_T1w.nii.gz", "T1c"),
        ("sub-01_T2w.nii.gz", "T2"),
        ("subject_label.nii.gz", "labels"),
        ("T1 AX POST GD", "T1c"),
        ("Ax T2 FLAIR", "FLAIR"),
        ("/t1/scan.nii.gz", None),  # folders do not count
        ("patient_t10.nii.gz", None),  # tokens, not substrings
        ("head CT 5mm", None),
    ],
)
def test_contrast_of_recognises_brats_tcga_and_common_names(name, expected):
    assert contrast_of(name) == expected


def test_every_contrast_has_a_layer_style():
    for contrast in ("T1", "T1c", "T2", "FLAIR"):
        assert LAYER_STYLE[contrast]["colormap"] == "gray"
        assert LAYER_STYLE[contrast]["layer_type"] == "image"
    assert LAYER_STYLE["labels"]["layer_type"] == "labels"


def test_subject_is_the_common_prefix_cut_at_a_separator():
    assert subject_of(["TCGA-DU-7294_t1_bet", "TCGA-DU-7294_t1c_bet"]) == "TCGA-DU-7294"
    assert subject_of(["TCGA-DU-7294_t1_bet", "tcga-du-7294_seg-fusion"]) == "TCGA-DU-7294"
    assert subject_of(["BraTS-GLI-00001-000-t1c"]) == "BraTS-GLI-00001-000"
    assert subject_of(["a_t1", "b_t2"]) == ""


def test_layer_names_disambiguate_repeated_contrasts(tmp_path):
    stems = ["S1_t1", "S1_seg-a", "S1_seg-b", "S1_other"]
    candidates = [Candidate(path=tmp_path / s, kind="nifti", stem=s, contrast=contrast_of(s)) for s in stems]
    assert layer_names(candidates) == ["S1 T1", "S1 seg-a", "S1 seg-b", "S1_other"]


# ---------------------------------------------------------------------------------------------- scan + load


def test_scan_and_load_the_brats_folder():
    folder = shared_file(*BRATS)
    candidates = scan([folder])
    assert len(candidates) == 5
    by_contrast = {c.contrast: c for c in candidates}
    assert set(by_contrast) == {"T1", "T1c", "T2", "FLAIR", "labels"}
    assert candidates[0].contrast == "T1"  # listed T1 first: the reference of the group
    t1 = by_contrast["T1"]
    assert t1.kind == "nifti" and t1.dims == (240, 240, 155) and t1.spacing == (1.0, 1.0, 1.0)
    assert t1.orientation == "LPS" and t1.dtype == "int16" and t1.value_range == (0, 2921)
    assert by_contrast["labels"].stem.endswith("inpainting-mask")

    volumes = load_group(candidates)
    names = [v.name for v in volumes]
    assert names == [
        "BraTS-GLI-00001-000 T1",
        "BraTS-GLI-00001-000 T1c",
        "BraTS-GLI-00001-000 T2",
        "BraTS-GLI-00001-000 FLAIR",
        "BraTS-GLI-00001-000 labels",
    ]
    assert not any(v.is_label for v in volumes[:4])
    assert grid_report(volumes) == []

    mask = volumes[4]
    assert mask.is_label and mask.data.dtype == np.uint8
    assert set(np.unique(mask.data)) <= {0, 1}


def test_scan_reports_unreadable_paths(tmp_path):
    with pytest.raises(VolumeReadError, match="no such file"):
        scan([tmp_path / "missing.nii.gz"])
    (tmp_path / "empty").mkdir()
    errors: list[str] = []
    assert scan([tmp_path / "missing.nii.gz", tmp_path / "empty"], errors=errors) == []
    assert len(errors) == 2 and "no NIfTI files and no DICOM files found" in errors[1]


def test_scan_finds_dicom_series_next_to_nifti_files_and_in_zips(tmp_path):
    voxels = (np.arange(12 * 10 * 6).reshape(12, 10, 6) % 500).astype(np.int16)
    write_series(tmp_path / "case" / "dicom_t1c", voxels, LPS_AFFINE, modality="MR", description="T1 AX POST GD")
    save(tmp_path / "case" / "case_t2.nii.gz", voxels, LPS_AFFINE)
    candidates = scan([tmp_path / "case"])
    assert [(c.kind, c.contrast) for c in candidates] == [("nifti", "T2"), ("dicom", "T1c")]
    series = candidates[1]
    assert series.modality == "MR" and series.dims == (12, 10, 6) and series.uid
    assert series.value_range is None and series.dtype == "int16"
    volumes = load_group(candidates)
    assert volumes[1].name.endswith("T1c") and np.array_equal(volumes[0].data, volumes[1].data)
    assert grid_report(volumes) == []

    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "case" / "dicom_t1c").iterdir():
            zf.write(path, f"dicom/{path.name}")
    zipped = scan([archive])
    assert len(zipped) == 1 and zipped[0].kind == "dicom" and zipped[0].contrast == "T1c"
    one_file = scan([series.series.files[0]])
    assert len(one_file) == 1 and one_file[0].uid == series.uid


# ------------------------------------------------------------------------------------------ grid, resampling


@pytest.fixture
def moved_pair(tmp_path):
    """A reference and a rotated (10°) and shifted copy of the same array, as NIfTI files."""
    shape = (30, 28, 20)
    data = linear_field(shape)
    labels = (np.indices(shape).sum(0) % 3).astype(np.uint8)
    moved_affine = rotation_shift(10.0, (4.0, -3.0, 2.5)) @ LPS_AFFINE
    save(tmp_path / "subj_t1.nii.gz", data, LPS_AFFINE)
    save(tmp_path / "subj_t2.nii.gz", data, moved_affine)
    save(tmp_path / "subj_seg.nii.gz", labels, moved_affine)
    candidates = scan([tmp_path / "subj_t1.nii.gz", tmp_path / "subj_t2.nii.gz", tmp_path / "subj_seg.nii.gz"])
    return load_group(candidates), moved_affine


def test_grid_report_names_the_volumes_off_the_reference_grid(moved_pair):
    (ref, moved, seg), _ = moved_pair
    assert [v.name for v in (ref, moved, seg)] == ["subj T1", "subj T2", "subj labels"]
    report = grid_report([ref, moved, seg])
    assert off_grid([ref, moved, seg]) == [1, 2]
    assert len(report) == 2
    assert report[0].startswith("subj T2: ") and "rotated by 10.0°" in report[0] and "origin shifted" in report[0]
    assert "(reference subj T1)" in report[0]
    # labels first: the reference is still the first image
    assert grid_report([seg, ref])[0].startswith("subj labels")
    cropped = resample_onto(ref, ref)
    cropped.data = cropped.data[:-1]
    assert "shape 19×28×30 vs 20×28×30" in grid_report([ref, cropped])[0]


def test_resample_onto_puts_a_volume_on_the_reference_grid(moved_pair, tmp_path):
    (ref, moved, seg), moved_affine = moved_pair
    out = resample_onto(moved, ref)
    assert out.name == "subj T2"
    assert out.data.shape == ref.data.shape
    assert np.array_equal(out.display_affine, ref.display_affine)
    assert out.source is ref.source
    assert grid_report([ref, out]) == []

    # a reference voxel's world point, looked up in the moved file: the linear field is reproduced exactly
    point = np.array([10, 14, 12])  # display (z, y, x) of the reference, inside the moved volume
    world = voxel_to_world(ref.display_affine, point)  # (S, A, R)
    ras = np.r_[world[::-1], 1.0]
    i, j, k = (np.linalg.inv(moved_affine) @ ras)[:3]
    expected = 2 * i + 3 * j + 5 * k + 7
    assert out.data[tuple(point)] == pytest.approx(expected, abs=1e-3)
    # voxels outside the moved volume are 0
    assert out.data[0, 0, 0] == 0 or out.data[-1, -1, -1] == 0

    labels = resample_onto(seg, ref)
    assert labels.is_label and labels.data.dtype == np.uint8
    assert set(np.unique(labels.data)) <= {0, 1, 2}

    path = write_nifti(tmp_path / "t2_on_t1.nii.gz", out.data, source=out.source)
    back = read_nifti(path)
    assert same_grid(back.data.shape, back.display_affine, ref.data.shape, ref.display_affine)


def test_resample_isotropic_ct_round_trips_through_write_nifti(tmp_path):
    image = nib.load(str(shared_file(*CT_PATH)))
    crop = image.slicer[100:140, 90:136, 40:60]
    path = tmp_path / "ct_crop.nii.gz"
    cropped = nib.Nifti1Image(np.asarray(crop.dataobj), crop.affine, header=image.header)
    nib.save(cropped, str(path))
    ct = read_nifti(path)
    assert ct.spacing == pytest.approx((1.5, 0.957031, 0.957031), abs=1e-5)

    iso = resample_isotropic(ct, 1.0)
    assert iso.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert iso.data.shape == (30, 45, 39)  # ceil(20·1.5), ceil(46·0.957), ceil(40·0.957)
    assert np.allclose(iso.display_affine[:3, 3], ct.display_affine[:3, 3])  # same origin
    direction = ct.display_affine[:3, :3] / np.linalg.norm(ct.display_affine[:3, :3], axis=0)
    assert np.allclose(iso.display_affine[:3, :3], direction)  # same direction cosines
    assert iso.data[0, 0, 0] == pytest.approx(float(ct.data[0, 0, 0]), abs=1e-3)  # voxel 0 sits on voxel 0
    assert iso.data[3, 0, 0] == pytest.approx(float(ct.data[2, 0, 0]), abs=1e-3)  # 3 mm = 2 slices of 1.5 mm
    between = 0.5 * (float(ct.data[1, 0, 0]) + float(ct.data[2, 0, 0]))  # 2.25 mm: half-way, linear
    assert resample_isotropic(ct, 0.75).data[3, 0, 0] == pytest.approx(between, abs=1e-3)
    source = iso.source
    assert isinstance(source, ResampledSource)
    assert source.resampled_from == str(path)
    assert source.original_spacing == pytest.approx(ct.spacing)
    assert source.display_shape == iso.data.shape
    assert np.allclose(source.display_affine, iso.display_affine)

    written = write_nifti(tmp_path / "ct_iso.nii.gz", iso.data, source=iso.source)
    saved = nib.load(str(written))
    assert saved.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 1.0))
    assert np.allclose(saved.affine, display_to_ras_affine(iso.display_affine))
    assert int(saved.header["sform_code"]) == int(image.header["sform_code"])  # the CT's codes (sform 2)
    assert nib.aff2axcodes(saved.affine) == nib.aff2axcodes(image.affine)
    back = read_nifti(written)
    assert np.allclose(back.display_affine, iso.display_affine)
    assert np.allclose(back.data, iso.data)


def test_resample_isotropic_labels_use_nearest_and_keep_their_dtype():
    from napari_domaingen.io.nifti import Volume

    affine = np.diag([3.0, 0.5, 0.5, 1.0])
    data = np.zeros((4, 10, 10), np.uint16)
    data[1:3, 2:8, 2:8] = 300
    volume = Volume(data=data, display_affine=affine, name="seg", is_label=True)
    iso = resample_isotropic(volume, 1.0)
    assert iso.data.dtype == np.uint16 and iso.data.shape == (12, 5, 5)
    assert set(np.unique(iso.data)) == {0, 300}
    assert iso.source.resampled_from == "seg"
    assert resample_isotropic(iso, 1.0) is iso  # already isotropic: unchanged


# ---------------------------------------------------------------------------------------------- presets


def test_ct_presets_are_the_feature_extractors_hu_windows():
    from napari_domaingen.core.features import CT_WINDOWS

    data = np.arange(-1000, 3000, dtype=np.int16).reshape(40, 10, 10)
    assert contrast_limits_for(data, "CT brain") == (0.0, 80.0) == CT_WINDOWS["brain"]
    assert contrast_limits_for(data, "CT subdural") == (-20.0, 180.0)
    assert contrast_limits_for(data, "CT bone") == (-800.0, 2000.0)
    assert contrast_limits_for(data, "CT soft tissue") == (-160.0, 240.0)


def test_mri_presets_clip_percentiles_of_nonzero_voxels():
    data = np.zeros((10, 20, 50), np.float32)
    data[:5] = np.arange(1, 5001, dtype=np.float32).reshape(5, 20, 50)  # half background
    low, high = contrast_limits_for(data, "MRI 1–99 %")
    assert low == pytest.approx(np.percentile(np.arange(1, 5001), 1))
    assert high == pytest.approx(np.percentile(np.arange(1, 5001), 99))
    low2, high2 = contrast_limits_for(data, "MRI 0.5–99.5 %")
    assert low2 < low and high2 > high
    assert contrast_limits_for(data, "full range") == (0.0, 5000.0)
    assert contrast_limits_for(np.zeros((2, 2, 2)), "full range") == (0.0, 1.0)
    assert set(PRESETS) >= {"full range", "MRI 1–99 %", "CT brain"}
    with pytest.raises(ValueError, match="unknown intensity preset"):
        contrast_limits_for(data, "sepia")
