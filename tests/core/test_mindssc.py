import numpy as np
import pytest
import torch

from napari_domaingen.core.mindssc import CHANNELS, mind_ssc


def test_shape_range_and_contrast_stability():
    rng = np.random.default_rng(0)
    volume = rng.random((16, 18, 20)).astype(np.float32)
    features = mind_ssc(volume)
    assert features.shape == (CHANNELS, 16, 18, 20) and features.dtype == torch.float32
    assert float(features.min()) > 0 and float(features.max()) <= 1.0
    # an affine change of contrast leaves the descriptor unchanged; an inversion leaves it close
    assert torch.allclose(mind_ssc(3.0 * volume + 7.0), features, atol=1e-5)
    assert float((mind_ssc(1.0 - volume) - features).abs().mean()) < 1e-5


def test_refuses_other_shapes():
    with pytest.raises(ValueError, match="(Z, Y, X)"):
        mind_ssc(np.zeros((4, 4)))
