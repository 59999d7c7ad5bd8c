"""Cross-contrast stability of a pretrained extractor on real scans it never saw: linear CKA.

For each pair of co-registered contrasts of one subject (BraTS-GLI-00001-000 T1 vs FLAIR and T1 vs T2; TCGA-DU-7294
T1 vs FLAIR and T1 vs T2, from ../shared/data/mri), on the voxels inside both brains (the same 100k-voxel sample
for every row), prints the linear CKA of

* the features of ``--weights`` (e.g. a file written by ``domaingen pretrain-extractor``),
* the same architecture with random weights (``--random-seeds`` seeds; mean and range), as initialised by
  PyTorch and with its batch-norm statistics calibrated like a pretrained one (``random+cal``),
* raw intensities (1 column; = squared Pearson correlation) and 3×3×3 intensity patches (27 columns).

Features go through the product's pipeline (min-max input, whole volume, instance normalisation, fp32).

    python benchmarks/bench_synth_extractor.py --weights MODEL.pt [--random-seeds 3] [--json out.json]

The random baselines use the architecture of ``PretrainSettings()`` (width 8, 16 channels).
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
from _common import SHARED, require  # noqa: E402

from napari_domaingen.core.compare import comparison_mask  # noqa: E402
from napari_domaingen.core.features import FeatureCache, FeatureSettings, extract_features  # noqa: E402
from napari_domaingen.core.pretrain import PretrainSettings, calibrate_batchnorm  # noqa: E402
from napari_domaingen.core.progress import run  # noqa: E402
from napari_domaingen.core.stability import compare  # noqa: E402
from napari_domaingen.io.nifti import read_nifti  # noqa: E402
from napari_domaingen.models.anatomix import AnatomixUNet  # noqa: E402

SYNTH_CONFIG = PretrainSettings().network()

MRI = SHARED / "data" / "mri"
PAIRS = {
    "BraTS-GLI-00001-000": ("brats23-gli-00001-000", "BraTS-GLI-00001-000-t1n.nii.gz",
                            {"FLAIR": "BraTS-GLI-00001-000-t2f.nii.gz", "T2": "BraTS-GLI-00001-000-t2w.nii.gz"}),
    "TCGA-DU-7294": ("tcga-du-7294", "TCGA-DU-7294_t1_bet.nii.gz",
                     {"FLAIR": "TCGA-DU-7294_fla_bet.nii.gz", "T2": "TCGA-DU-7294_t2_bet.nii.gz"}),
}


def random_weights(folder: Path, seed: int, calibrated: bool) -> str:
    """A file holding the ``PretrainSettings()`` architecture with freshly initialised weights (PyTorch defaults); with
    ``calibrated``, its batch-norm statistics re-estimated as :func:`pretrain` does at the end."""
    torch.manual_seed(seed)
    model = AnatomixUNet(**SYNTH_CONFIG)
    if calibrated:
        calibrate_batchnorm(model, PretrainSettings())
    path = folder / f"random-{seed}{'-calibrated' if calibrated else ''}.pt"
    torch.save({"state_dict": model.state_dict(), "config": dict(SYNTH_CONFIG)}, path)
    return str(path)


def features(image: np.ndarray, weights: str, cache: FeatureCache) -> np.ndarray:
    settings = FeatureSettings(weights=weights, precision="fp32", strategy="whole", normalisation="instance")
    return run(extract_features(image, settings, cache=cache)).features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="extractor checkpoint path (or a registry name)")
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; extractor: {args.weights}")
    rows = []
    header = (f"{'case':<22}{'pair':<12}{'ours':>8}{'random (mean [min, max])':>28}{'random+cal':>28}"
              f"{'intensity':>11}{'3³ patch':>10}{'voxels':>9}")
    print(header)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        randoms = [random_weights(Path(tmp), seed, False) for seed in range(args.random_seeds)]
        calibrated = [random_weights(Path(tmp), seed, True) for seed in range(args.random_seeds)]
        for case, (folder, t1_name, others) in PAIRS.items():
            t1 = read_nifti(require(MRI / folder / t1_name)).data.astype(np.float32)
            cache = FeatureCache()
            for contrast, name in others.items():
                other = read_nifti(require(MRI / folder / name)).data.astype(np.float32)
                mask = comparison_mask(t1, other)
                ours = compare(features(t1, args.weights, cache), features(other, args.weights, cache), t1, other,
                               mask=mask)
                row = {"case": case, "pair": f"T1 vs {contrast}", "ours": ours.cka_features,
                       "intensity": ours.cka_intensity, "intensity_patch": ours.cka_intensity_patch,
                       "voxels": ours.n_voxels}
                for key, files in (("random", randoms), ("random_cal", calibrated)):
                    values = [compare(features(t1, w, cache), features(other, w, cache), t1, other, mask=mask)
                              .cka_features for w in files]
                    row |= {f"{key}_mean": float(np.mean(values)), f"{key}_min": float(np.min(values)),
                            f"{key}_max": float(np.max(values))}
                rows.append(row)
                spans = "".join(f"{row[k + '_mean']:>12.3f} [{row[k + '_min']:.3f}, {row[k + '_max']:.3f}]"
                                for k in ("random", "random_cal"))
                print(f"{case:<22}{row['pair']:<12}{row['ours']:>8.3f}{spans}"
                      f"{row['intensity']:>11.3f}{row['intensity_patch']:>10.3f}{row['voxels']:>9d}", flush=True)
    for key in ("random_max", "random_cal_max"):
        better = all(r["ours"] > r["intensity"] and r["ours"] > r[key] for r in rows)
        print(f"ours above raw intensity and above every {key[:-4].replace('_cal', ' calibrated')} model on every "
              f"pair: {better}")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
