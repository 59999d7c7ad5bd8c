"""Labelled volumes: input checks with clear messages, label ↔ class mapping, reproducible augmented crops."""

import numpy as np
import pytest

from napari_domaingen.core.segmentation_data import CropSampler, LabelMap, labelled_volume


def _pair(shape=(40, 44, 48), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, size=shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[10:20, 12:24, 14:30] = 1
    labels[22:28, 12:24, 14:30] = 4
    return image, labels


def test_pair_is_scaled_and_checked():
    image, labels = _pair()
    volume = labelled_volume(image, labels, "case", spacing=(2.0, 1.0, 1.0))
    assert volume.image.dtype == np.float32 and volume.image.min() == 0.0 and volume.image.max() == 1.0
    assert volume.labels.dtype == np.int64 and volume.spacing == (2.0, 1.0, 1.0)
    assert volume.foreground.size == int((labels > 0).sum())


@pytest.mark.parametrize(
    ("image", "labels", "message"),
    [
        (np.zeros((40, 44)), np.zeros((40, 44)), "image: expected a 3D volume"),
        (np.full((8, 8, 8), np.nan, np.float32), np.ones((8, 8, 8)), "NaN"),
        (np.ones((8, 8, 8)), np.ones((8, 8, 9)), r"labels grid \(8, 8, 9\) differs from the image grid \(8, 8, 8\)"),
        (np.ones((8, 8, 8)), np.zeros((8, 8, 8), np.uint8), "labels are empty"),
        (np.ones((8, 8, 8)), np.full((8, 8, 8), 0.5), "whole numbers"),
        (np.ones((8, 8, 8)), -np.ones((8, 8, 8), np.int16), "non-negative"),
    ],
)
def test_bad_pairs_are_refused_with_a_clear_message(image, labels, message):
    with pytest.raises(ValueError, match=message):
        labelled_volume(image, labels, "case")


def test_labels_on_another_grid_are_refused():
    image, labels = _pair()
    moved = np.eye(4)
    moved[0, 3] = 5.0
    with pytest.raises(ValueError, match="another position"):
        labelled_volume(image, labels, "case", image_affine=np.eye(4), labels_affine=moved)


def test_label_map_is_contiguous_and_refuses_unknown_values():
    image, labels = _pair()
    volume = labelled_volume(image, labels, "case")
    label_map = LabelMap.from_volumes([volume])
    assert label_map.values == (0, 1, 4) and label_map.num_classes == 3
    classes = label_map.encode(volume.labels)
    assert set(np.unique(classes)) == {0, 1, 2}
    assert np.array_equal(label_map.decode(classes), labels)
    other = labels.copy()
    other[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"label values \[7\] are beyond the model's classes \[0, 1, 4\]"):
        label_map.check(labelled_volume(image, other, "new"))


def test_crops_are_reproducible_per_step_and_cover_foreground():
    image, labels = _pair()
    volume = labelled_volume(image, labels, "case")
    sampler = CropSampler([volume], (32, 32, 32), LabelMap.from_volumes([volume]), foreground_ratio=1.0)
    x, y = sampler.sample(seed=3, step=5, batch_size=2)
    assert x.shape == (2, 1, 32, 32, 32) and y.shape == (2, 1, 32, 32, 32)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # min-max after augmentation
    assert set(y.unique().tolist()) <= {0, 1, 2}
    x2, y2 = sampler.sample(seed=3, step=5, batch_size=2)
    assert bool((x == x2).all()) and bool((y == y2).all())
    x3, _ = sampler.sample(seed=3, step=6, batch_size=2)
    assert not bool((x == x3).all())
    # every crop is centred on a labelled voxel: it always contains foreground
    for step in range(6):
        _, y = sampler.sample(seed=0, step=step, batch_size=1)
        assert int((y > 0).sum()) > 0


def test_small_volumes_are_padded_to_the_crop():
    image, labels = _pair(shape=(20, 24, 40))
    volume = labelled_volume(image, labels, "small")
    sampler = CropSampler([volume], (32, 32, 32), LabelMap.from_volumes([volume]), augment=False)
    x, y = sampler.sample(seed=0, step=0, batch_size=1)
    assert x.shape == (1, 1, 32, 32, 32)
