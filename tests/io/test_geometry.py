import numpy as np
import pytest

from napari_domaingen.io.geometry import (
    display_affine_from_layer,
    display_to_ras_affine,
    layer_geometry,
    ras_to_display_affine,
    same_grid,
    voxel_to_world,
)


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(17)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [-90.0, 12.5, 40.0]
    return affine


def test_reversal_is_an_involution():
    affine = _oblique_affine()
    assert np.allclose(display_to_ras_affine(ras_to_display_affine(affine)), affine)


@pytest.mark.parametrize("affine", [np.diag([1.5, 0.9, 0.9, 1.0]), _oblique_affine()])
def test_layer_geometry_reproduces_the_affine(affine):
    geometry = layer_geometry(affine)
    rebuilt = display_affine_from_layer(geometry["scale"], geometry["translate"], geometry["affine"])
    assert np.allclose(rebuilt, affine)
    index = np.array([[0, 0, 0], [3, 7, 11]])
    assert np.allclose(voxel_to_world(rebuilt, index), voxel_to_world(affine, index))


def test_axis_aligned_affine_needs_no_residual():
    geometry = layer_geometry(np.diag([1.5, 0.9, 0.8, 1.0]) + np.array([[0, 0, 0, 5]] * 3 + [[0, 0, 0, 0]]))
    assert np.allclose(geometry["affine"], np.eye(4))
    assert geometry["scale"] == (1.5, 0.9, 0.8)
    assert geometry["translate"] == (5.0, 5.0, 5.0)


def test_degenerate_affine_is_refused():
    with pytest.raises(ValueError, match="degenerate"):
        layer_geometry(np.diag([1.0, 0.0, 1.0, 1.0]))


def test_same_grid():
    assert same_grid((2, 3, 4), np.eye(4), (2, 3, 4), np.eye(4))
    assert not same_grid((2, 3, 4), np.eye(4), (2, 3, 5), np.eye(4))
    assert not same_grid((2, 3, 4), np.eye(4), (2, 3, 4), np.diag([1, 1, 2, 1]))


def test_world_to_voxel_inverts_voxel_to_world_on_an_oblique_grid():
    from napari_domaingen.io.geometry import voxel_to_world, world_to_voxel

    angle = np.radians(12.0)
    affine = np.eye(4)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine[:3, :3] = rotation @ np.diag([3.0, 0.9, 1.1])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    index = np.array([[0, 0, 0], [4, 17, 9], [2.5, 1.0, 30.0]])
    assert np.allclose(world_to_voxel(affine, voxel_to_world(affine, index)), index)


class _LayerLike:
    """What a napari layer offers (scale, translate, an affine transform with ``affine_matrix``, rotate, shear)."""

    def __init__(self, scale, translate, affine, rotate=None, shear=None):
        self.scale, self.translate, self.rotate, self.shear = scale, translate, rotate, shear
        self.affine = type("Affine", (), {"affine_matrix": affine})()


@pytest.mark.parametrize("affine", [np.diag([1.5, 0.9, 0.9, 1.0]), _oblique_affine()])
def test_display_affine_from_a_layer_its_attributes_or_its_parts(affine):
    geometry = layer_geometry(affine)
    parts = display_affine_from_layer(geometry["scale"], geometry["translate"], geometry["affine"])
    layer = _LayerLike(geometry["scale"], geometry["translate"], geometry["affine"], np.eye(3), np.zeros(3))
    attributes = {**geometry, "rotate": np.eye(3).tolist(), "shear": [0.0, 0.0, 0.0]}
    for rebuilt in (parts, display_affine_from_layer(layer), display_affine_from_layer(attributes)):
        assert np.allclose(rebuilt, affine)


def test_display_affine_keeps_the_spatial_block_of_a_stack():
    affine = _oblique_affine()
    geometry = layer_geometry(affine)
    stacked = np.eye(5)
    stacked[1:, 1:] = geometry["affine"]
    rebuilt = display_affine_from_layer((1.0, *geometry["scale"]), (0.0, *geometry["translate"]), stacked)
    assert np.allclose(rebuilt, affine)


@pytest.mark.parametrize("transform", ["rotate", "shear"])
def test_display_affine_refuses_rotate_and_shear(transform):
    value = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) if transform == "rotate" else [0.3, 0, 0]
    with pytest.raises(ValueError, match=transform):
        display_affine_from_layer({"scale": (1, 1, 1), "translate": (0, 0, 0), transform: value})
