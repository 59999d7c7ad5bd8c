"""``domaingen swap``, ``domaingen swap-train`` and the demo's swap, with tiny models made in tmp_path (never the
shipped model, which these tests must not depend on)."""

import numpy as np
import pytest
import torch
from skimage.io import imread, imsave

from napari_domaingen.cli import _report, _training, main
from napari_domaingen.core.swap_model import default_model_path, load_swap_model, read_swap_file, save_swap_model
from napari_domaingen.models.dgm import PRESETS, DGMEncoder

# a few steps of the small preset on the CPU: a batch of 2 crops and one style mix keep each step well under a second
FAST = ["--batch", "2", "--mixes", "1", "--device", "cpu"]


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    return save_swap_model(tmp_path / "m.pt", DGMEncoder(PRESETS["small"]))


@pytest.fixture
def pair(tmp_path):
    """Anatomy (IHC crop, 96 × 80) and style (H&E-like crop, 72 × 90) PNGs: larger than one 64 px tile on one
    side, smaller on the other, so both tiling and padding are exercised."""
    from napari_domaingen.io import samples

    anatomy, style = tmp_path / "anatomy.png", tmp_path / "style.png"
    imsave(str(anatomy), samples.ihc().data[100:196, 200:280], check_contrast=False)
    imsave(str(style), samples.he_like_restain().data[300:372, 40:130], check_contrast=False)
    return anatomy, style


@pytest.fixture
def no_default_model(monkeypatch, tmp_path):
    """The shipped model is absent."""
    from napari_domaingen.core import swap_model

    monkeypatch.setattr(swap_model, "default_model_path", lambda: tmp_path / "no-such-dir" / "dgm-small-histology.pt")


def _error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"domaingen {command}: error: ")
    return err


# ----------------------------------------------------------------------------------------------------- swap


def _swap_command(anatomy, style, out, model, *options) -> list[str]:
    return ["swap", str(anatomy), str(style), "--out", str(out), "--model", str(model), *options]


def test_swap_point_and_mean_style(tmp_path, tiny_model, pair, capsys):
    from napari_domaingen.core.swap_job import swap_pair

    anatomy, style = pair
    model = load_swap_model(tiny_model)
    outputs = {}
    for name, options in {"point": ["--style-point", "30,45"], "mean": ["--style", "mean"], "default": []}.items():
        out = tmp_path / f"out_{name}.png"
        assert main(_swap_command(anatomy, style, out, tiny_model, "--device", "cpu", *options)) == 0
        outputs[name] = imread(str(out))
        assert outputs[name].shape == (96, 80, 3) and outputs[name].dtype == np.uint8
    printed = capsys.readouterr().out
    assert "the style of the patch at (y 30, x 45)" in printed and "the mean style of" in printed
    # the CLI writes what the core computes
    a, s = imread(str(anatomy)), imread(str(style))
    assert np.array_equal(outputs["point"], swap_pair(model, a, s, (30, 45)))
    assert np.array_equal(outputs["mean"], swap_pair(model, a, s, None))
    assert np.array_equal(outputs["default"], outputs["mean"])  # mean style is the default
    assert not np.array_equal(outputs["point"], outputs["mean"])
    assert not (tmp_path / "out_mean_recon_anatomy.png").exists()


