"""Cross-contrast stability of a pretrained extractor on real scans it never saw: linear CKA.

For each pair of co-registered contrasts of one subject (BraTS-GLI-00001-000 T1 vs FLAIR and T1 vs T2; TCGA-DU-7294
T1 vs FLAIR and T1 vs T2, from ../shared/data/mri), on the voxels inside both brains (the same 100k-voxel sample
for every row), prints the linear CKA of

* the features of ``--weights`` (e.g. a file written by ``domaingen pretrain-extractor``),
* the same architecture (read from the ``--weights`` file) with random weights (``--random-seeds`` seeds; mean
  and range) as initialised by PyTorch, and — for a batch-norm network — with its batch-norm statistics
  re-estimated on whole-brain renders as pretraining does at the end (``random+cal``),
* raw intensities (1 column; = squared Pearson correlation) and 3×3×3 intensity patches (27 columns),
* the **silhouette control**: the CKA between the features of T1 and the features of the brain mask itself
  (a flat image, 1 inside the brain, 0 outside). A high cross-contrast CKA means little if the features only
  encode the brain's outline, which every contrast shares; an extractor that sees anatomy keeps its
  cross-contrast CKA above its silhouette CKA.

Features go through the product's pipeline (min-max input, whole volume, instance normalisation, fp32).

    python benchmarks/bench_synth_extractor.py --weights MODEL.pt [MODEL2.pt …] [--random-seeds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, require

from napari_domaingen.core.compare import comparison_mask
from napari_domaingen.core.features import FeatureCache, FeatureSettings, extract_features
from napari_domaingen.core.pretrain import PretrainSettings, calibrate_batchnorm
from napari_domaingen.core.stability import linear_cka, patch_rows, sample_indices, voxel_rows
from napari_domaingen.io.nifti import read_nifti
from napari_domaingen.models.anatomix import AnatomixUNet
from napari_domaingen.models.checkpoints import read_checkpoint
from napari_domaingen.models.weights import resolve_weights
from napari_domaingen.progress import run

MRI = SHARED / "data" / "mri"
SAMPLES = 100_000  # brain voxels per pair, as in core.stability.compare
PAIRS = {
    "BraTS-GLI-00001-000": (
        "brats23-gli-00001-000",
        "BraTS-GLI-00001-000-t1n.nii.gz",
        {"FLAIR": "BraTS-GLI-00001-000-t2f.nii.gz", "T2": "BraTS-GLI-00001-000-t2w.nii.gz"},
    ),
    "TCGA-DU-7294": (
        "tcga-du-7294",
        "TCGA-DU-7294_t1_bet.nii.gz",
        {"FLAIR": "TCGA-DU-7294_fla_bet.nii.gz", "T2": "TCGA-DU-7294_t2_bet.nii.gz"},
    ),
}


def random_weights(folder: Path, config: dict, seed: int, calibrated: bool) -> str:
    """A file holding the ``config`` architecture with freshly initialised weights (PyTorch defaults); with
    ``calibrated``, its batch-norm statistics re-estimated as :func:`pretrain` does at the end."""
    torch.manual_seed(seed)
    model = AnatomixUNet(**config)
    if calibrated:
        calibrate_batchnorm(model, PretrainSettings(num_downs=config["num_downs"]))
    path = folder / f"random-{seed}{'-calibrated' if calibrated else ''}.pt"
    torch.save({"state_dict": model.state_dict(), "config": dict(config)}, path)
    return str(path)


def features(image: np.ndarray, weights: str, cache: FeatureCache) -> np.ndarray:
    settings = FeatureSettings(weights=weights, precision="fp32", strategy="whole", normalisation="instance")
    return run(extract_features(image, settings, cache=cache)).features


def cka(features_a: np.ndarray, features_b: np.ndarray, index: np.ndarray) -> float:
    """Linear CKA of two ``(C, Z, Y, X)`` feature stacks on the flat voxel indices ``index``."""
    return linear_cka(voxel_rows(features_a, index), voxel_rows(features_b, index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights",
        required=True,
        nargs="+",
        help="extractor checkpoint path(s) or registry name(s), all of one architecture",
    )
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    configs = [dict(read_checkpoint(resolve_weights(w))["config"]) for w in args.weights]
    config = configs[0]
    if any(c != config for c in configs):
        sys.exit("--weights: every file must have the same architecture (one set of random baselines)")
    baselines = ["random"] + (["random_cal"] if config.get("norm", "batch") == "batch" else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; architecture {config}")
    models = {Path(w).stem: w for w in args.weights}
    width = max(12, *(len(m) + 2 for m in models))
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"random": [random_weights(Path(tmp), config, seed, False) for seed in range(args.random_seeds)]}
        if "random_cal" in baselines:
            files["random_cal"] = [random_weights(Path(tmp), config, seed, True) for seed in range(args.random_seeds)]
        for case, (folder, t1_name, others) in PAIRS.items():
            t1 = read_nifti(require(MRI / folder / t1_name)).data.astype(np.float32)
            silhouette_image = (t1 != 0).astype(np.float32)
            cache = FeatureCache()
            for contrast, name in others.items():
                other = read_nifti(require(MRI / folder / name)).data.astype(np.float32)
                index = sample_indices(t1.shape, comparison_mask(t1, other), SAMPLES)  # one sample for every row
                pair = f"T1 vs {contrast}"
                base: dict = {
                    "case": case,
                    "pair": pair,
                    "voxels": int(index.size),
                    "intensity": linear_cka(np.ravel(t1)[index], np.ravel(other)[index]),
                    "intensity_patch": linear_cka(patch_rows(t1, index), patch_rows(other, index)),
                }
                for key in baselines:
                    values = [cka(features(t1, w, cache), features(other, w, cache), index) for w in files[key]]
                    base |= {
                        f"{key}_mean": float(np.mean(values)),
                        f"{key}_min": float(np.min(values)),
                        f"{key}_max": float(np.max(values)),
                    }
                spans = "  ".join(
                    f"{k.replace('_cal', '+cal')} {base[k + '_mean']:.3f} [{base[k + '_min']:.3f}, "
                    f"{base[k + '_max']:.3f}]"
                    for k in baselines
                )
                print(
                    f"\n{case} {pair} ({index.size} voxels): {spans}  intensity {base['intensity']:.3f}  "
                    f"3³ patch {base['intensity_patch']:.3f}"
                )
                print(f"  {'extractor':<{width}}{'CKA':>8}{'silhouette':>12}")
                for model, weights in models.items():
                    t1_features = features(t1, weights, cache)
                    ours = cka(t1_features, features(other, weights, cache), index)
                    silhouette = cka(t1_features, features(silhouette_image, weights, cache), index)
                    rows.append({**base, "model": model, "ours": ours, "silhouette": silhouette})
                    print(f"  {model:<{width}}{ours:>8.3f}{silhouette:>12.3f}", flush=True)
    print()
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        verdicts = [f"above raw intensity on every pair: {all(r['ours'] > r['intensity'] for r in mine)}"]
        verdicts += [
            f"above every {k.replace('_cal', '+cal')} model: {all(r['ours'] > r[k + '_max'] for r in mine)}"
            for k in baselines
        ]
        verdicts.append(
            f"above its silhouette control (not just the brain outline): "
            f"{all(r['ours'] > r['silhouette'] for r in mine)}"
        )
        print(f"{model}: " + "; ".join(verdicts))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
