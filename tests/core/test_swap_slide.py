"""The block-by-block whole-slide swap: equal to the whole-image swap, independent of the block size, cancel and
errors leave no output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_domaingen.progress import Cancelled, run
from napari_domaingen.core.swap import encode, mean_style, render
from napari_domaingen.core.swap_slide import slide_alignment, slide_style, swap_slide
from napari_domaingen.io.slide import open_slide


@pytest.fixture(scope="module")
def model():
    from napari_domaingen.core.swap_model import load_swap_model

    return load_swap_model("default", torch.device("cpu"))


def _image(shape) -> np.ndarray:
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()
    tiled = np.concatenate([np.concatenate([ihc, ihc[:, ::-1]], 1), np.concatenate([ihc[::-1], ihc], 1)], 0)
    return np.ascontiguousarray(tiled[: shape[0], : shape[1]])


@pytest.fixture(scope="module")
def style(model):
    return slide_style(model, _image((256, 256))[::-1], precision="fp32")


@pytest.mark.slow
def test_blocks_equal_the_whole_image_swap(model, style, tmp_path):
    """768 × 768 px in 384 px blocks vs the whole image at once: measured max |Δ| = 0 (fp32, and bf16 too; 1024²
    in 512 px blocks: 0 as well)."""
    image = _image((768, 768))
    whole = render(model, encode(model, image, precision="fp32"), style)
    result = run(swap_slide(model, image, style, tmp_path / "b.ome.zarr", block=384, precision="fp32", mpp=0.5))
    assert result.blocks == 4 and result.levels == [(768, 768)] and result.mpp == 0.5
    out = open_slide(result.path).levels[0].compute()
    difference = np.abs(out.astype(int) - whole.astype(int))
    assert difference.max() == 0, (difference.max(), difference.mean())


@pytest.mark.slow
def test_block_size_does_not_matter_at_unaligned_sizes(model, style, tmp_path):
    """A 700 × 650 image (not a multiple of the tile or of the detail filter's 4 px grid) in 192 vs 384 px blocks:
    measured max |Δ| = 1 grey level, mean 0.004 (the last blocks' canvases end at the image edge, where the detail
    filter's coarse grid is fitted to the canvas size). The whole-image swap of such a size differs from both by up
    to 6, mean 0.2: its own coarse grid is stretched over the whole image (700 / 4 = 175 cells)."""
    image = _image((700, 650))
    outs = []
    for block in (192, 384):
        result = run(swap_slide(model, image, style, tmp_path / f"{block}.ome.zarr", block=block, precision="fp32"))
        outs.append(open_slide(result.path).levels[0].compute().astype(int))
    difference = np.abs(outs[0] - outs[1])
    assert difference.max() <= 2 and difference.mean() < 0.01, (difference.max(), difference.mean())


def test_cancel_and_errors_leave_no_output(model, style, tmp_path):
    image = _image((256, 256))
    out = tmp_path / "c.ome.zarr"
    calls = {"n": 0}

    def cancel_after_first_block() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    job = swap_slide(model, image, style, out, block=128, precision="fp32", cancel=cancel_after_first_block)
    assert next(job)["block"] == 1
    with pytest.raises(Cancelled):
        run(job)
    assert list(tmp_path.iterdir()) == []

    class Failing:
        shape = (256, 256, 3)

        def __getitem__(self, index):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run(swap_slide(model, Failing(), style, tmp_path / "e.ome.tif"))
    job = swap_slide(model, image, style, out, block=128, precision="fp32")
    next(job)
    job.close()  # abandoned (e.g. the widget's worker quit)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="must end in .ome.zarr"):
        run(swap_slide(model, image, style, tmp_path / "x.png"))
    with pytest.raises(ValueError, match="style vector of 96 values"):
        run(swap_slide(model, image, style[:5], out))
    assert slide_alignment(model) == 64 and slide_alignment(model, seamless=False) == 192


def test_point_and_mean_styles(model):
    image = _image((200, 300))
    encoded = encode(model, image, seamless=False, precision="fp32")
    assert torch.allclose(slide_style(model, image, precision="fp32"), mean_style(encoded))
    assert slide_style(model, image, (100, 150), precision="fp32").shape == (96,)
