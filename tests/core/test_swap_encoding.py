"""The tilings of the swap encoder: every pixel's patch lies in a tile that contains the pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_domaingen.core.swap_encoding import EncodedImage, tile_layout


def _geometry(shape: tuple[int, int], tile: int, patch: int, seamless: bool, overlap: float) -> EncodedImage:
    """An :class:`EncodedImage` with the tiling of ``shape`` and no tokens (the lookup needs only geometry)."""
    margin, origins, grids, padded = tile_layout(shape, tile, patch, seamless, overlap)
    empty = torch.zeros(len(origins), 0, 0)
    return EncodedImage(
        shape=shape, padded=padded, origins=origins, anatomy=empty, style=empty, tile=tile, patch=patch,
        grids=grids, margin=margin, seamless=seamless,
    )  # fmt: skip


@pytest.mark.parametrize("shape", [(512, 512), (1000, 777), (64, 64)], ids=["512²", "1000×777", "64²"])
@pytest.mark.parametrize(
    ("seamless", "overlap"), [(True, 0.0), (False, 0.0), (False, 0.25), (False, 0.5)],
    ids=["seamless", "plain", "plain 25 %", "plain 50 %"],
)  # fmt: skip
@pytest.mark.parametrize(("tile", "patch"), [(64, 8), (224, 16)], ids=["64/8", "224/16"])
def test_every_pixel_lies_in_its_patch(shape, seamless, overlap, tile, patch):
    encoded = _geometry(shape, tile, patch, seamless, overlap)
    ys, xs = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    pixels = np.stack([ys.ravel(), xs.ravel()], axis=1)
    tiles, patches = encoded.patch_indices(pixels)
    assert (encoded.grids[tiles] == 0).all()
    assert ((0 <= patches) & (patches < encoded.grid**2)).all()
    top_left = (
        encoded.origins[tiles] - encoded.margin + np.stack([patches // encoded.grid, patches % encoded.grid], 1) * patch
    )
    assert ((top_left <= pixels) & (pixels < top_left + patch)).all()  # the patch (and so its tile) holds the pixel


def test_patch_index_on_tile_borders_of_the_shipped_model():
    """The defect a user met: the style point at the centre of the 512² sample (a tile border) named tile 27, patch 72
    of a 64-patch grid. Every border point now names a patch that holds it, and the swap renders."""
    from napari_domaingen.core.swap_encoding import encode
    from napari_domaingen.core.swap_model import load_swap_model

    model = load_swap_model("default")
    image = np.random.default_rng(0).random((512, 512, 3)).astype(np.float32)
    encoded = encode(model, image)
    for y, x in [(256, 256), (128, 128), (256, 100), (0, 0), (511, 511), (255.5, 383.9)]:
        tile, index = encoded.patch_index(y, x)
        assert 0 <= index < encoded.grid**2
        top = encoded.origins[tile] - encoded.margin + np.array(divmod(index, encoded.grid)) * encoded.patch
        pixel = np.clip([y, x], 0, 511)
        assert (top <= pixel).all() and (pixel < top + encoded.patch).all()


def test_only_the_needed_tiles_are_encoded():
    """Issue 28 (a slide's glass): with ``needed`` only the tiles holding a needed pixel run — their tokens are the
    full encoding's — and the others get zero tokens; a mask of another shape is refused."""
    from skimage.data import immunohistochemistry

    from napari_domaingen.core.swap_encoding import encode
    from napari_domaingen.core.swap_model import load_swap_model

    model = load_swap_model("default", torch.device("cpu"))
    image = np.ascontiguousarray(immunohistochemistry()[:200, :260])
    needed = np.zeros(image.shape[:2], bool)
    needed[:40, :50] = True
    full = encode(model, image, precision="fp32")
    part = encode(model, image, precision="fp32", needed=needed)
    y, x = part.origins[:, 0] - part.margin, part.origins[:, 1] - part.margin
    covers = (y < 40) & (y + part.tile > 0) & (x < 50) & (x + part.tile > 0)
    assert 0 < covers.sum() < len(covers)
    assert torch.allclose(part.anatomy[covers], full.anatomy[covers], atol=1e-5)
    assert torch.allclose(part.style[covers], full.style[covers], atol=1e-5)
    assert not part.anatomy[~covers].any() and not part.style[~covers].any()
    with pytest.raises(ValueError, match="mask of needed pixels"):
        encode(model, image, needed=needed[:10])
