"""Training data of the shipped swap model: random re-stainings of scikit-image's IHC image."""

from __future__ import annotations

import numpy as np

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
