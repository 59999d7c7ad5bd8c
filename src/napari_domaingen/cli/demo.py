"""``domaingen demo``: the product on the plugin's own sample data (NIfTI + PNG previews, a short MaskGen/ERM
training and segmentation, an anatomy/style swap of the histology pair); ``--gui`` opens napari instead."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._report import ProgressPrinter, TrainPrinter


def add_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the product on the plugin's own sample data")
    target = demo.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="write the results here (headless)")
    target.add_argument("--gui", action="store_true", help="open napari with the sample data and all dock widgets")
    demo.add_argument(
        "--weights", default="anatomix", help="feature extractor: registry name or .pth (default: anatomix)"
    )
    demo.add_argument(
        "--train-steps",
        type=int,
        default=25,
        metavar="N",
        help="steps of the demo's MaskGen (or, without the anatomix weights, ERM) training on the sample "
        "brain (default: 25, well under a minute on an idle 2-core CPU; 0 skips training and "
        "segmentation)",
    )
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.gui:
        from .._napari.gui import open_demo_viewer

        open_demo_viewer(run=True)
        return 0
    from ..io import samples
    from ..io.label_table import LabelTable
    from ..io.nifti import save_labels_nifti, write_nifti
    from ..io.output_guard import output_folder
    from ..io.preview import mid_slice_montage, save_png

    out = output_folder(args.out)
    written: list[Path] = []
    print("Loading sample data (offline: nilearn's MNI152 template, scikit-image's IHC image) ...")
    volumes = {
        "mni152_t1": samples.mni152_t1(),
        "mni152_flair_like_synthetic": samples.mni152_flair_like(),
        "mni152_tissue_labels": samples.mni152_tissue_labels(),
    }
    for stem, volume in volumes.items():
        if volume.is_label:  # with its class names beside it (<stem>.json, ITK-SNAP <stem>.txt)
            table = LabelTable.from_names(sorted(samples.TISSUE_LABEL_NAMES), samples.TISSUE_LABEL_NAMES)
            written += save_labels_nifti(out / f"{stem}.nii.gz", volume.data, table, source=volume.source)[0]
        else:
            written.append(write_nifti(out / f"{stem}.nii.gz", volume.data, source=volume.source))
        written.append(save_png(out / f"{stem}_preview.png", mid_slice_montage(volume)))
    for stem, image in {"ihc": samples.ihc(), "he_like_restain_synthetic": samples.he_like_restain()}.items():
        written.append(save_png(out / f"{stem}.png", image.data))
    written += _demo_swap(out)
    features, missing = _demo_features(volumes["mni152_t1"], out, args.weights)
    written += features
    if args.train_steps > 0:
        written += _demo_segmentation(
            volumes["mni152_t1"],
            volumes["mni152_tissue_labels"],
            out,
            None if missing else args.weights,
            args.train_steps,
            missing,
        )
    for path in written:
        print(f"  wrote {path}")
    print(f"Done: {len(written)} files in {out}")
    return 0


def _demo_features(volume, out: Path, weights: str) -> tuple[list[Path], str | None]:
    """Features + RGB preview of the sample T1; or no files and a sentence saying which weights file to put where."""
    from ..core.features import FeatureSettings, extract_features
    from ..core.rgb import pca_rgb
    from ..io.nifti import write_nifti
    from ..io.preview import rgb_montage, save_png
    from ..models.weights import WeightsUnavailableError, resolve_weights
    from ..progress import run

    try:
        resolve_weights(weights)
    except WeightsUnavailableError as exc:
        print(f"Skipping feature extraction: the weights '{weights}' are not available.\n  {exc}")
        return [], (
            f"put the weights file '{exc.filename}' (from {exc.repo_url}) at {exc.expected_path} and run the demo again"
        )
    except FileNotFoundError as exc:
        print(f"Skipping feature extraction: the weights '{weights}' are not available.\n  {exc}")
        return [], "give --weights the path of the anatomix weights file (anatomix.pth) and run the demo again"
    print(f"Extracting features with '{weights}' ...")
    result = run(extract_features(volume.data, FeatureSettings(weights=weights)), ProgressPrinter())
    print(f"  {result.describe()}")
    rgb = pca_rgb(result.features, volume.data)
    return [
        write_nifti(out / "mni152_t1_features.nii.gz", result.features, source=volume.source),
        save_png(out / "mni152_t1_features_rgb.png", rgb_montage(rgb, volume.spacing)),
    ], None


def _demo_swap(out: Path) -> list[Path]:
    """Anatomy/style swap of the histology pair with the shipped model, both ways; a note (no files) without it."""
    from ..core.swap import encode, mean_style, render
    from ..core.swap_model import DEFAULT_MODEL, load_swap_model
    from ..io import samples
    from ..io.preview import save_png

    try:
        model = load_swap_model(DEFAULT_MODEL, "cpu")
    except FileNotFoundError as exc:
        print(f"Skipping the anatomy/style swap: {exc}. The rest of the demo goes on.")
        return []
    print(
        f"Anatomy/style swap (DGM-DR) with the shipped model ({model.describe()}): the IHC image's tissue with the "
        "mean stain style of the synthetic H&E-like restain, and the reverse. The shipped model was trained on "
        "images generated from this IHC image, so this shows the workflow on data it has seen."
    )
    ihc, he = samples.ihc().data, samples.he_like_restain().data
    ihc_encoded = encode(model, ihc, name="IHC sample")
    he_encoded = encode(model, he, name="H&E-like sample")
    return [
        save_png(out / "swap_ihc_anatomy_he_style.png", render(model, ihc_encoded, mean_style(he_encoded))),
        save_png(out / "swap_he_anatomy_ihc_style.png", render(model, he_encoded, mean_style(ihc_encoded))),
    ]


#: The demo's training: small enough for a 2-core laptop (about a minute), large enough to show the workflow.
DEMO_SPACING_MM = 2.0
DEMO_CROP = 64
DEMO_LR = 5e-3


def _demo_segmentation(t1, labels, out: Path, weights: str | None, steps: int, missing: str | None) -> list[Path]:
    """Train MaskGen (or, without the anatomix weights, the ERM baseline) for a few steps on the sample brain's
    tissue labels, segment the brain with it and write the model, the labels (on the template's grid) and a PNG."""
    import time

    from ..core.maskgen_training import TrainSettings, train
    from ..core.segment import SegmentSettings, segment
    from ..core.segmentation_data import labelled_volume
    from ..core.training import format_seconds
    from ..io.geometry import resample_to_grid
    from ..io.label_table import LabelTable
    from ..io.nifti import save_labels_nifti
    from ..io.preview import save_png
    from ..io.samples import TISSUE_LABEL_NAMES
    from ..io.volume_set import resample_isotropic
    from ..models.weights import sha256_file
    from ..progress import run

    method = "maskgen" if weights else "erm"
    if weights:
        print(f"Segmentation demo: MaskGen (the image + frozen '{weights}' features, view masking p = 0.75).")
    else:
        print(
            "Segmentation demo: the ERM baseline (image only) instead of MaskGen — MaskGen needs the anatomix "
            f"weights: {missing}."
        )
    print(
        f"  Training for {steps} steps (UNet preset 'cpu', {DEMO_CROP}³ crops, batch 2, lr {DEMO_LR:g}, no "
        f"augmentation) on a {DEMO_SPACING_MM:g} mm isotropic copy of the sample T1 with its tissue labels, then "
        "segmenting that copy. This demonstrates the workflow (train → checkpoint → segment → labels on the "
        "template's grid); it is NOT a good model: real training runs thousands of steps on many labelled scans "
        "(`domaingen train`)."
    )
    small_t1 = resample_isotropic(t1, DEMO_SPACING_MM)
    small_labels = resample_isotropic(labels, DEMO_SPACING_MM)
    volume = labelled_volume(
        small_t1.data,
        small_labels.data,
        name=f"mni152_t1 ({DEMO_SPACING_MM:g} mm copy)",
        spacing=small_t1.spacing,
        image_affine=small_t1.display_affine,
        labels_affine=small_labels.display_affine,
    )
    values = sorted({0, *(int(v) for v in np.unique(small_labels.data))})
    settings = TrainSettings(
        use_features=weights is not None,
        weights=weights or "anatomix",
        preset="cpu",
        crop=DEMO_CROP,
        steps=steps,
        batch_size=2,
        lr=DEMO_LR,
        augment=False,
        checkpoint_every=0,
        validate_every=0,
        class_names=tuple(TISSUE_LABEL_NAMES.get(v, f"class {v}") for v in values),
    )
    model_path = out / f"mni152_t1_{method}_model.pt"
    start = time.perf_counter()
    trained = run(train([volume], model_path, settings), TrainPrinter())
    train_seconds = time.perf_counter() - start
    segmentation = run(
        segment(small_t1.data, model_path, SegmentSettings(), spacing=small_t1.spacing), ProgressPrinter()
    )  # its last line is the description
    for warning in segmentation.warnings:
        print(f"  warning: {warning}")
    # back onto the template's 1 mm grid (nearest neighbour), so the labels overlay mni152_t1.nii.gz
    predicted = resample_to_grid(
        segmentation.labels, small_t1.display_affine, t1.spatial_shape, t1.display_affine, order=0
    )
    dice = []
    for value, name in zip(trained.spec.label_values[1:], trained.spec.class_names[1:]):
        a, b = predicted == value, labels.data == value
        total = int(a.sum()) + int(b.sum())
        dice.append(f"{name} {2 * int((a & b).sum()) / total:.2f}" if total else f"{name} -")
    print(
        f"  trained in {format_seconds(train_seconds)}, segmented in {format_seconds(segmentation.seconds)}; Dice "
        f"against the labels it was trained on (a smoke check, not a test score): {', '.join(dice)}"
    )
    preview = np.concatenate(
        [_overlay_montage(t1.data, labels.data, t1.spacing), _overlay_montage(t1.data, predicted, t1.spacing)], axis=0
    )
    print(
        f"  mni152_t1_{method}_labels_preview.png: top row the template's tissue labels (the training labels), "
        f"bottom row the {'MaskGen' if weights else 'ERM'} model's labels"
    )
    names = dict(zip(trained.spec.label_values, trained.spec.class_names))
    made_by = {"name": "MaskGen" if weights else "ERM", "version": sha256_file(trained.checkpoint), "type": "AUTOMATIC"}
    table = LabelTable.from_names(sorted(names), names, algorithm={**made_by, "model": str(trained.checkpoint)})
    labelled, _notes = save_labels_nifti(out / f"mni152_t1_{method}_labels.nii.gz", predicted, table, source=t1.source)
    return [trained.checkpoint, *labelled, save_png(out / f"mni152_t1_{method}_labels_preview.png", preview)]


def _overlay_montage(image: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Mid-slice montage of ``image`` in grey with ``labels`` blended in colour (half opacity)."""
    from ..io.preview import colour_labels, rgb_montage, scale_to_uint8

    grey = np.repeat(scale_to_uint8(image)[..., None], 3, axis=-1)
    blended = ((grey.astype(np.uint16) + colour_labels(labels)) // 2).astype(np.uint8)
    return rgb_montage(np.where((np.asarray(labels) > 0)[..., None], blended, grey), spacing)
