"""``domaingen swap-train``: train, fine-tune or resume a DGM-DR anatomy/style model on 2D histology images, through
the one training loop (rules: docs/training.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.swap_training import SwapTrainSettings
from ._training import add_run_options, closing_lines, fit_and_report, loop_options, plan_run


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ..models.dgm import PRESETS

    d = SwapTrainSettings()
    st = commands.add_parser(
        "swap-train",
        help="train, fine-tune or resume a DGM-DR anatomy/style model on 2D histology images",
        description="Train a DGM-DR anatomy/style model on random crops (with flips and 90° rotations) of IMAGES "
        "with the paper's losses (reconstruction, anatomy and characteristics consistency over num-mixes style "
        "mixes). The model file is written atomically every --checkpoint-every steps and at the end "
        "(MODEL.history.csv beside it; MODEL.best.pt by reconstruction PSNR with --val); Ctrl-C keeps the last one "
        "and --resume continues it exactly. Rules: docs/training.md.",
    )
    st.add_argument("images", nargs="+", metavar="IMAGE", help="training images (PNG, JPEG, TIFF, SVS, ...)")
    st.add_argument(
        "--val",
        nargs="+",
        metavar="IMAGE",
        default=[],
        help="validation images: reconstruction PSNR of fixed tiles of them",
    )
    add_run_options(st, d, validation="validation PSNR (with --val)")
    st.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=d.preset,
        help="encoder size of a new model: small (64 px tiles, 2.7M parameters, CPU-friendly) or paper "
        f"(ViT-B/16 at 224 px) (default: {d.preset})",
    )
    st.add_argument("--batch", type=int, default=d.batch_size, help=f"crops per step (default: {d.batch_size})")
    st.add_argument(
        "--mixes",
        type=int,
        default=d.num_mixes,
        help=f"style mixes per image and step (default: {d.num_mixes}, as the paper)",
    )
    st.add_argument(
        "--stain-pairs",
        type=float,
        default=d.stain_pairs,
        metavar="WEIGHT",
        help="weight of the stain-pair losses (ours, not the paper's: each crop re-stained at random must keep its "
        "anatomy tokens and render in the other stain with the other's styles; the shipped model used 1) "
        f"(default: {d.stain_pairs:g}, the paper's losses only)",
    )
    st.set_defaults(func=run)


def _read_images(paths: list[str], tile: int) -> list[np.ndarray]:
    from ..io.histology import read_histology

    images = []
    for path in paths:
        image = read_histology(path)
        height, width = image.data.shape[:2]
        note = f", reduced {image.downsamples[0]:g}× (too large to load whole)" if image.downsamples[0] != 1 else ""
        print(f"  {path}: {height} × {width} px{note}")
        if min(height, width) < tile:
            print(f"  warning: {path} is smaller than the model's {tile} px tile; its crops are padded by reflection")
        images.append(image.data)
    return images


def run(args: argparse.Namespace) -> int:
    from ..core.swap_model import DEFAULT_MODEL, default_model_path, read_swap_file
    from ..core.swap_training import train_swap
    from ..models.dgm import PRESETS, ViTConfig

    if args.init == DEFAULT_MODEL:
        args.init = str(default_model_path())
        if not Path(args.init).is_file():
            raise FileNotFoundError(
                f"the shipped anatomy/style model is missing from the installation ({args.init}); "
                "reinstall napari-domaingen or pass --init PATH"
            )
    plan = plan_run(
        args,
        SwapTrainSettings().steps,
        read_swap_file,
        "its encoder and normalisation, with the images, steps and lr given here",
        inputs=[*args.images, *args.val],
    )
    config = ViTConfig(**plan.stored["config"]) if plan.stored is not None else PRESETS[args.preset]
    settings = SwapTrainSettings(
        preset=args.preset,
        batch_size=args.batch,
        num_mixes=args.mixes,
        stain_pairs=args.stain_pairs,
        **loop_options(args, plan.steps),
    )
    settings.check()
    print(f"Reading {len(args.images)} training and {len(args.val)} validation image(s) ...", flush=True)
    images, validation = _read_images(args.images, config.img_size), _read_images(args.val, config.img_size)
    names = [Path(path).name for path in args.images]
    job = train_swap(
        images,
        plan.out,
        settings,
        init=plan.init,
        resume=plan.resume,
        names=names,
        card={"training_images": names},
        validation=validation,
    )
    result = fit_and_report("swap-train", job, plan, args.quiet, "run the same command (same images) with")
    if result is None:
        return 130
    if result.checkpoint is not None:
        c = config
        print(
            f"wrote {result.checkpoint}: ViT {c.img_size} px tiles, patch {c.patch_size}, {c.embed_dim}-d tokens, "
            f"depth {c.depth}"
        )
        for line in closing_lines(result):
            print(f"  {line}")
        print(
            f"  swap with: domaingen swap ANATOMY.png STYLE.png --model {result.best or result.checkpoint} "
            "--out OUT.png"
        )
    return 0
