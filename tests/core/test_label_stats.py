"""Per-class statistics: counts, mm³ from the true voxel volume (anisotropic, oblique, sheared), intensities."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.core.label_stats import (
    COLUMNS,
    label_statistics,
    stats_csv_text,
    voxel_volume_mm3,
    write_stats_csv,
)
from napari_domaingen.io.nifti import volume_from_image
from tests._oblique import oblique_affine


def _case(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 1, 2, 7], size=(9, 11, 13), p=[0.5, 0.2, 0.2, 0.1]).astype(np.uint8)
    image = rng.normal(100, 20, size=labels.shape).astype(np.float32)
    return labels, image


def test_volumes_are_count_times_the_voxel_volume_on_an_oblique_anisotropic_grid():
    labels, image = _case()
    volume = volume_from_image(nib.Nifti1Image(labels, oblique_affine("PIR")), "seg", as_label=True)
    voxel = voxel_volume_mm3(volume.display_affine)
    assert voxel == pytest.approx(0.8 * 1.2 * 2.0)  # rotation and axis flips do not change it
    rows = label_statistics(volume.data, volume.display_affine, names={2: "oedema", 9: "absent"})
    assert [r.value for r in rows] == [1, 2, 7, 9]
    for row in rows:
        assert row.voxels == int((labels == row.value).sum())
        assert row.volume_mm3 == pytest.approx(row.voxels * 0.8 * 1.2 * 2.0)
    assert rows[1].name == "oedema" and rows[0].name == "class 1" and rows[3].voxels == 0
    assert rows[0].mean is None and rows[0].std is None


def test_a_sheared_grid_uses_the_determinant():
    shear = np.array([[1.0, 0.3, 0, 0], [0, 2.0, 0, 0], [0, 0.2, 1.5, 0], [0, 0, 0, 1]])
    assert voxel_volume_mm3(shear) == pytest.approx(3.0)


def test_intensity_mean_and_std_match_numpy_and_background_is_optional():
    labels, image = _case(1)
    image = image + 3000.0  # large offsets: the two-pass spread stays exact
    rows = label_statistics(labels, np.eye(4), image, include_background=True)
    assert [r.value for r in rows] == [0, 1, 2, 7] and rows[0].name == "background"
    for row in rows:
        pixels = image[labels == row.value].astype(np.float64)
        assert row.mean == pytest.approx(pixels.mean(), rel=1e-12)
        assert row.std == pytest.approx(pixels.std(), rel=1e-9)


def test_csv_has_the_documented_columns(tmp_path):
    labels, image = _case(2)
    rows = label_statistics(labels, np.diag([0.5, 0.5, 3.0, 1.0]), image, {1: "a, with comma"})
    path = write_stats_csv(tmp_path / "stats.csv", rows)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) == "value,name,voxels,volume_mm3,mean,std"
    assert lines[1].startswith('1,"a, with comma",') and len(lines) == 4
    assert stats_csv_text(label_statistics(labels, np.eye(4))).splitlines()[1].endswith(",,")  # no image


def test_bad_inputs_are_refused():
    labels, image = _case()
    with pytest.raises(ValueError, match="must match"):
        label_statistics(labels, np.eye(4), image[:-1])
    with pytest.raises(ValueError, match="integers"):
        label_statistics(labels.astype(np.float32), np.eye(4))
    with pytest.raises(ValueError, match="non-negative"):
        label_statistics(labels.astype(np.int16) - 1, np.eye(4))


def test_huge_label_values_are_counted_without_a_dense_table():
    """A label 4e9 (uint32) once made ``bincount`` allocate 29.8 GiB; counting now takes memory bounded by the
    voxels, and the intensities agree with numpy as on the dense path."""
    import tracemalloc

    labels, image = _case(3)
    labels = labels.astype(np.uint32)
    labels[labels == 7] = 4_000_000_000
    image = image + 3000.0
    tracemalloc.start()
    try:
        rows = label_statistics(labels, np.eye(4), image, include_background=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * labels.nbytes + 2**20  # a few arrays of the volume's size, never one of 4e9 entries
    assert [r.value for r in rows] == [0, 1, 2, 4_000_000_000]
    for row in rows:
        pixels = image[labels == row.value].astype(np.float64)
        assert row.voxels == pixels.size
        assert row.mean == pytest.approx(pixels.mean(), rel=1e-12)
        assert row.std == pytest.approx(pixels.std(), rel=1e-9)
    named = label_statistics(labels, np.eye(4), names={4_000_000_001: "absent"})
    assert [(r.value, r.voxels) for r in named][-2:] == [
        (4_000_000_000, int((labels == 4e9).sum())),
        (4_000_000_001, 0),
    ]
