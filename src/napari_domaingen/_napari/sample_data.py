"""npe2 sample-data contributions (File ▸ Open Sample ▸ napari-domaingen); all offline."""

from __future__ import annotations

from ..io import samples
from .layers import LayerDataTuple, histology_layer_data, volume_layer_data
from .view import follow_current_viewer


def _tissue_labels() -> LayerDataTuple:
    data, attrs, kind = volume_layer_data(samples.mni152_tissue_labels())
    attrs["features"] = {"name": [samples.TISSUE_LABEL_NAMES[i] for i in sorted(samples.TISSUE_LABEL_NAMES)]}
    return data, attrs, kind


def brain_mri() -> list[LayerDataTuple]:
    """MNI152 2009a T1 template (nilearn, 1 mm) and its tissue labels."""
    layers = [volume_layer_data(samples.mni152_t1()), _tissue_labels()]
    follow_current_viewer()
    return layers


def brain_two_contrasts() -> list[LayerDataTuple]:
    """MNI152 T1, a synthetic FLAIR-like contrast of the same anatomy, and tissue labels (one grid)."""
    layers = [
        volume_layer_data(samples.mni152_t1()),
        volume_layer_data(samples.mni152_flair_like()),
        _tissue_labels(),
    ]
    follow_current_viewer()
    return layers


def histology_pair() -> list[LayerDataTuple]:
    """scikit-image's IHC image and its synthetic H&E-like restain (same tissue, another stain appearance)."""
    return [histology_layer_data(samples.ihc()), histology_layer_data(samples.he_like_restain())]