def test_swap_rendering_options(tmp_path, tiny_model, pair, capsys):
    from napari_domaingen.core.swap_job import swap_pair

    anatomy, style = pair
    a, s = imread(str(anatomy)), imread(str(style))
    model = load_swap_model(tiny_model)
    runs = {
        "plain": (
            ["--plain"],
            {"seamless": False, "detail": False, "tissue_only": False, "glass": False, "colours": False},
        ),
        "plain_overlap": (
            ["--plain", "--overlap", "0.5"],
            {"seamless": False, "detail": False, "tissue_only": False, "glass": False, "colours": False},
        ),
        "no_glass": (["--no-glass"], {"glass": False}),
        "no_colours": (["--no-match-colours"], {"colours": False}),
        "no_detail": (["--no-detail"], {"detail": False}),
        "single": (["--no-seamless", "--no-tissue-style"], {"seamless": False, "tissue_only": False}),
        "fp32": (["--precision", "fp32"], {"precision": "fp32"}),
    }
    outputs = {}
    for name, (options, expected) in runs.items():
        out = tmp_path / f"{name}.png"
        assert main(_swap_command(anatomy, style, out, tiny_model, "--device", "cpu", *options)) == 0
        outputs[name] = imread(str(out))
        overlap = 0.5 if name == "plain_overlap" else 0.25
        assert np.array_equal(outputs[name], swap_pair(model, a, s, None, overlap=overlap, **expected)), name
    printed = capsys.readouterr().out
    assert "one tiling, overlap 0.5, no detail carry-over" in printed and "seamless, detail carried over" in printed
    assert len({out.tobytes() for out in outputs.values()}) >= 6


def test_swap_reconstructions(tmp_path, tiny_model, pair, capsys):
    anatomy, style = pair
    out = tmp_path / "sub" / "swapped.png"  # the folder is created
    assert main(_swap_command(anatomy, style, out, tiny_model, "--reconstructions", "--style-point", "10,10")) == 0
    shapes = {
        "swapped.png": (96, 80, 3),
        "swapped_recon_anatomy.png": (96, 80, 3),
        "swapped_recon_style.png": (72, 90, 3),
        "swapped_reverse.png": (72, 90, 3),
    }
    for name, shape in shapes.items():
        image = imread(str(out.parent / name))
        assert image.shape == shape and image.dtype == np.uint8, name
    printed = capsys.readouterr().out
    assert printed.count("PSNR") == 2 and "reverse swap" in printed


def test_swap_reads_16_bit_rgba_and_grayscale(tmp_path, tiny_model, pair):
    from napari_domaingen.io import samples

    rgb = samples.ihc().data[:80, :70].astype(np.uint16) * 257
    rgba = np.concatenate([rgb, np.full((80, 70, 1), 65535, np.uint16)], axis=-1)
    anatomy = tmp_path / "rgba16.tif"
    imsave(str(anatomy), rgba, check_contrast=False)
    grey = tmp_path / "grey.png"
    imsave(str(grey), samples.ihc().data[:50, :60, 0], check_contrast=False)
    out = tmp_path / "o.tif"
    assert main(["swap", str(anatomy), str(grey), "--out", str(out), "--model", str(tiny_model)]) == 0
    assert imread(str(out)).shape == (80, 70, 3)


