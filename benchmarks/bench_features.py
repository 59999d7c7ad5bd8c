"""Feature extraction: our default pipeline vs the MaskGen code's inference setting, one run, same input.

Reference: MONAI sliding window 128³, overlap 0.5, constant blending, fp32, then the affine-free InstanceNorm
the MaskGen code applies. Ours: ``extract_features`` with default settings. Input: the BraTS T1 of
../shared/data/mri cropped to 155×192×160 (display order), min-max scaled; weights: the anatomix reference
fixture (real architecture, random weights). Each side runs in its own process so its peak RSS is its own.

    python benchmarks/bench_features.py            # prints the table
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
from _common import ANATOMIX_FIXTURE, SHARED, peak_rss_gb, reference_weights, require, run_child

CROP = (155, 192, 160)
IMAGE = SHARED / "data" / "mri" / "brats23-gli-00001-000" / "BraTS-GLI-00001-000-t1n.nii.gz"


def load_crop() -> np.ndarray:
    from napari_domaingen.io.nifti import read_nifti

    data = read_nifti(IMAGE).data
    starts = [(s - c) // 2 for s, c in zip(data.shape, CROP)]
    return np.ascontiguousarray(data[tuple(slice(a, a + c) for a, c in zip(starts, CROP))])


def child(side: str, weights: str, out: str) -> None:
    import torch

    volume = load_crop()
    base = peak_rss_gb()
    start = time.perf_counter()
    if side == "reference":
        from monai.inferers import sliding_window_inference

        from napari_domaingen.core.features import normalise, preprocess
        from napari_domaingen.models.anatomix import load_anatomix

        model = load_anatomix(weights)
        x = torch.from_numpy(preprocess(volume))[None, None]
        with torch.inference_mode():
            raw = sliding_window_inference(x, (128, 128, 128), 1, model.features, overlap=0.5, mode="constant")
            features = normalise(raw[0], "instance").numpy()
        info = {"setting": "MONAI SW 128³, overlap 0.5, constant, fp32"}
    else:
        from napari_domaingen.core.features import FeatureCache, FeatureSettings, extract_features
        from napari_domaingen.progress import run

        result = run(extract_features(volume, FeatureSettings(weights=weights), cache=FeatureCache()))
        features = result.features
        info = {"setting": f"{result.strategy} volume, {result.precision}, {result.normalisation}, {result.device}"}
    seconds = time.perf_counter() - start
    np.save(out, features.astype(np.float32))
    print(json.dumps({"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "before_gb": base, **info}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "WEIGHTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import torch

    require(IMAGE)
    require(ANATOMIX_FIXTURE)
    with tempfile.TemporaryDirectory() as tmp:
        weights = reference_weights(Path(tmp) / "anatomix_fixture.pth")
        sides = {}
        for side in ("reference", "ours"):
            out = Path(tmp) / f"{side}.npy"
            sides[side] = run_child(Path(__file__), side, str(weights), str(out))
            sides[side]["features"] = np.load(out)
    ref, ours = sides["reference"]["features"], sides["ours"]["features"]
    dot = (ref * ours).sum(0)
    cosine = dot / (np.linalg.norm(ref, axis=0) * np.linalg.norm(ours, axis=0) + 1e-12)
    foreground = load_crop() > 0
    print(
        f"input: {IMAGE.name} cropped to {CROP}, weights: anatomix fixture (random), "
        f"torch threads: {torch.get_num_threads()}"
    )
    for side in ("reference", "ours"):
        s = sides[side]
        print(f"  {side:9s}: {s['seconds']:7.1f} s  peak RSS {s['peak_rss_gb']:.2f} GB  ({s['setting']})")
    print(
        f"time ratio reference/ours : {sides['reference']['seconds'] / sides['ours']['seconds']:.2f}x   (target >= 3)"
    )
    print(
        "peak RSS ratio ours/ref   : "
        f"{sides['ours']['peak_rss_gb'] / sides['reference']['peak_rss_gb']:.2f}    (target <= 1.5)"
    )
    print(
        f"mean cosine (all voxels)  : {cosine.mean():.4f}  (target >= 0.99); "
        f"brain voxels: {cosine[foreground].mean():.4f}"
    )
    print(f"max |delta|               : {np.abs(ref - ours).max():.4f}  (features are z-scored per channel)")


if __name__ == "__main__":
    main()
