"""Training data of the shipped swap model: random re-stainings of scikit-image's IHC image."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domaingen.core.stain_variants import random_restain, training_images


def test_restains_keep_the_tissue_and_change_the_colours():
    images = training_images(3, seed=0)
    assert len(images) == 4 and all(im.shape == (512, 512, 3) and im.dtype == np.uint8 for im in images)
    means = np.array([im.reshape(-1, 3).mean(0) for im in images])
    assert np.ptp(means, axis=0).max() > 20  # different stain looks
    gray = [im.astype(float).mean(-1) for im in images]
    for other in gray[1:]:
        assert abs(np.corrcoef(gray[0].ravel(), other.ravel())[0, 1]) > 0.5  # the same structures
    assert np.array_equal(training_images(2, seed=3)[1], training_images(2, seed=3)[1])
    rng = np.random.default_rng(0)
    assert random_restain(images[0][:10, :10], rng).shape == (10, 10, 3)


def test_a_training_set_keeps_the_held_out_rows_apart():
    from napari_domaingen.core.stain_variants import held_out_split, histology_training_set

    ihc = training_images(0, seed=0)[0]
    other = np.ascontiguousarray(ihc[::-1, ::-1])
    data = histology_training_set({"a": ihc, "b": other}, variants=2, scales={"a": (1.0, 0.5), "b": (0.5,)}, seed=1)
    train, kept = held_out_split(ihc)
    assert train.shape == (358, 512, 3) and kept.shape == (154, 512, 3)
    assert [np.shape(x)[:2] for x in data.held_out] == [(154, 512), (154, 512)]
    assert np.array_equal(data.held_out[0], kept) and data.held_out_names[1] == "b (held-out rows)"
    assert data.names == [
        "a ×1",
        "a ×0.5",
        "a ×1 restained (dab-like 1)",
        "a ×0.5 restained (eosin-like 2)",
        "b ×0.5",
        "b ×0.5 restained (dab-like 1)",
        "b ×0.5 restained (eosin-like 2)",
    ]
    shapes = [im.shape for im in data.images]
    assert shapes[0] == (358, 512, 3) and shapes[1] == (179, 256, 3) and shapes[4] == (179, 256, 3)
    assert all(im.dtype == np.uint8 for im in data.images)
    # no training image holds a held-out row: the held-out rows are the bottom 30 %, the training rows the top
    assert np.array_equal(data.images[0], train)
    with pytest.raises(ValueError, match="held-out fraction"):
        held_out_split(ihc, 1.0)


def test_eosin_like_restains_take_the_eosin_signal():
    from napari_domaingen.core.stain_variants import tissue_bounding_box

    he = training_images(0)[0]
    a = random_restain(he, np.random.default_rng(0), second_from="dab")
    b = random_restain(he, np.random.default_rng(0), second_from="eosin")
    assert a.shape == b.shape and not np.array_equal(a, b)
    glass = np.full((100, 120, 3), 245, np.uint8)
    glass[40:60, 70:90] = (120, 40, 150)
    rows, cols = tissue_bounding_box(glass, margin=5)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (35, 65, 65, 95)
    assert tissue_bounding_box(np.full((10, 10, 3), 250, np.uint8)) == (slice(0, 10), slice(0, 10))