def test_swap_errors(tmp_path, tiny_model, pair, capsys, no_default_model):
    from napari_domaingen.core.maskgen import ModelSpec, save_model
    from napari_domaingen.models.segunet import SegUNet

    anatomy, style = pair
    spec = ModelSpec(
        unet={"in_channels": 1, "num_classes": 2, "base": 4, "levels": 2},
        crop=(32, 32, 32),
        label_values=(0, 1),
        class_names=("background", "tumour"),
        features=None,
        mask_rate=0.0,
    )
    maskgen = save_model(tmp_path / "maskgen.pt", SegUNet(**spec.unet), spec)
    tiny = tmp_path / "tiny.png"
    imsave(str(tiny), np.full((5, 40, 3), 200, np.uint8), check_contrast=False)
    out = str(tmp_path / "o.png")
    model = ["--model", str(tiny_model)]
    cases = [
        ([str(tmp_path / "missing.png"), str(style), *model], "missing.png: no such file"),
        ([str(anatomy), str(tmp_path / "gone.tif"), *model], "gone.tif: no such file"),
        ([str(anatomy), str(style), *model, "--style-point", "12;30"], "--style-point expects 'y,x'"),
        ([str(anatomy), str(style), *model, "--style-point", "1,2,3"], "--style-point expects 'y,x'"),
        ([str(anatomy), str(style), *model, "--style-point", "a,b"], "--style-point expects 'y,x'"),
        ([str(anatomy), str(style), *model, "--style-point", "72,10"], "lies outside the style image"),
        ([str(anatomy), str(style), *model, "--style-point", "10,90"], "lies outside the style image"),
        ([str(anatomy), str(style), "--model", str(maskgen)], "not a DGM-DR anatomy/style model"),
        ([str(anatomy), str(style), "--model", str(anatomy)], "anatomy.png"),
        ([str(anatomy), str(style), "--model", str(tmp_path / "nope.pt")], "nope.pt"),
        ([str(anatomy), str(style)], "shipped anatomy/style model is missing"),
        ([str(tiny), str(style), *model], "smaller than one 8 × 8 patch"),
        ([str(anatomy), str(tiny), *model], "smaller than one 8 × 8 patch"),
        ([str(anatomy), str(style), *model, "--plain", "--overlap", "1.5"], "--overlap must be in [0, 1)"),
        ([str(anatomy), str(style), *model, "--overlap", "0.5"], "add --no-seamless (or --plain)"),
    ]
    for argv, message in cases:
        assert main(["swap", *argv, "--out", out]) == 2, argv
        assert message in _error(capsys, "swap"), argv
    assert main(["swap", str(anatomy), str(style), *model, "--out", str(tmp_path / "o.gif")]) == 2
    assert "must end in .png" in _error(capsys, "swap")
    assert main(["swap", str(anatomy), str(style), *model, "--out", str(anatomy)]) == 2
    assert "would overwrite the input" in _error(capsys, "swap")
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(SystemExit) as exit_info:  # both style choices at once: argparse's usage error
        main(["swap", str(anatomy), str(style), "--out", out, "--style", "mean", "--style-point", "1,1"])
    assert exit_info.value.code == 2


# ----------------------------------------------------------------------------------------------- swap-train


@pytest.fixture
def train_pngs(tmp_path):
    from napari_domaingen.io import samples

    paths = [tmp_path / "t1.png", tmp_path / "t2.png"]
    imsave(str(paths[0]), samples.ihc().data[:90, :100], check_contrast=False)
    imsave(str(paths[1]), samples.he_like_restain().data[200:280, 300:370], check_contrast=False)
    return [str(p) for p in paths]


