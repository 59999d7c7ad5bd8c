"""Train the shipped anatomy/style model (``napari_domaingen/weights/dgm-small-histology.pt``) from scratch.

Data: 24 random re-stainings of scikit-image's IHC image plus the original (core.stain_variants, seed 0) —
nothing from ../shared. Encoder: the ``small`` preset. The fp32 checkpoint goes to ``--work`` (resumable with
``--resume``); the shipped file is the final model stored as float16.

Usage: python scripts/train_default_swap_model.py [--steps 2000] [--work /tmp/dgm-default.pt] [--resume]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from napari_domaingen.core.progress import run
from napari_domaingen.core.stain_variants import training_images
from napari_domaingen.core.swap_model import default_model_path, load_swap_model, save_swap_model
from napari_domaingen.core.swap_training import SwapTrainSettings, train_swap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--work", default="/tmp/dgm-default.pt")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default=str(default_model_path()))
    args = parser.parse_args()
    images = training_images(24, seed=0)
    settings = SwapTrainSettings(
        preset="small",
        steps=args.steps,
        batch_size=8,
        num_mixes=4,
        lr=1e-3,
        weight_decay=0.05,
        warmup=100,
        checkpoint_every=100,
        seed=0,
        device="cpu",
    )
    card = {
        "name": "domaingen DGM-DR small (histology)",
        "data": "scikit-image immunohistochemistry image (512x512) + 24 random re-stainings "
        "(napari_domaingen.core.stain_variants.training_images(24, seed=0)); random 64 px crops, "
        "flips, 90-degree rotations",
        "recipe": "DGM-DR losses (reconstruction, anatomy and characteristics consistency; MSE, weight 1), "
        "4 mixes per batch, batch 8, AdamW lr 1e-3 wd 0.05, 100 warm-up steps then cosine",
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
    }
    start = time.perf_counter()

    def report(update: dict) -> None:
        if update.get("step", 0) % 50 == 0 or update["stage"] != "train":
            print(update["message"], flush=True)

    result = run(train_swap(images, args.work, settings, resume=args.work if args.resume else None, card=card), report)
    if result.checkpoint is None:  # a finished --work resumed without more steps
        print(f"{args.work} has already trained all {result.steps_done} steps; give --steps N > that")
        return
    model = load_swap_model(result.checkpoint)
    model.card["wall_time_s_this_run"] = round(time.perf_counter() - start, 1)
    save_swap_model(args.out, model.encoder, model.mean, model.std, card=model.card, half=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
