"""The plugin's typed record in a layer's metadata (``_napari/layer_meta.py``): read, written, old layers readable."""

from __future__ import annotations

import numpy as np

from napari_domaingen._napari.layer_meta import META_KEY, LayerMeta, nifti_source_of, read_meta, with_meta
from napari_domaingen.io.nifti import NiftiSource


def _source() -> NiftiSource:
    import nibabel as nib

    return NiftiSource(affine=np.eye(4), shape=(4, 5, 6), header=nib.Nifti1Header(), path="t1.nii.gz")


def test_a_plain_dict_record_reads_from_a_layer_its_metadata_or_its_attributes():
    source = _source()
    metadata = {"other": 1, "domaingen": {"nifti_source": source, "maskgen": {"model": "m.pt"}}}
    layer = type("Layer", (), {"metadata": metadata})()
    for where in (layer, metadata, {"name": "x", "metadata": metadata}):
        meta = read_meta(where)
        assert meta["maskgen"]["model"] == "m.pt"
        assert nifti_source_of(where) is source
    assert read_meta(None) == {} and read_meta({"domaingen": "not a record"}) == {}
    assert nifti_source_of({"domaingen": {"nifti_source": "a path"}}) is None


def test_with_meta_keeps_other_keys_and_does_not_touch_the_source():
    metadata = {"other": 1, META_KEY: {"resampled_onto": "T1"}}
    meta = read_meta(metadata)
    meta["resampled_onto"] = "FLAIR"
    written = with_meta(metadata, meta)
    assert written == {"other": 1, META_KEY: {"resampled_onto": "FLAIR"}}
    assert metadata[META_KEY]["resampled_onto"] == "T1"
    assert with_meta(None, LayerMeta(mpp=0.5)) == {META_KEY: {"mpp": 0.5}}
