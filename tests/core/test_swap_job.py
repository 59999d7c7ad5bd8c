"""The one swap job: settings validated when built, one output-naming scheme, the in-memory job's outputs and style
rules, and a whole-slide job interrupted (Ctrl-C) leaving nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_domaingen.core.swap import encode, mean_style, reconstruct, render, style_at
from napari_domaingen.core.swap_job import style_level, style_vector, swap_images, swap_slide_job
from napari_domaingen.core.swap_model import SwapModel
from napari_domaingen.core.swap_settings import SwapSettings, SwapSettingsError, output_name, output_path
from napari_domaingen.models.dgm import PRESETS, DGMEncoder
from napari_domaingen.progress import run


@pytest.fixture(scope="module")
def model() -> SwapModel:
    torch.manual_seed(0)
    return SwapModel(DGMEncoder(PRESETS["small"]).eval(), name="random")


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    ihc = data.immunohistochemistry()
    return np.ascontiguousarray(ihc[:100, :130]), np.ascontiguousarray(ihc[200:290, 300:420])


def test_settings_are_validated_when_built():
    cases = [
        ({"overlap": 0.5}, "add --no-seamless"),
        ({"seamless": False, "overlap": 1.0}, "--overlap must be in [0, 1)"),
        ({"seamless": False, "overlap": float("nan")}, "--overlap must be in [0, 1)"),
        ({"block": 32}, "--block must be at least 64 px"),
        ({"style": "point"}, "--style-point expects 'y,x'"),
        ({"style": "point", "point": (1.0, float("inf"))}, "--style-point expects"),
        ({"point": (1, 2)}, "the style rule is 'mean'"),
        ({"style": "region"}, "needs a 2D mask"),
        ({"style": "median"}, "one of mean, point, region"),
        ({"precision": "fp16"}, "--precision must be one of"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SwapSettingsError, match=message.replace("[", r"\[").replace(")", r"\)")):
            SwapSettings(**kwargs)
    assert isinstance(SwapSettingsError("x"), ValueError)
    plain = SwapSettings(seamless=False)
    assert plain.tiling_overlap == 0.25 and "one tiling (overlap 0.25)" in plain.rendering()
    point = SwapSettings(style="point", point=(3, 4))
    assert point.point == (3.0, 4.0) and "patch at (y 3, x 4) of 'he'" in point.style_rule("he")


def test_one_output_naming_scheme(tmp_path):
    out = tmp_path / "a.b.png"
    assert output_path(out, "swap") == out
    assert output_path(out, "recon_anatomy") == tmp_path / "a.b_recon_anatomy.png"
    assert output_path(out, "reverse") == tmp_path / "a.b_reverse.png"
    assert output_name("swap", "A", "S") == "A anatomy × S style"
    assert output_name("reverse", "A", "S") == "S anatomy × A style"
    assert output_name("recon_style", "A", "S") == "S reconstruction"
    with pytest.raises(ValueError, match="unknown swap output"):
        output_path(out, "other")


def test_swap_images_outputs_and_style_rules(model, images):
    anatomy, style = images
    settings = SwapSettings(precision="fp32", reconstructions=True)
    result = run(swap_images(settings, anatomy, style, model=model))
    a, s = encode(model, anatomy, precision="fp32"), encode(model, style, precision="fp32")
    assert result.encoded_now == 2 and sorted(result.outputs) == ["recon_anatomy", "recon_style", "reverse", "swap"]
    assert torch.allclose(result.style, mean_style(s))
    assert np.abs(result.outputs["swap"].astype(int) - render(model, a, mean_style(s)).astype(int)).max() <= 1
    assert np.array_equal(result.outputs["recon_style"], reconstruct(model, s))
    assert result.outputs["reverse"].shape == style.shape and set(result.psnr) == {"recon_anatomy", "recon_style"}
    # cached encodings are used; the point rule is style_at on the seamless encoding
    cached = SwapSettings(precision="fp32", style="point", point=(70, 100))
    again = run(swap_images(cached, anatomy, style, model=model, encoded=(a, s)))
    assert again.encoded_now == 0 and list(again.outputs) == ["swap"]
    assert torch.allclose(again.style, style_at(s, 70, 100), atol=1e-5)
    assert torch.allclose(style_vector(model, cached, style), again.style)
    # one image for both: encoded once, no style reconstruction or reverse swap
    same = run(swap_images(settings, anatomy, anatomy, model=model, same=True))
    assert same.encoded_now == 1 and sorted(same.outputs) == ["recon_anatomy", "swap"]
    variants = run(swap_images(SwapSettings(precision="fp32"), anatomy, style, model=model, variants=3, seed=1))
    assert variants.variants.shape == (3, *anatomy.shape) and len(variants.centres) == 3 and not variants.outputs
    mask = np.zeros(style.shape[:2], bool)
    mask[:40, :40] = True
    region = run(swap_images(SwapSettings(style="region", mask=mask), anatomy, style, model=model, encoded=(a, s)))
    assert torch.allclose(region.style, mean_style(s, mask))
    with pytest.raises(SwapSettingsError, match="lies outside the style image"):
        run(swap_images(SwapSettings(style="point", point=(95, 3)), anatomy, style, model=model))
    with pytest.raises(SwapSettingsError, match="is smaller than one 8 × 8 patch"):
        run(swap_images(settings, anatomy[:5], style, model=model))


def test_style_level_and_interrupted_slide_job(model, images, tmp_path):
    levels = [np.zeros((6000, 5000, 3), np.uint8), np.zeros((3000, 2500, 3), np.uint8)]
    level, factor = style_level(levels)
    assert level is levels[1] and factor == 2.0
    anatomy, style = images
    slide = np.tile(anatomy, (3, 3, 1))

    class Interrupted:
        shape = slide.shape
        reads = 0

        def __getitem__(self, index):
            Interrupted.reads += 1
            if Interrupted.reads > 1:
                raise KeyboardInterrupt  # Ctrl-C while the second block is read
            return slide[index]

    out = tmp_path / "s.ome.zarr"
    settings = SwapSettings(precision="fp32", block=128)
    with pytest.raises(KeyboardInterrupt):
        run(swap_slide_job(settings, Interrupted(), style, out, model=model))
    assert list(tmp_path.iterdir()) == []  # no output, no hidden temporary folder
    with pytest.raises(SwapSettingsError, match="point or mean style"):
        run(swap_slide_job(SwapSettings(style="region", mask=np.ones((2, 2))), slide, style, out, model=model))
    with pytest.raises(SwapSettingsError, match="lies outside the style image"):
        point = SwapSettings(style="point", point=(150, 10))
        run(swap_slide_job(point, slide, style, out, style_factor=1.5, model=model))
    result = run(swap_slide_job(SwapSettings(precision="fp32", block=256), slide, style, out, model=model))
    assert result.levels == [slide.shape[:2]] and out.is_dir()


def test_swap_files_guards_inputs_and_every_output(tmp_path, images):
    from skimage.io import imsave

    from napari_domaingen.core.swap_files import swap_files
    from napari_domaingen.io.output_guard import InputError, OutputError

    anatomy, style = tmp_path / "a.png", tmp_path / "o_recon_style.png"
    imsave(str(anatomy), images[0], check_contrast=False)
    imsave(str(style), images[1], check_contrast=False)
    never = SwapSettings(model=str(tmp_path / "no-model.pt"))  # nothing gets as far as loading it
    with pytest.raises(InputError, match="missing.png: no such file"):
        run(swap_files(never, tmp_path / "missing.png", style, tmp_path / "o.png"))
    with pytest.raises(OutputError, match="would overwrite the input"):
        run(swap_files(never, anatomy, style, anatomy))
    recon = SwapSettings(model=never.model, reconstructions=True)
    with pytest.raises(OutputError, match="o_recon_style.png: this output would overwrite the input"):
        run(swap_files(recon, anatomy, style, tmp_path / "o.png"))  # OUT_recon_style is the style image
    zarr_slide = tmp_path / "slide.ome.zarr"
    zarr_slide.mkdir()
    with pytest.raises(OutputError, match="inside the input folder"):
        run(swap_files(never, zarr_slide, style, zarr_slide / "x.ome.tif"))
    with pytest.raises(SwapSettingsError, match="must end in .png"):
        run(swap_files(never, anatomy, style, tmp_path / "o.gif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "o_recon_style.png", "slide.ome.zarr"]
