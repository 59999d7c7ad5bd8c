"""Options shared by several commands: the feature-extraction options, a choice, a number."""

from __future__ import annotations

import argparse
from typing import Any


def add_feature_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that extracts features."""
    from ..core.features import LAYER_DESCRIPTIONS

    parser.add_argument("--weights", default="anatomix", help="registry name (anatomix, anatomix-dev) or a .pth path")
    parser.add_argument(
        "--layer",
        choices=list(LAYER_DESCRIPTIONS),
        default="final",
        help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()) + " (default: final)",
    )
    norm = "auto: instance (per-channel z-score) for anatomix, unit (voxel-wise L2) for anatomix-dev"
    choice(parser, "--normalisation", ["auto", "instance", "unit", "none"], norm)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    choice(
        parser, "--precision", ["auto", "fp32", "bf16"], "auto: bf16 for anatomix where the hardware has it, else fp32"
    )
    strategy = "auto: whole volume when it fits half the free memory, else sliding window"
    choice(parser, "--strategy", ["auto", "whole", "sliding"], strategy)
    parser.add_argument("--roi", type=int, default=128, help="sliding-window size in voxels (default: 128)")
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default: 0.25)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def choice(parser: Any, flag: str, choices: list[str], what: str) -> None:
    """An option taking one of ``choices``, the first being the default."""
    parser.add_argument(flag, choices=choices, default=choices[0], help=what)


def number(parser: Any, flag: str, default: float, what: str, metavar: str | None = None) -> None:
    """A numeric option of the type of ``default``, its help ending in ``(default: …)``."""
    parser.add_argument(
        flag, type=type(default), default=default, metavar=metavar, help=f"{what} (default: {default:g})"
    )


def feature_settings(args: argparse.Namespace):
    from ..core.features import FeatureSettings

    return FeatureSettings(
        weights=args.weights,
        layer=args.layer,
        normalisation=args.normalisation,
        device=args.device,
        precision=args.precision,
        strategy=args.strategy,
        roi=args.roi,
        overlap=args.overlap,
    )