def test_swap_train_writes_a_model(tmp_path, train_pngs, capsys):
    out = tmp_path / "trained.pt"
    assert main(["swap-train", *train_pngs, "--out", str(out), "--steps", "3", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "step 3/3" in printed and f"wrote {out}" in printed and "domaingen swap" in printed
    stored = read_swap_file(out)
    assert stored["training"]["step"] == 3 and stored["card"]["steps"] == 3
    assert (tmp_path / "trained.history.csv").read_text().startswith("step,loss,lr,seconds,val_score,anatomy")
    assert stored["card"]["training_images"] == ["t1.png", "t2.png"]
    model = load_swap_model(out)
    assert model.config == PRESETS["small"]
    # and it swaps
    assert main(["swap", train_pngs[0], train_pngs[1], "--out", str(tmp_path / "s.png"), "--model", str(out)]) == 0


class _Interrupt(_report.TrainPrinter):
    """Ctrl-C right after the checkpoint of step 2."""

    def __call__(self, update: dict) -> None:
        super().__call__(update)
        if update.get("checkpoint_step") == 2:
            raise KeyboardInterrupt


def test_swap_train_resume_continues_an_interrupted_run(tmp_path, train_pngs, capsys, monkeypatch):
    reference = tmp_path / "reference.pt"
    # --resume with nothing at --out yet starts a new run (re-running one command after an interruption works)
    assert main(["swap-train", *train_pngs, "--out", str(reference), "--steps", "4", "--resume", *FAST]) == 0
    assert "Nothing to resume" in capsys.readouterr().out

    out = tmp_path / "interrupted.pt"
    with monkeypatch.context() as patch:
        patch.setattr(_training, "TrainPrinter", _Interrupt)
        code = main(["swap-train", *train_pngs, "--out", str(out), "--steps", "4", "--checkpoint-every", "2", *FAST])
    assert code == 130
    assert "(step 2 of 4) is intact" in capsys.readouterr().err
    assert read_swap_file(out)["training"]["step"] == 2

    # no --steps: the run's own 4; --batch/--mixes given differently are ignored (the run's own settings)
    assert main(["swap-train", *train_pngs, "--out", str(out), "--resume", "--batch", "5", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "Resuming" in printed and "at step 2 of 4" in printed and "step 4/4" in printed
    stored = read_swap_file(out)
    assert stored["training"]["step"] == 4 and stored["card"]["steps"] == 4
    expected = read_swap_file(reference)["state_dict"]
    for key, value in stored["state_dict"].items():  # bit-exact with the uninterrupted run
        assert torch.equal(value, expected[key]), key

    # a finished run resumed without more steps: nothing to do, nothing written; with more steps it trains on
    before = out.read_bytes()
    assert main(["swap-train", *train_pngs, "--out", str(out), "--resume", *FAST]) == 0
    assert "nothing to train and nothing written" in capsys.readouterr().out and out.read_bytes() == before
    assert main(["swap-train", *train_pngs, "--out", str(out), "--resume", "--steps", "6", *FAST]) == 0
    assert "step 6/6" in capsys.readouterr().out and read_swap_file(out)["training"]["step"] == 6
    # the shipped model (a final export) has no run to resume: say so and how to train it further
    assert (
        main(["swap-train", *train_pngs, "--out", str(tmp_path / "y.pt"), "--resume", str(default_model_path()), *FAST])
        == 2
    )
    assert "holds no training state to resume" in _error(capsys, "swap-train")


def test_swap_train_validation_keeps_the_best_model(tmp_path, train_pngs, capsys):
    out = tmp_path / "m.pt"
    assert (
        main(
            [
                "swap-train",
                train_pngs[0],
                "--val",
                train_pngs[1],
                "--out",
                str(out),
                "--steps",
                "2",
                "--validate-every",
                "1",
                *FAST,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "validation reconstruction PSNR" in printed and "best model (validation score" in printed
    assert load_swap_model(tmp_path / "m.best.pt").config == PRESETS["small"]


def test_swap_train_init_and_errors(tmp_path, train_pngs, tiny_model, capsys, no_default_model):
    anatomix_weights = tmp_path / "anatomix.pth"  # a 3D UNet's state dict, as the anatomix weights file
    torch.save({"model.conv.weight": torch.zeros(4, 1, 3, 3, 3)}, anatomix_weights)
    out = tmp_path / "tuned.pt"
    assert main(["swap-train", *train_pngs, "--out", str(out), "--steps", "1", "--init", str(tiny_model), *FAST]) == 0
    assert "Fine-tuning" in capsys.readouterr().out
    assert read_swap_file(out)["card"]["fine_tuned_from"] == str(tiny_model)

    cases = [
        (["--init", str(anatomix_weights)], "this is a feature extractor, not a DGM-DR"),  # not a swap model
        (["--init", "default"], "shipped anatomy/style model is missing"),
        (["--steps", "0"], "at least 1"),
        (["--lr", "0"], "learning rate must be positive"),
    ]
    for options, message in cases:
        assert main(["swap-train", *train_pngs, "--out", str(tmp_path / "x.pt"), *options, *FAST]) == 2, options
        assert message in _error(capsys, "swap-train"), options
    assert main(["swap-train", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.pt"), *FAST]) == 2
    assert "missing.png: no such file" in _error(capsys, "swap-train")
    # --resume on a file that is not a swap model
    assert main(["swap-train", *train_pngs, "--out", str(anatomix_weights), "--resume", *FAST]) == 2
    assert "this is a feature extractor, not a DGM-DR" in _error(capsys, "swap-train")
    assert not (tmp_path / "x.pt").exists()


# ----------------------------------------------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_swaps_the_histology_pair(tmp_path, tiny_model, offline, monkeypatch, capsys):
    from napari_domaingen.core import swap_model

    monkeypatch.setattr(swap_model, "default_model_path", lambda: tiny_model)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train-steps", "0"]) == 0
    for name in ("swap_ihc_anatomy_he_style.png", "swap_he_anatomy_ihc_style.png"):
        image = imread(str(out / name))
        assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert "Anatomy/style swap" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_goes_on_without_the_shipped_model(tmp_path, offline, no_default_model, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train-steps", "0"]) == 0
    printed = capsys.readouterr().out
    assert "Skipping the anatomy/style swap" in printed and "dgm-small-histology.pt" in printed
    assert (out / "ihc.png").is_file() and not (out / "swap_ihc_anatomy_he_style.png").exists()


# ----------------------------------------------------------------------------------------------- swap, whole slide


def _pyramid(path, shape=(640, 700)):
    """A 3-level SubIFD pyramid TIFF (IHC sample), 0.5 µm/px."""
    import tifffile

    from napari_domaingen.io import samples

    base = np.ascontiguousarray(np.tile(samples.ihc().data, (2, 2, 1))[: shape[0], : shape[1]])
    options = {"photometric": "rgb", "tile": (128, 128), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, subifds=2, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **options)
        for k in (2, 4):
            tif.write(base[::k, ::k].copy(), subfiletype=1, **options)
    return base


@pytest.mark.slow
def test_swap_whole_slide_outputs(tmp_path, tiny_model, pair, capsys):
    from napari_domaingen.io.slide import open_slide

    slide = tmp_path / "slide.tif"
    _pyramid(slide)
    style = pair[1]
    for name in ("out.ome.zarr", "out.ome.tif"):
        out = tmp_path / name
        assert main(_swap_command(slide, style, out, tiny_model, "--block", "256", "--device", "cpu")) == 0
        printed = capsys.readouterr().out
        assert "at full resolution in 256 px blocks" in printed and "block 9/9" in printed
        assert f"wrote {out}: 1 levels (640 × 700 px), 0.5 µm/px; 9 blocks" in printed
        written = open_slide(out)
        assert written.shape == (640, 700) and written.mpp == pytest.approx(0.5)


def test_swap_whole_slide_errors(tmp_path, tiny_model, pair, capsys, monkeypatch):
    from napari_domaingen.io import histology

    slide = tmp_path / "slide.tif"
    _pyramid(slide)
    anatomy, style = pair
    broken = tmp_path / "broken.tif"
    data = slide.read_bytes()
    broken.write_bytes(data[: len(data) - 2000])  # cuts the smallest level's tiles
    cases = [
        ([broken, style, tmp_path / "o.ome.zarr"], "level 2 (160 × 175 px) is truncated"),
        ([slide, style, tmp_path / "o.ome.zarr", "--reconstructions"], "--reconstructions is not available"),
        ([slide, style, tmp_path / "o.ome.zarr", "--block", "8"], "--block must be at least 64 px"),
        ([anatomy, style, tmp_path / "o.png", "--block", "256"], "--block applies to a whole-slide swap"),
        ([slide, style, tmp_path / "o.ome.zarr", "--style-point", "9000,1"], "lies outside the style image"),
    ]
    for (a, s, out, *options), message in cases:
        assert main(_swap_command(a, s, out, tiny_model, "--device", "cpu", *options)) == 2
        assert message in _error(capsys, "swap")
    monkeypatch.setattr(histology, "DEFAULT_MAX_BYTES", 1000)  # the slide no longer fits in memory
    assert main(_swap_command(slide, style, tmp_path / "o.png", tiny_model)) == 2
    assert "too large to swap in memory" in _error(capsys, "swap")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["anatomy.png", "style.png", "m.pt", "slide.tif", "broken.tif"]
    )
