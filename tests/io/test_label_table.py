"""Class names and colours beside NIfTI labels: the JSON and ITK-SNAP sidecars, written and read back."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_domaingen.io.errors import VolumeReadError
from napari_domaingen.io.label_table import (
    LabelClass,
    LabelTable,
    itksnap_text,
    read_label_sidecars,
    sidecar_paths,
)
from napari_domaingen.io.nifti import read_nifti, save_labels_nifti, volume_from_image
from tests._oblique import oblique_affine

TABLE = LabelTable(
    (LabelClass(1, "necrotic core", (200, 30, 40)), LabelClass(4, 'enhancing "rim"', (10, 250, 0))),
    source_series_uid="1.2.3.4",
    algorithm={"name": "MaskGen", "version": "ab" * 32, "model": "/models/m.pt"},
)


def _labels(tmp_path):
    data = np.zeros((6, 7, 8), np.uint8)
    data[1:3, 2:5, 3:7] = 1
    data[4, 0:2, 0:3] = 4
    return volume_from_image(nib.Nifti1Image(data, oblique_affine("LPS")), "seg", as_label=True)


def test_names_and_colours_round_trip_through_the_json_sidecar(tmp_path):
    volume = _labels(tmp_path)
    written, notes = save_labels_nifti(tmp_path / "seg.nii.gz", volume.data, TABLE, source=volume.source)
    assert [p.name for p in written] == ["seg.nii.gz", "seg.json", "seg.txt"] and notes == []
    document = json.loads((tmp_path / "seg.json").read_text())
    assert document["format"] == "napari-domaingen labels" and document["labels"][1]["colour"] == [10, 250, 0]
    back = read_nifti(tmp_path / "seg.nii.gz")
    assert back.is_label and np.array_equal(back.data, volume.data)
    assert back.label_table == TABLE  # names (quotes too), colours, series and algorithm


def test_the_itksnap_file_alone_restores_names_and_colours(tmp_path):
    volume = _labels(tmp_path)
    save_labels_nifti(tmp_path / "seg.nii", volume.data, TABLE, source=volume.source)
    (tmp_path / "seg.json").unlink()
    text = (tmp_path / "seg.txt").read_text()
    assert "ITK-SnAP Label Description File" in text and '"Clear Label"' in text
    table = read_nifti(tmp_path / "seg.nii").label_table
    assert table.names() == {0: "background", 1: "necrotic core", 4: 'enhancing "rim"'}  # quotes escaped: exact
    assert table.colours()[1] == (200, 30, 40) and table.colours()[4] == (10, 250, 0)


def test_an_itksnap_file_written_elsewhere_reads(tmp_path):
    # the layout ITK-SNAP itself writes (tabs, transparency as a float, visibility flags)
    text = (
        "################################################\n# ITK-SnAP Label Description File\n"
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '    1   255    0    0        1  1  1    "Label 1"\n'
        '   17\t 0\t128\t255\t0.5\t1\t0\t"Left hippocampus"\n'
    )
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "labels.nii.gz")
    (tmp_path / "labels.txt").write_text(text)
    table = read_label_sidecars(tmp_path / "labels.nii.gz")
    assert table.names() == {0: "background", 1: "Label 1", 17: "Left hippocampus"}
    assert table.colours()[17] == (0, 128, 255)


def test_a_foreign_json_beside_the_labels_is_left_alone(tmp_path):
    volume = _labels(tmp_path)
    bids = tmp_path / "seg.json"
    bids.write_text('{"Description": "a BIDS sidecar"}')
    written, notes = save_labels_nifti(tmp_path / "seg.nii.gz", volume.data, TABLE, source=volume.source)
    assert [p.name for p in written] == ["seg.nii.gz", "seg.txt"]
    assert len(notes) == 1 and "not a napari-domaingen label file" in notes[0]
    assert bids.read_text() == '{"Description": "a BIDS sidecar"}'
    assert read_nifti(tmp_path / "seg.nii.gz").label_table.names()[4] == 'enhancing "rim"'  # from the .txt


def test_a_damaged_sidecar_names_itself(tmp_path):
    volume = _labels(tmp_path)
    save_labels_nifti(tmp_path / "seg.nii.gz", volume.data, TABLE, source=volume.source)
    (tmp_path / "seg.json").write_text('{"format": "napari-domaingen labels", "labels": [{"name": "x"}]}')
    with pytest.raises(VolumeReadError, match=r"seg\.json: not a valid label table"):
        read_nifti(tmp_path / "seg.nii.gz")
    (tmp_path / "seg.json").unlink()
    (tmp_path / "seg.txt").write_text("1 2 three\n")
    with pytest.raises(VolumeReadError, match=r"seg\.txt, line 1: not an ITK-SNAP label line"):
        read_nifti(tmp_path / "seg.nii.gz")


def test_images_do_not_look_for_sidecars_and_paths_follow_the_name(tmp_path):
    assert sidecar_paths(tmp_path / "a.b.nii.gz") == (tmp_path / "a.b.json", tmp_path / "a.b.txt")
    assert read_label_sidecars(tmp_path / "none.nii.gz") is None
    assert itksnap_text(LabelTable(())).count("\n") == 6  # header + the background line


AWKWARD = (
    "dir\\",  # a trailing backslash once wrote "dir\" and reading failed with "No closing quotation"
    'say "hi"',
    "back\\slash\\\\double",
    "it's",
    '"',
    "  spaced  out  ",
    "œdème # not a comment",
    "",
)


def test_awkward_names_round_trip_through_the_itksnap_file(tmp_path):
    table = LabelTable(tuple(LabelClass(v, name, (v, 2 * v, 3 * v)) for v, name in enumerate(AWKWARD, start=1)))
    volume = _labels(tmp_path)
    save_labels_nifti(tmp_path / "seg.nii.gz", volume.data, table, source=volume.source)
    (tmp_path / "seg.json").unlink()  # the ITK-SNAP file alone
    back = read_nifti(tmp_path / "seg.nii.gz").label_table
    assert {v: n for v, n in back.names().items() if v} == dict(enumerate(AWKWARD, start=1))


def test_a_name_that_cannot_be_one_line_is_refused_before_anything_is_written(tmp_path):
    from napari_domaingen.io.errors import VolumeWriteError

    volume = _labels(tmp_path)
    table = LabelTable((LabelClass(1, "line1\nline2", (1, 2, 3)),))
    with pytest.raises(VolumeWriteError, match=r"seg\.txt: the name of class 1 \('line1\\nline2'\) holds a newline"):
        save_labels_nifti(tmp_path / "seg.nii.gz", volume.data, table, source=volume.source)
    assert list(tmp_path.iterdir()) == []


def test_itksnap_read_errors_name_the_file_and_the_line(tmp_path):
    volume = _labels(tmp_path)
    save_labels_nifti(tmp_path / "seg.nii.gz", volume.data, TABLE, source=volume.source)
    (tmp_path / "seg.json").unlink()
    lines = (tmp_path / "seg.txt").read_text().splitlines()
    lines.insert(6, '    2   10   20   30        1  1  1    "never closed')
    (tmp_path / "seg.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(VolumeReadError, match=r"seg\.txt, line 7: the label \"never closed has no closing quotation"):
        read_nifti(tmp_path / "seg.nii.gz")
    # a file from a writer that does not escape ("dir\" as ITK-SNAP would write it) still reads
    lines[6] = '    2   10   20   30        1  1  1    "dir\\"'
    (tmp_path / "seg.txt").write_text("\n".join(lines) + "\n")
    assert read_nifti(tmp_path / "seg.nii.gz").label_table.names()[2] == "dir\\"
