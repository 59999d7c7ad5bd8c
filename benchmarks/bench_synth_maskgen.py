"""MaskGen with a given extractor vs ERM across a contrast shift: Dice on an unseen contrast.

TCGA-DU-7294 (../shared/data/mri): train on its T1, T2 and T1c volumes with the tumour labels
(``seg-fusion-mav``: 1 and 2), then segment its FLAIR, which neither model saw. Both runs use the same UNet preset,
crop, steps, batch, learning rate, augmentations and seed; MaskGen adds the frozen ``--weights`` features with
view masking p. Prints Dice per class and for the whole tumour (1 ∪ 2) on FLAIR, and on T1c (a training contrast)
for reference.

    python benchmarks/bench_synth_maskgen.py --weights MODEL.pt [--steps 300] [--crop 64] [--mask-rate 0.75]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, require

from napari_domaingen.core.maskgen_training import TrainSettings, train
from napari_domaingen.core.segment import SegmentSettings, segment
from napari_domaingen.core.segmentation_data import labelled_volume
from napari_domaingen.io.nifti import read_nifti
from napari_domaingen.progress import run

TCGA = SHARED / "data" / "mri" / "tcga-du-7294"
TRAIN = {"T1": "TCGA-DU-7294_t1_bet.nii.gz", "T2": "TCGA-DU-7294_t2_bet.nii.gz", "T1c": "TCGA-DU-7294_t1c_bet.nii.gz"}
TEST = {"FLAIR (unseen)": "TCGA-DU-7294_fla_bet.nii.gz", "T1c (trained on)": "TCGA-DU-7294_t1c_bet.nii.gz"}
LABELS = "tcga-du-7294_seg-fusion-mav.nii.gz"


def dice(predicted: np.ndarray, truth: np.ndarray, values: tuple[int, ...]) -> float:
    a, b = np.isin(predicted, values), np.isin(truth, values)
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="extractor checkpoint path or registry name")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mask-rate", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    truth = read_nifti(require(TCGA / LABELS), as_label=True)
    volumes = []
    for contrast, name in TRAIN.items():
        image = read_nifti(require(TCGA / name))
        volumes.append(
            labelled_volume(
                image.data,
                truth.data,
                f"TCGA-DU-7294 {contrast}",
                spacing=image.spacing,
                image_affine=image.display_affine,
                labels_affine=truth.display_affine,
            )
        )
    tests = {label: read_nifti(require(TCGA / name)) for label, name in TEST.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("ERM", "MaskGen"):
            settings = TrainSettings(
                use_features=method == "MaskGen",
                weights=args.weights,
                mask_rate=args.mask_rate,
                preset="cpu",
                crop=args.crop,
                steps=args.steps,
                batch_size=args.batch,
                lr=args.lr,
                device="cpu",
                checkpoint_every=0,
                validate_every=0,
                seed=args.seed,
            )
            start = time.perf_counter()
            result = run(train(volumes, Path(tmp) / f"{method}.pt", settings))
            seconds = time.perf_counter() - start
            row = {
                "method": method,
                "train_seconds": round(seconds, 1),
                "final_loss": float(np.mean(result.history["loss"][-20:])),
            }
            for label, image in tests.items():
                predicted = run(segment(image.data, result.checkpoint, SegmentSettings(device="cpu"))).labels
                row[label] = {
                    "tumour 1": dice(predicted, truth.data, (1,)),
                    "tumour 2": dice(predicted, truth.data, (2,)),
                    "whole (1∪2)": dice(predicted, truth.data, (1, 2)),
                }
            rows.append(row)
            print(
                f"{method}: trained {args.steps} steps in {seconds:.0f} s (mean loss of the last 20 steps "
                f"{row['final_loss']:.3f})",
                flush=True,
            )
    print(
        f"\nDice on TCGA-DU-7294, trained on T1/T2/T1c; UNet preset cpu, crop {args.crop}, {args.steps} steps, batch "
        f"{args.batch}, lr {args.lr:g}, seed {args.seed}; MaskGen: {args.weights} features, p = {args.mask_rate}"
    )
    print(f"{'test contrast':<18}{'method':<9}{'tumour 1':>10}{'tumour 2':>10}{'whole':>8}")
    for label in TEST:
        for row in rows:
            d = row[label]
            print(f"{label:<18}{row['method']:<9}{d['tumour 1']:>10.3f}{d['tumour 2']:>10.3f}{d['whole (1∪2)']:>8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
