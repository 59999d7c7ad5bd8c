"""MaskGen vs ERM cost on this machine: training step time and inference time, same crop and UNet.

Data: TCGA-DU-7294 T1 with its tumour labels (../shared/data/mri). Extractor: the anatomix reference fixture (the
real architecture with random weights; its cost is that of the real model). Each side (MaskGen, ERM) runs in its
own child process, so its peak memory is its own, and the two alternate over ``--rounds`` rounds to even out the
noise of a shared machine; the reported figure per side is the median over rounds of the median step time.

Training: the real :func:`train` job (crops with the paper's augmentations, frozen features of the augmented
crops, view masking, DiceCE, AdamW), batch 2; the first step (warm-up) and the last (checkpoint write) are not
timed. Inference: :func:`segment` on a 128³ region around the tumour, window = crop, overlap 0.5, MaskGen with
whole-volume features shared across windows (default) and with per-window features (the MaskGen code's way).

Usage: python benchmarks/bench_maskgen.py [--crop 64] [--steps 6] [--rounds 2] [--presets paper cpu] [--full-volume]
(``--full-volume``: inference over the whole 240×240×155 volume, as the paper's per-volume figure; slow on a CPU,
use ``--rounds 1``.)
Paper (one RTX 6000 Ada): training +25.8 %, inference +8.0 %. Targets on this CPU: ≤ 30 %, ≤ 15 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED, peak_rss_gb, reference_weights, require, run_child

TCGA = SHARED / "data" / "mri" / "tcga-du-7294"


def _data():
    import numpy as np

    from napari_domaingen.io.nifti import read_nifti

    image = read_nifti(require(TCGA / "TCGA-DU-7294_t1_bet.nii.gz"))
    labels = read_nifti(require(TCGA / "tcga-du-7294_seg-fusion-simple.nii.gz"), as_label=True)
    centre = [int(np.mean(axis)) for axis in np.nonzero(labels.data)]
    region = tuple(slice(max(0, c - 64), max(0, c - 64) + 128) for c in centre)
    return image, labels, region


def child(method: str, preset: str, crop: int, steps: int, full_volume: bool = False) -> dict:
    from napari_domaingen.core.maskgen_training import TrainSettings, train
    from napari_domaingen.core.segment import SegmentSettings, segment
    from napari_domaingen.core.segmentation_data import labelled_volume

    image, labels, region = _data()
    volume = labelled_volume(image.data, labels.data, "tcga", spacing=image.spacing)
    folder = Path(tempfile.mkdtemp())
    weights = reference_weights(folder / "anatomix.pth")
    settings = TrainSettings(
        use_features=method == "maskgen",
        weights=str(weights),
        preset=preset,
        crop=crop,
        steps=steps,
        batch_size=2,
        checkpoint_every=0,
        validate_every=0,
        device="cpu",
    )
    times: list[float] = []
    last = None
    for update in train([volume], folder / "model.pt", settings):
        if update.get("loss") is not None:
            now = time.perf_counter()
            if last is not None:
                times.append(now - last)
            last = now
        elif update["stage"] == "train":
            last = time.perf_counter()
    timed = times[1:-1]  # drop the warm-up step and the step that writes the checkpoint
    out = {"method": method, "preset": preset, "step_s": statistics.median(timed), "steps_s": timed}
    image_region = image.data if full_volume else image.data[region]
    modes = ["shared"] if full_volume else ["shared", "per-window"] if method == "maskgen" else ["shared"]
    for mode in modes:
        for _attempt in range(1 if full_volume else 2):  # 128³: the first run warms up; features cache cleared
            from napari_domaingen.core.features import FEATURE_CACHE

            FEATURE_CACHE.clear()
            start = time.perf_counter()
            for _ in segment(image_region, folder / "model.pt", SegmentSettings(feature_mode=mode, device="cpu")):
                pass
            out[f"infer_{mode}_s"] = time.perf_counter() - start
    out["peak_rss_gb"] = peak_rss_gb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--child", nargs=5, metavar=("METHOD", "PRESET", "CROP", "STEPS", "FULL"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--full-volume",
        action="store_true",
        help="time inference on the whole 240×240×155 volume (once, shared features) instead of 128³",
    )
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="training steps per run (2 of them are not timed)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--presets", nargs="+", default=["paper", "cpu"])
    args = parser.parse_args()
    if args.child:
        method, preset, crop, steps, full = args.child
        print(json.dumps(child(method, preset, int(crop), int(steps), full == "1")))
        return
    require(TCGA)
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; crop {args.crop}³, batch 2, "
        f"{args.steps} steps per run, {args.rounds} rounds",
        flush=True,
    )
    for preset in args.presets:
        runs: dict[str, list[dict]] = {"erm": [], "maskgen": []}
        for round_ in range(args.rounds):
            order = ["erm", "maskgen"] if round_ % 2 == 0 else ["maskgen", "erm"]
            for method in order:
                result = run_child(
                    Path(__file__), method, preset, str(args.crop), str(args.steps), "1" if args.full_volume else "0"
                )
                runs[method].append(result)
                print(
                    f"  [{preset}] {method}: step {result['step_s']:.2f} s, inference "
                    + ", ".join(f"{k[6:-2]} {v:.2f} s" for k, v in result.items() if k.startswith("infer_"))
                    + f", peak RSS {result['peak_rss_gb']:.2f} GB",
                    flush=True,
                )

        def med(method: str, key: str, runs: dict = runs) -> float:
            return statistics.median(r[key] for r in runs[method])

        train_ratio = med("maskgen", "step_s") / med("erm", "step_s")
        shared = med("maskgen", "infer_shared_s") / med("erm", "infer_shared_s")
        where = "whole volume 240×240×155" if args.full_volume else "128³"
        print(f"\n{preset} UNet, crop {args.crop}³ (medians over {args.rounds} rounds):")
        print(
            f"  training step: MaskGen {med('maskgen', 'step_s'):.2f} s vs ERM {med('erm', 'step_s'):.2f} s "
            f"-> overhead {100 * (train_ratio - 1):+.1f} % (paper +25.8 % on GPU; target <= 30 %)"
        )
        print(
            f"  inference {where}: MaskGen shared features {med('maskgen', 'infer_shared_s'):.2f} s vs ERM "
            f"{med('erm', 'infer_shared_s'):.2f} s -> overhead {100 * (shared - 1):+.1f} % "
            f"(paper +8.0 %; target <= 15 %)"
        )
        if not args.full_volume:
            per_window = med("maskgen", "infer_per-window_s") / med("erm", "infer_shared_s")
            print(
                f"  inference {where}: MaskGen per-window features {med('maskgen', 'infer_per-window_s'):.2f} s "
                f"-> overhead {100 * (per_window - 1):+.1f} % (the MaskGen code's way)"
            )
        print(
            f"  peak RSS: MaskGen {max(r['peak_rss_gb'] for r in runs['maskgen']):.2f} GB, "
            f"ERM {max(r['peak_rss_gb'] for r in runs['erm']):.2f} GB\n",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
