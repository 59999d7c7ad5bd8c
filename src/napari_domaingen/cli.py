"""``domaingen`` command line: the same core as the dock widgets, headless.

Subcommands:
  demo       run the product on the plugin's sample data (NIfTI + PNG previews, a short MaskGen/ERM training and
             segmentation, an anatomy/style swap of the histology pair); ``--gui`` opens napari instead.
  train      train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model on labelled NIfTI volumes.
  segment    segment a NIfTI volume with such a model → labels (and probabilities) with the image's affine.
  features   frozen anatomix features of a NIfTI volume → a 4D NIfTI (channels last) with the source affine.
  compare    feature stability of two co-registered volumes (e.g. FLAIR vs T1): CKA, cosine map, RGB renderings.
  info       header facts of a NIfTI file, a DICOM folder/zip (one block per series) or a DICOM file.
  convert    a DICOM series (folder, zip or one of its files) → NIfTI with the right affine.
  swap       DGM-DR anatomy/style swap of two 2D histology images: ANATOMY rendered with STYLE's stain look.
  swap-train train, fine-tune or resume a DGM-DR anatomy/style model on 2D histology images.
  pretrain-extractor
             pretrain a stable 3D feature extractor on synthetic label ensembles (anatomix's recipe, small).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .io.errors import DomaingenIOError


def _demo(args: argparse.Namespace) -> int:
    if args.gui:
        from ._napari.gui import open_demo_viewer

        open_demo_viewer(run=True)
        return 0
    from .io import samples
    from .io.nifti import write_nifti
    from .io.preview import mid_slice_montage, save_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    print("Loading sample data (offline: nilearn's MNI152 template, scikit-image's IHC image) ...")
    volumes = {
        "mni152_t1": samples.mni152_t1(),
        "mni152_flair_like_synthetic": samples.mni152_flair_like(),
        "mni152_tissue_labels": samples.mni152_tissue_labels(),
    }
    for stem, volume in volumes.items():
        written.append(write_nifti(out / f"{stem}.nii.gz", volume.data, source=volume.source, is_label=volume.is_label))
        written.append(save_png(out / f"{stem}_preview.png", mid_slice_montage(volume)))
    for stem, image in {"ihc": samples.ihc(), "he_like_restain_synthetic": samples.he_like_restain()}.items():
        written.append(save_png(out / f"{stem}.png", image.data))
    written += _demo_swap(out)
    features, missing = _demo_features(volumes["mni152_t1"], out, args.weights)
    written += features
    if args.train_steps > 0:
        written += _demo_segmentation(
            volumes["mni152_t1"], volumes["mni152_tissue_labels"], out, None if missing else args.weights,
            args.train_steps, missing,
        )
    for path in written:
        print(f"  wrote {path}")
    print(f"Done: {len(written)} files in {out}")
    return 0


def _demo_features(volume, out: Path, weights: str) -> tuple[list[Path], str | None]:
    """Features + RGB preview of the sample T1; or no files and a sentence saying which weights file to put where."""
    from .core.features import FeatureSettings, extract_features
    from .core.progress import run
    from .core.rgb import pca_rgb
    from .io.nifti import write_nifti
    from .io.preview import rgb_montage, save_png
    from .models.weights import WeightsUnavailableError, resolve_weights

    try:
        resolve_weights(weights)
    except WeightsUnavailableError as exc:
        print(f"Skipping feature extraction: the weights '{weights}' are not available.\n  {exc}")
        return [], (f"put the weights file '{exc.filename}' (from {exc.repo_url}) at {exc.expected_path} and run "
                    "the demo again")
    except FileNotFoundError as exc:
        print(f"Skipping feature extraction: the weights '{weights}' are not available.\n  {exc}")
        return [], "give --weights the path of the anatomix weights file (anatomix.pth) and run the demo again"
    print(f"Extracting features with '{weights}' ...")
    result = run(extract_features(volume.data, FeatureSettings(weights=weights)), _ProgressPrinter())
    print(f"  {result.describe()}")
    rgb = pca_rgb(result.features, volume.data)
    return [
        write_nifti(out / "mni152_t1_features.nii.gz", result.features, source=volume.source),
        save_png(out / "mni152_t1_features_rgb.png", rgb_montage(rgb, volume.spacing)),
    ], None


def _demo_swap(out: Path) -> list[Path]:
    """Anatomy/style swap of the histology pair with the shipped model, both ways; a note (no files) without it."""
    from .core.swap import encode, mean_style, render
    from .core.swap_model import DEFAULT_MODEL, load_swap_model
    from .io import samples
    from .io.preview import save_png

    try:
        model = load_swap_model(DEFAULT_MODEL, "cpu")
    except FileNotFoundError as exc:
        print(f"Skipping the anatomy/style swap: {exc}. The rest of the demo goes on.")
        return []
    print(f"Anatomy/style swap (DGM-DR) with the shipped model ({model.describe()}): the IHC image's tissue with the "
          "mean stain style of the synthetic H&E-like restain, and the reverse. The shipped model was trained on "
          "images generated from this IHC image, so this shows the workflow on data it has seen.")
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

    from .core.maskgen_training import TrainSettings, train
    from .core.progress import run
    from .core.segment import SegmentSettings, segment
    from .core.segmentation_data import labelled_volume
    from .core.training import format_seconds
    from .io.geometry import resample_to_grid
    from .io.nifti import write_nifti
    from .io.preview import save_png
    from .io.samples import TISSUE_LABEL_NAMES
    from .io.volume_set import resample_isotropic

    method = "maskgen" if weights else "erm"
    if weights:
        print(f"Segmentation demo: MaskGen (the image + frozen '{weights}' features, view masking p = 0.75).")
    else:
        print("Segmentation demo: the ERM baseline (image only) instead of MaskGen — MaskGen needs the anatomix "
              f"weights: {missing}.")
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
        small_t1.data, small_labels.data, name=f"mni152_t1 ({DEMO_SPACING_MM:g} mm copy)", spacing=small_t1.spacing,
        image_affine=small_t1.display_affine, labels_affine=small_labels.display_affine,
    )
    values = sorted({0, *(int(v) for v in np.unique(small_labels.data))})
    settings = TrainSettings(
        use_features=weights is not None, weights=weights or "anatomix", preset="cpu", crop=DEMO_CROP, steps=steps,
        batch_size=2, lr=DEMO_LR, augment=False, checkpoint_every=0, validate_every=0,
        class_names=tuple(TISSUE_LABEL_NAMES.get(v, f"class {v}") for v in values),
    )
    model_path = out / f"mni152_t1_{method}_model.pt"
    start = time.perf_counter()
    trained = run(train([volume], model_path, settings), _TrainPrinter())
    train_seconds = time.perf_counter() - start
    segmentation = run(segment(small_t1.data, model_path, SegmentSettings(), spacing=small_t1.spacing),
                       _ProgressPrinter())  # its last line is the description
    for warning in segmentation.warnings:
        print(f"  warning: {warning}")
    # back onto the template's 1 mm grid (nearest neighbour), so the labels overlay mni152_t1.nii.gz
    predicted = resample_to_grid(segmentation.labels, small_t1.display_affine, t1.spatial_shape, t1.display_affine,
                                 order=0)
    dice = []
    for value, name in zip(trained.spec.label_values[1:], trained.spec.class_names[1:]):
        a, b = predicted == value, labels.data == value
        total = int(a.sum()) + int(b.sum())
        dice.append(f"{name} {2 * int((a & b).sum()) / total:.2f}" if total else f"{name} -")
    print(f"  trained in {format_seconds(train_seconds)}, segmented in {format_seconds(segmentation.seconds)}; Dice "
          f"against the labels it was trained on (a smoke check, not a test score): {', '.join(dice)}")
    preview = np.concatenate([_overlay_montage(t1.data, labels.data, t1.spacing),
                              _overlay_montage(t1.data, predicted, t1.spacing)], axis=0)
    print(f"  mni152_t1_{method}_labels_preview.png: top row the template's tissue labels (the training labels), "
          f"bottom row the {'MaskGen' if weights else 'ERM'} model's labels")
    return [
        trained.checkpoint,
        write_nifti(out / f"mni152_t1_{method}_labels.nii.gz", predicted, source=t1.source, is_label=True),
        save_png(out / f"mni152_t1_{method}_labels_preview.png", preview),
    ]


def _overlay_montage(image: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Mid-slice montage of ``image`` in grey with ``labels`` blended in colour (half opacity)."""
    from .io.preview import colour_labels, rgb_montage, scale_to_uint8

    grey = np.repeat(scale_to_uint8(image)[..., None], 3, axis=-1)
    blended = ((grey.astype(np.uint16) + colour_labels(labels)) // 2).astype(np.uint8)
    return rgb_montage(np.where((np.asarray(labels) > 0)[..., None], blended, grey), spacing)


class _ProgressPrinter:
    """Prints a job's progress dicts: every new stage, and inference/segmentation progress in steps of 10%."""

    _COUNTED = ("inference", "segment")  # stages whose message changes with every window

    def __init__(self) -> None:
        self.last: tuple[str, int] | None = None

    def __call__(self, update: dict) -> None:
        fraction = float(update.get("fraction", 0.0))
        stage = str(update.get("stage", ""))
        key = (str(update.get("message", "")) if stage not in self._COUNTED else stage, int(fraction * 10))
        if key != self.last:
            self.last = key
            print(f"  [{100 * fraction:3.0f}%] {update.get('message', '')}", flush=True)


class _TrainPrinter:
    """Prints a training job: its stage messages, a line per ~10 % of the steps (loss, s/step, ETA), every
    validation and every checkpoint. Remembers the last checkpoint written."""

    def __init__(self) -> None:
        self.decile = -1
        self.step = -1
        self.losses: list[float] = []
        self.message = ""
        self.checkpoint: tuple[str, int] | None = None

    def __call__(self, update: dict) -> None:
        from .core.training import format_seconds

        stage = update.get("stage")
        saved = ""
        if "checkpoint" in update:
            self.checkpoint = (str(update["checkpoint"]), int(update.get("checkpoint_step", update.get("step", 0))))
            saved = f"; checkpoint saved: {self.checkpoint[0]}"
        if "loss" not in update:  # stage messages: preparing, loading the extractor, training …, done
            message = str(update.get("message", ""))
            if message and message != self.message:
                self.message = message
                print(f"  {message}", flush=True)
            return
        step, steps = int(update["step"]), int(update["steps"])
        if step > self.step:
            self.step = step
            self.losses.append(float(update["loss"]))
        if stage == "validate":
            per_class = update.get("val_dice_per_class") or {}
            detail = ", ".join(f"{name} {value:.3f}" for name, value in per_class.items())
            print(f"  step {step}/{steps}: validation Dice {update['val_dice']:.3f}"
                  + (f" ({detail})" if detail else "") + saved, flush=True)
            return
        decile = int(10 * step / steps)
        if decile == self.decile and not saved and step != steps:
            return
        self.decile = decile
        recent = self.losses[-max(1, steps // 10):]
        eta = update.get("eta", float("nan"))
        finite = [v for v in recent if np.isfinite(v)]
        mean = f" (mean of the last {len(finite)}: {np.mean(finite):.4f})" if len(finite) > 1 else ""
        print(
            f"  step {step}/{steps} ({100 * step / steps:3.0f}%): "
            + (f"skipped ({update['skipped']})" if update.get("skipped") else f"loss {update['loss']:.4f}")
            + f"{mean}, "
            f"{update.get('seconds_per_step', float('nan')):.2f} s/step, "
            f"ETA {format_seconds(eta) if np.isfinite(eta) else '?'}{saved}",
            flush=True,
        )


def _file_state(path: str | Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, ``None`` if absent: tells whether a run replaced it."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _pairs(images: list[str] | None, labels: list[str] | None, image_flag: str, label_flag: str) -> list[tuple]:
    images, labels = images or [], labels or []
    if len(images) != len(labels):
        raise ValueError(
            f"{len(images)} {image_flag} but {len(labels)} {label_flag}: give one {label_flag} per {image_flag}, "
            "in the same order (they are paired by position)"
        )
    return list(zip(images, labels))


def _labelled(image_path: str, label_path: str, clip: tuple[float, float] | None):
    """A checked (image, labels) pair for training: labels must be on the image's grid (shape and affine)."""
    from .core.segmentation_data import labelled_volume_from_files

    try:
        return labelled_volume_from_files(image_path, label_path, clip)
    except ValueError as exc:
        raise ValueError(f"{exc} (labels: {label_path})") from None


def _kept_step(out: str | Path, read: Callable[[str | Path], dict]) -> str:
    """`` (step k of n)`` of the training state in checkpoint ``out`` (read with ``read``), or ``""``."""
    try:
        state = read(out).get("training", {})
        return f" (step {state['step']} of {state['steps']})"
    except (ValueError, OSError, KeyError):
        return ""


def _interrupted(out: str, before: tuple[int, int] | None, resume: str | None) -> str:
    """What survives a Ctrl-C: the last checkpoint this run wrote, or what was there before."""
    from .core.maskgen import read_model_file

    again = "run the same command (same --image/--label) with"
    if _file_state(out) not in (None, before):
        where = _kept_step(out, read_model_file)
        return (f"interrupted: the last checkpoint {out}{where} is intact; to continue, {again} --resume {out}")
    if resume:
        return (f"interrupted before this run wrote a checkpoint: {resume} is unchanged; to continue, {again} "
                f"--resume {resume}")
    if before is not None:
        return f"interrupted before the first checkpoint of this run: nothing saved, {out} is unchanged"
    return "interrupted before the first checkpoint: nothing was saved (see --checkpoint-every)"


def _train(args: argparse.Namespace) -> int:
    from .core.maskgen import read_model_file
    from .core.maskgen_training import TrainSettings, train
    from .core.progress import run
    from .core.training import format_seconds
    from .models.weights import WeightsUnavailableError

    if args.resume and args.init:
        raise ValueError("give --resume (continue an interrupted run) or --init (fine-tune a model), not both")
    out = args.out or args.resume
    if not out:
        raise ValueError("--out MODEL.pt is required (with --resume it defaults to the resumed checkpoint)")
    pairs = _pairs(args.image, args.label, "--image", "--label")
    val_pairs = _pairs(args.val_image, args.val_label, "--val-image", "--val-label")
    clip = tuple(args.clip) if args.clip else None
    start_from = args.resume or args.init
    if start_from:  # fails early, and clearly, for a file that is not a model
        stored = read_model_file(start_from)
        recorded = stored["spec"].get("clip_percentiles")
        clip = tuple(float(c) for c in recorded) if recorded else None  # the model's own intensity scaling
        state = stored.get("training")
        if args.resume and state is not None:
            print(f"Resuming {args.resume} at step {state['step']} of {state['steps']} with the run's own settings "
                  "(only --device, --checkpoint-every and --validate-every apply)")
        elif args.init:
            print(f"Fine-tuning {args.init}: its network, classes and feature extractor; the data, steps, lr and "
                  "crop given here")
    class_names = tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else None
    settings = TrainSettings(
        use_features=args.baseline is None, weights=args.weights, layer=args.layer, mask_rate=args.mask_rate,
        preset=args.preset, crop=args.crop, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        augment=not args.no_augment, flips=not args.no_flips, device=args.device, precision=args.precision,
        checkpoint_every=args.checkpoint_every, validate_every=args.validate_every, seed=args.seed,
        clip_percentiles=clip, class_names=class_names,
    )
    settings.check()
    before = _file_state(out)
    printer = None if args.quiet else _TrainPrinter()
    try:
        print(f"Reading {len(pairs)} training and {len(val_pairs)} validation volume(s) ...", flush=True)
        volumes = [_labelled(image, label, clip) for image, label in pairs]
        validation = [_labelled(image, label, clip) for image, label in val_pairs]
        result = run(
            train(volumes, out, settings, validation=validation, resume=args.resume, init=args.init), printer
        )
    except KeyboardInterrupt:
        print(f"domaingen train: {_interrupted(out, before, args.resume)}", file=sys.stderr)
        return 130
    except FloatingPointError as exc:  # a diverging loss: the core's message says what to do
        raise RuntimeError(str(exc)) from None
    except WeightsUnavailableError as exc:
        raise RuntimeError(f"{exc} MaskGen needs these weights; without them train the image-only ERM baseline "
                           "(--baseline erm).") from None
    history = result.history
    summary = f"{result.steps_done} steps, final loss {result.final_loss:.4f}"
    if history.get("val"):
        step, dice = history["val"][-1]
        summary += f", validation Dice {dice:.3f} at step {step}"
    print(f"wrote {result.checkpoint}: {result.spec.describe()}")
    print(f"  {summary}; {format_seconds(result.seconds)}")
    print(f"  segment with: domaingen segment IMAGE.nii.gz --model {result.checkpoint} --out SEG.nii.gz")
    return 0


def _segment(args: argparse.Namespace) -> int:
    from .core.progress import run
    from .core.segment import SegmentSettings, segment
    from .io.nifti import is_nifti_path, write_nifti

    for path in filter(None, [args.out, args.probabilities]):
        if not is_nifti_path(path):
            raise ValueError(f"{path}: the output file name must end in .nii or .nii.gz")
    if args.probabilities and Path(args.probabilities).resolve() == Path(args.out).resolve():
        raise ValueError("--out and --probabilities must be two different files")
    volume = _read_3d(args.image)
    settings = SegmentSettings(
        overlap=args.overlap, feature_mode=args.feature_mode, ablation=args.ablate,
        probabilities=bool(args.probabilities), device=args.device, weights=args.weights,
    )
    result = run(segment(volume.data, args.model, settings, spacing=volume.spacing),
                 None if args.quiet else _ProgressPrinter())
    path = write_nifti(args.out, result.labels, source=volume.source, is_label=True)
    print(f"wrote {path}: {result.describe()}")
    names = zip(result.spec.label_values, result.spec.class_names)
    print("  label values: " + ", ".join(f"{value} = {name}" for value, name in names))
    if result.probabilities is not None:
        prob = write_nifti(args.probabilities, result.probabilities, source=volume.source)
        print(f"wrote {prob}: {result.probabilities.shape[0]} class probabilities (4D, channels last, in the order "
              "of the label values above)")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


def _read_3d(path: str):
    """A NIfTI volume that must be 3D (as an image, never as labels)."""
    from .io.nifti import read_nifti

    volume = read_nifti(path, as_label=False)
    if volume.data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {volume.data.shape}")
    return volume


def _features(args: argparse.Namespace) -> int:
    from .core.features import extract_features
    from .core.progress import run
    from .io.nifti import write_nifti

    volume = _read_3d(args.image)
    settings = replace(
        _settings_from(args),
        clip_percentiles=tuple(args.clip) if args.clip else None,
        ct_window=args.ct_window,
        output_dtype=args.dtype,
    )
    result = run(extract_features(volume.data, settings), None if args.quiet else _ProgressPrinter())
    path = write_nifti(args.out, result.features, source=volume.source)
    print(f"wrote {path}: {result.features.shape[0]} channels ({args.layer}), {result.describe()}")
    return 0


def _settings_from(args: argparse.Namespace):
    from .core.features import FeatureSettings

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


def _compare(args: argparse.Namespace) -> int:
    import json

    from .core.compare import compare_volumes
    from .core.progress import run
    from .core.stability import require_same_grid
    from .io.geometry import resample_to_grid
    from .io.nifti import strip_nifti_suffix, write_nifti
    from .io.preview import colour_map, rgb_montage, save_png

    volume_a, volume_b = _read_3d(args.a), _read_3d(args.b)
    data_b = volume_b.data
    if args.resample:
        data_b = resample_to_grid(data_b, volume_b.display_affine, volume_a.spatial_shape, volume_a.display_affine)
    else:
        require_same_grid(
            volume_a.spatial_shape, volume_a.display_affine, volume_b.spatial_shape, volume_b.display_affine,
            names=(str(args.a), str(args.b)),
        )
    progress = None if (args.quiet or args.json) else _ProgressPrinter()
    comparison = run(
        compare_volumes(volume_a.data, data_b, _settings_from(args), mode=args.mode, channels=tuple(args.channels)),
        progress,
    )
    numbers = comparison.summary.as_dict()
    numbers["nan_voxels_a"], numbers["nan_voxels_b"] = comparison.non_finite
    if args.out:
        out = Path(args.out)
        stem_a, stem_b = strip_nifti_suffix(args.a), strip_nifti_suffix(args.b)
        source = volume_a.source
        cosine_rgb = colour_map(comparison.cosine, -1.0, 1.0)
        cosine_rgb[~comparison.mask] = 0  # background black, as in the RGB renderings
        written = [
            write_nifti(out / f"{stem_a}_features_rgb.nii.gz", np.moveaxis(comparison.rgb_a, -1, 0), source=source),
            write_nifti(out / f"{stem_b}_features_rgb.nii.gz", np.moveaxis(comparison.rgb_b, -1, 0), source=source),
            write_nifti(out / "cosine_similarity.nii.gz", comparison.cosine, source=source),
            save_png(out / f"{stem_a}_features_rgb.png", rgb_montage(comparison.rgb_a, volume_a.spacing)),
            save_png(out / f"{stem_b}_features_rgb.png", rgb_montage(comparison.rgb_b, volume_a.spacing)),
            save_png(out / "cosine_similarity.png", rgb_montage(cosine_rgb, volume_a.spacing)),
        ]
        summary_path = out / "summary.json"
        summary_path.write_text(json.dumps({"a": str(args.a), "b": str(args.b), **numbers}, indent=2) + "\n")
        written.append(summary_path)
        if not args.json:
            for path in written:
                print(f"  wrote {path}")
    if args.json:
        print(json.dumps(numbers))
    else:
        print(
            f"feature CKA {numbers['cka_features']:.3f} | intensity CKA {numbers['cka_intensity']:.3f} "
            f"(3x3x3 patches {numbers['cka_intensity_patch']:.3f}) | mean cosine {numbers['mean_cosine']:.3f} "
            f"over {numbers['n_voxels']:,} voxels sampled from {numbers['foreground_voxels']:,} foreground voxels"
        )
        left_out = [f"{n:,} NaN/inf voxels of {name}" for name, n in ((args.a, numbers["nan_voxels_a"]),
                                                                      (args.b, numbers["nan_voxels_b"])) if n]
        if left_out:
            print(f"  left out: {'; '.join(left_out)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from .io.dicom import format_info, info

    facts = info(args.path)
    print(json.dumps(facts, indent=2, default=str) if args.json else format_info(facts))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .io.dicom import read_series
    from .io.nifti import write_nifti

    volume = read_series(args.dicom, uid=args.series)
    path = write_nifti(args.out, volume.data, source=volume.source)
    codes = "".join(volume.source.axcodes)
    spacing = " x ".join(f"{s:.3g}" for s in reversed(volume.spacing))
    print(f"wrote {path}: {volume.name}, {tuple(reversed(volume.data.shape))} voxels of {spacing} mm, {codes}")
    return 0


#: Output file types of ``swap`` (written by scikit-image; lossless except JPEG).
_SWAP_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def _style_point(text: str) -> tuple[float, float]:
    """``"y,x"`` (pixels of the style image, row then column) → ``(y, x)``."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        y, x = float(parts[0]), float(parts[1])
        if not (np.isfinite(y) and np.isfinite(x)):
            raise ValueError
    except ValueError:
        raise ValueError(f"--style-point expects 'y,x': the row and column of a pixel of the style image, e.g. "
                         f"--style-point 120,80; got {text!r}") from None
    return y, x


def _load_swap(model: str, device: str):
    """The swap model of ``--model`` on ``device``, with a hint at ``--model`` when the shipped one is missing."""
    from .core.device import resolve_device
    from .core.swap_model import DEFAULT_MODEL, load_swap_model

    try:
        return load_swap_model(model, resolve_device(device))
    except FileNotFoundError as exc:
        if model == DEFAULT_MODEL:
            raise FileNotFoundError(f"{exc} (--model PATH)") from None
        raise


def _swap(args: argparse.Namespace) -> int:
    import time

    from .core.swap import encode, mean_style, point_style, reconstruct, render
    from .io.histology import read_histology
    from .io.preview import save_png

    out = Path(args.out)
    if out.suffix.lower() not in _SWAP_SUFFIXES:
        raise ValueError(f"{out}: the output file name must end in {', '.join(_SWAP_SUFFIXES)}")
    if out.resolve() in {Path(args.anatomy).resolve(), Path(args.style).resolve()}:
        raise ValueError(f"{out}: --out must not overwrite an input image")
    point = _style_point(args.style_point) if args.style_point else None
    if not 0.0 <= args.overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {args.overlap:g}")
    images = {}
    for role, path in (("anatomy", args.anatomy), ("style", args.style)):
        image = read_histology(path)
        if image.downsamples[0] != 1:
            print(f"note: {path} is too large to load whole; using it reduced {image.downsamples[0]:g}× "
                  f"({image.data.shape[0]} × {image.data.shape[1]} px)")
        images[role] = image.data
    if point is not None:
        height, width = images["style"].shape[:2]
        if not (0 <= point[0] < height and 0 <= point[1] < width):
            raise ValueError(f"--style-point {point[0]:g},{point[1]:g} lies outside the style image {args.style} "
                             f"({height} × {width} px; y must be in [0, {height}), x in [0, {width}))")
    model = _load_swap(args.model, args.device)
    patch = model.config.patch_size
    for role, path in (("anatomy", args.anatomy), ("style", args.style)):
        height, width = images[role].shape[:2]
        if height < patch or width < patch:
            raise ValueError(f"{path}: the {role} image ({height} × {width} px) is smaller than one "
                             f"{patch} × {patch} patch of the model {model.name}")
    print(f"Model: {model.describe()}")
    big = max(image.shape[0] * image.shape[1] for image in images.values())
    if big > 4 * 2**20:
        print(f"Encoding images of up to {big / 1e6:.0f} Mpx in {model.config.img_size} px tiles: this takes a "
              "while ...", flush=True)
    start = time.perf_counter()
    anatomy = encode(model, images["anatomy"], args.overlap, name=f"anatomy image {args.anatomy}")
    style_encoded = None
    if point is None or args.reconstructions:
        style_encoded = encode(model, images["style"], args.overlap, name=f"style image {args.style}")
    if point is None:
        style = mean_style(style_encoded)
        how = f"the mean style of {args.style}"
    else:
        style = point_style(model, images["style"], *point)
        how = f"the style of the patch at (y {point[0]:g}, x {point[1]:g}) of {args.style}"
    written = [save_png(out, render(model, anatomy, style))]
    print(f"wrote {out}: the anatomy of {args.anatomy} with {how} ({time.perf_counter() - start:.2f} s)")
    if args.reconstructions:
        from skimage.metrics import peak_signal_noise_ratio

        stem = out.with_suffix("")
        for label, path, encoded in (("anatomy", args.anatomy, anatomy), ("style", args.style, style_encoded)):
            recon = reconstruct(model, encoded)
            target = out.with_name(f"{stem.name}_recon_{label}{out.suffix}")
            written.append(save_png(target, recon))
            psnr = peak_signal_noise_ratio(images[label], recon, data_range=255)
            print(f"wrote {target}: {path} re-synthesized from its own anatomy and style (PSNR {psnr:.2f} dB)")
        reverse = out.with_name(f"{stem.name}_reverse{out.suffix}")
        written.append(save_png(reverse, render(model, style_encoded, mean_style(anatomy))))
        print(f"wrote {reverse}: the reverse swap, the anatomy of {args.style} with the mean style of {args.anatomy}")
    return 0


def _swap_interrupted(out: Path, before: tuple[int, int] | None, resumed: bool) -> str:
    """What survives a Ctrl-C of ``swap-train``: the last checkpoint this run wrote, or what was there before."""
    from .core.swap_model import read_swap_file

    if _file_state(out) not in (None, before):
        where = _kept_step(out, read_swap_file)
        return (f"interrupted: the last checkpoint {out}{where} is intact; to continue, run the same command "
                "(same images) with --resume")
    if resumed:
        return f"interrupted before this run wrote a checkpoint: {out} is unchanged; --resume continues it"
    if before is not None:
        return f"interrupted before the first checkpoint of this run: nothing saved, {out} is unchanged"
    return "interrupted before the first checkpoint: nothing was saved (see --checkpoint-every)"


def _swap_train(args: argparse.Namespace) -> int:
    from .core.progress import run
    from .core.swap_model import DEFAULT_MODEL, default_model_path, read_swap_file
    from .core.swap_training import SwapTrainSettings, train_swap
    from .core.training import format_seconds
    from .io.histology import read_histology
    from .models.dgm import PRESETS, ViTConfig

    out = Path(args.out)
    inputs = {Path(path).resolve() for path in args.images}
    if out.resolve() in inputs:
        raise ValueError(f"{out}: --out must not overwrite a training image")
    defaults = SwapTrainSettings()
    resume = None
    init = args.init
    config = PRESETS[args.preset]
    if args.resume:
        if out.exists():
            stored = read_swap_file(out)  # fails clearly for a file that is not an anatomy/style model
            state = stored.get("training")
            if state is None:
                done = stored.get("card", {}).get("steps", "?")
                raise ValueError(
                    f"{out}: a finished model ({done} steps) without training state: there is nothing to resume. To "
                    f"train it further, fine-tune it: --init {out} --steps N (with --out {out} or a new file)"
                )
            resume = out
            saved = state["settings"]
            config = ViTConfig(**stored["config"])
            print(f"Resuming {out} at step {state['step']} of {state['steps']} with the run's own settings (batch "
                  f"{saved['batch_size']}, lr {saved['lr']:g}, {saved['num_mixes']} mixes, checkpoint every "
                  f"{saved['checkpoint_every']}, seed {saved['seed']}; only --device and a larger --steps apply)")
            if args.steps is not None and args.steps < state["steps"]:
                print(f"  note: --steps {args.steps} is below the run's {state['steps']} steps; it runs to "
                      f"{state['steps']}")
        else:
            print(f"Nothing to resume at {out} yet: starting a new run.")
    elif init is not None:
        source = default_model_path() if init == DEFAULT_MODEL else Path(init)
        if init == DEFAULT_MODEL and not source.is_file():
            raise FileNotFoundError(f"the shipped anatomy/style model is missing from the installation ({source}); "
                                    "reinstall napari-domaingen or pass --init PATH")
        config = ViTConfig(**read_swap_file(source)["config"])  # fails early for a file that is not a model
        print(f"Fine-tuning {init}: its encoder and normalisation, with the images, steps and lr given here")
    steps = args.steps if args.steps is not None else (1 if resume else defaults.steps)
    settings = SwapTrainSettings(
        preset=args.preset, steps=steps, batch_size=args.batch, num_mixes=args.mixes, lr=args.lr,
        checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device,
    )
    settings.check()
    print(f"Reading {len(args.images)} training image(s) ...", flush=True)
    images, names = [], []
    for path in args.images:
        image = read_histology(path)
        height, width = image.data.shape[:2]
        note = f", reduced {image.downsamples[0]:g}× (too large to load whole)" if image.downsamples[0] != 1 else ""
        print(f"  {path}: {height} × {width} px{note}")
        if min(height, width) < config.img_size:
            print(f"  warning: {path} is smaller than the model's {config.img_size} px tile; its crops are padded "
                  "by reflection")
        images.append(image.data)
        names.append(Path(path).name)
    before = _file_state(out)
    printer = None if args.quiet else _TrainPrinter()
    try:
        result = run(train_swap(images, out, settings, init=None if resume else init, resume=resume, names=names,
                                card={"training_images": names}), printer)
    except KeyboardInterrupt:
        print(f"domaingen swap-train: {_swap_interrupted(out, before, resume is not None)}", file=sys.stderr)
        return 130
    except FloatingPointError as exc:  # a diverging loss: the core's message says what to do
        raise RuntimeError(str(exc)) from None
    history = result.history
    c = config
    losses = ", ".join(f"{key} {history[key][-1]:.4f}" for key in ("reconstruction", "anatomy", "characteristics")
                       if history.get(key))
    print(f"wrote {result.checkpoint}: ViT {c.img_size} px tiles, patch {c.patch_size}, {c.embed_dim}-d tokens, "
          f"depth {c.depth}")
    if history.get("loss"):
        print(f"  {result.steps} steps, final loss {history['loss'][-1]:.4f} ({losses}); "
              f"{format_seconds(result.seconds)}")
    print(f"  swap with: domaingen swap ANATOMY.png STYLE.png --model {result.checkpoint} --out OUT.png")
    return 0


def _pretrain_extractor(args: argparse.Namespace) -> int:
    from .core.pretrain import PretrainSettings, pretrain, shippable
    from .core.progress import run
    from .core.training import format_seconds
    from .models.checkpoints import read_checkpoint

    out = Path(args.out)
    resume = None
    if args.resume:
        if out.exists():
            state = read_checkpoint(out).get("training")
            if state is None:
                raise ValueError(f"{out}: a finished extractor without training state: there is nothing to resume")
            resume = out
            print(f"Resuming {out} at step {state['step']} of {state['steps']} with the run's own settings (only "
                  "--device and a larger --steps apply)")
        else:
            print(f"Nothing to resume at {out} yet: starting a new run.")
    settings = PretrainSettings(
        ngf=args.width, crop=args.crop, batch_size=args.batch, voxels=args.voxels, lr=args.lr,
        tissue_fraction=args.tissue_fraction, steps=args.steps, checkpoint_every=args.checkpoint_every,
        seed=args.seed, device=args.device,
    )
    settings.check()
    before = _file_state(out)
    try:
        result = run(pretrain(out, settings, resume=resume), None if args.quiet else _TrainPrinter())
    except KeyboardInterrupt:
        kept = (f"the last checkpoint {out}{_kept_step(out, read_checkpoint)} is intact; continue it with --resume"
                if _file_state(out) not in (None, before) else "no checkpoint was written yet")
        print(f"domaingen pretrain-extractor: interrupted; {kept}", file=sys.stderr)
        return 130
    except FloatingPointError as exc:
        raise RuntimeError(str(exc)) from None
    path = shippable(result.checkpoint, out)
    final = result.history["loss"][-1] if result.history.get("loss") else float("nan")
    print(f"wrote {path}: AnatomixUNet width {settings.ngf}, {result.steps} steps, final loss {final:.4f}, "
          f"{format_seconds(result.seconds)}")
    print(f"  use it with: domaingen features IMAGE.nii.gz --weights {path} --out FEATURES.nii.gz "
          "(or the file field of the feature widgets)")
    return 0


def _add_feature_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that extracts features."""
    from .core.features import LAYER_DESCRIPTIONS

    parser.add_argument("--weights", default="anatomix", help="registry name (anatomix, anatomix-dev) or a .pth path")
    parser.add_argument(
        "--layer", choices=list(LAYER_DESCRIPTIONS), default="final",
        help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()) + " (default: final)",
    )
    parser.add_argument("--normalisation", choices=["auto", "instance", "unit", "none"], default="auto",
                        help="auto: instance (per-channel z-score) for anatomix, unit (voxel-wise L2) for anatomix-dev")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 for anatomix where the hardware has fast bf16, else fp32")
    parser.add_argument("--strategy", choices=["auto", "whole", "sliding"], default="auto",
                        help="auto: whole volume when it fits half the free memory, else sliding window")
    parser.add_argument("--roi", type=int, default=128, help="sliding-window size in voxels (default: 128)")
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default: 0.25)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_train_parser(commands) -> None:
    from .core.features import LAYER_DESCRIPTIONS
    from .core.maskgen import MASK_RATE_HELP
    from .core.maskgen_training import TrainSettings

    d = TrainSettings()
    tr = commands.add_parser(
        "train",
        help="train, fine-tune or resume a MaskGen (or ERM baseline) segmentation model",
        description="Train a MaskGen segmentation model (3D UNet on the image + frozen anatomix features, with view "
        "masking) or its ERM baseline (image only) on labelled NIfTI volumes. --image and --label are paired by "
        "order; each label file must be on its image's grid. The model file is written atomically every "
        "--checkpoint-every steps and at the end; Ctrl-C keeps the last one, --resume continues it.",
    )
    data = tr.add_argument_group("data")
    data.add_argument("--image", action="append", required=True, metavar="IMAGE.nii.gz",
                      help="training image (repeat for more volumes)")
    data.add_argument("--label", action="append", required=True, metavar="LABELS.nii.gz",
                      help="labels of the matching --image (integer values, 0 = background)")
    data.add_argument("--val-image", action="append", metavar="IMAGE.nii.gz", help="validation image (repeatable)")
    data.add_argument("--val-label", action="append", metavar="LABELS.nii.gz",
                      help="labels of the matching --val-image")
    data.add_argument("--class-names", metavar="NAMES",
                      help="comma-separated names of the label values in increasing order, background first "
                      "(e.g. background,grey matter,white matter); default 'class <value>'")
    data.add_argument("--clip", type=float, nargs=2, metavar=("LOW", "HIGH"),
                      help="clip intensities to these percentiles before min-max scaling (kept in the model)")
    tr.add_argument("--out", metavar="MODEL.pt", help="model file to write (default with --resume: that file)")
    start = tr.add_mutually_exclusive_group()
    start.add_argument("--resume", metavar="CKPT", help="continue an interrupted run exactly (its own settings)")
    start.add_argument("--init", metavar="CKPT",
                       help="fine-tune: start from this model's network, classes and extractor")
    model = tr.add_argument_group("model")
    model.add_argument("--baseline", choices=["erm"], help="train the ERM baseline (image only, no features)")
    model.add_argument("--weights", default=d.weights,
                       help="feature extractor: registry name (anatomix, anatomix-dev) or a .pth path "
                       "(default: anatomix)")
    model.add_argument("--layer", choices=list(LAYER_DESCRIPTIONS), default=d.layer,
                       help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()) + " (default: final)")
    model.add_argument("--mask-rate", type=float, default=d.mask_rate, metavar="P",
                       help=MASK_RATE_HELP.replace("%", "%%") + f" (default: {d.mask_rate})")
    model.add_argument("--preset", choices=["auto", "paper", "cpu"], default=d.preset,
                       help="UNet size: paper (base 20, 5 levels), cpu (base 8, 4 levels); auto: paper on a GPU, "
                       "cpu otherwise (default: auto)")
    opt = tr.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default: {d.steps})")
    opt.add_argument("--crop", type=int, default=d.crop,
                     help=f"training crop and inference window edge in voxels (default: {d.crop}; paper: 128)")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default: {d.batch_size} (paper: 4)")
    opt.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate, cosine to 0 (default: {d.lr:g})")
    opt.add_argument("--no-augment", action="store_true", help="no augmentation (default: the paper's, p = 0.33 each)")
    opt.add_argument("--no-flips", action="store_true",
                     help="no flips / 90° rotations (for left/right-sensitive anatomy)")
    opt.add_argument("--seed", type=int, default=d.seed, help=f"seeds every random draw (default: {d.seed})")
    opt.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N",
                     help=f"write the model every N steps and at the end (default: {d.checkpoint_every})")
    opt.add_argument("--validate-every", type=int, default=d.validate_every, metavar="N",
                     help="validation Dice every N steps and at the end, with --val-image "
                     f"(default: {d.validate_every})")
    opt.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    opt.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=d.precision,
                     help="UNet autocast: auto = bf16 on CUDA, fp32 elsewhere")
    tr.add_argument("--quiet", action="store_true", help="no progress lines")
    tr.set_defaults(func=_train)


def _add_segment_parser(commands) -> None:
    seg = commands.add_parser(
        "segment",
        help="segment a NIfTI volume with a MaskGen/ERM model",
        description="Segment IMAGE with a model from `domaingen train`: labels (the training label values) written "
        "on IMAGE's grid with IMAGE's affine, qform and sform; optionally the class probabilities as a 4D NIfTI.",
    )
    seg.add_argument("image", help="input volume (.nii / .nii.gz)")
    seg.add_argument("--model", required=True, metavar="MODEL.pt", help="model file written by `domaingen train`")
    seg.add_argument("--out", required=True, metavar="SEG.nii.gz", help="output labels")
    seg.add_argument("--probabilities", metavar="PROB.nii.gz",
                     help="also write the softmax probabilities (4D, one channel per class, channels last)")
    seg.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default: 0.5)")
    seg.add_argument("--feature-mode", choices=["auto", "shared", "per-window"], default="auto",
                     help="shared: features of the whole volume once (fast); per-window: each window's own features, "
                     "as in the MaskGen code; auto (default): shared when they fit in half the free memory")
    seg.add_argument("--ablate", choices=["none", "image", "features"], default="none",
                     help="zero the image or the feature channels (MaskGen only) to see what the model relies on")
    seg.add_argument("--weights", metavar="PATH",
                     help="the extractor file to use when the one recorded in the model is elsewhere (same weights)")
    seg.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    seg.add_argument("--quiet", action="store_true", help="no progress lines")
    seg.set_defaults(func=_segment)


def _add_swap_parsers(commands) -> None:
    from .core.swap import DEFAULT_OVERLAP
    from .core.swap_training import SwapTrainSettings
    from .models.dgm import PRESETS

    sw = commands.add_parser(
        "swap",
        help="anatomy/style swap (DGM-DR) of two 2D histology images",
        description="Render the tissue (anatomy) of ANATOMY with the stain look (style) of STYLE, with a DGM-DR "
        "anatomy/style model: the style of one patch of STYLE (--style-point) or its mean style (default). Any "
        "image `domaingen` reads (PNG, JPEG, TIFF incl. 16-bit, RGBA, grayscale, SVS). Large images are tiled "
        "with overlapping, Gaussian-blended tiles of the model's size. The output has ANATOMY's size.",
    )
    sw.add_argument("anatomy", metavar="ANATOMY", help="image whose tissue is kept")
    sw.add_argument("style", metavar="STYLE", help="image whose stain look is applied")
    sw.add_argument("--out", required=True, metavar="OUT.png", help="output image (.png, .tif, .jpg)")
    sw.add_argument("--model", default="default", metavar="PATH",
                    help="anatomy/style model file (default: the shipped model, 'default')")
    which = sw.add_mutually_exclusive_group()
    which.add_argument("--style-point", metavar="Y,X",
                       help="use the style of the patch under this pixel of STYLE (row, column)")
    which.add_argument("--style", dest="style_mode", choices=["mean"],
                       help="mean: the mean style over all of STYLE (default)")
    sw.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                    help=f"tile overlap for images larger than a tile (default: {DEFAULT_OVERLAP:g})")
    sw.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    sw.add_argument("--reconstructions", action="store_true",
                    help="also write OUT_recon_anatomy / OUT_recon_style (each image from its own anatomy and style, "
                    "with their PSNR) and OUT_reverse (STYLE's anatomy with ANATOMY's mean style)")
    sw.set_defaults(func=_swap)

    d = SwapTrainSettings()
    st = commands.add_parser(
        "swap-train",
        help="train, fine-tune or resume a DGM-DR anatomy/style model on 2D histology images",
        description="Train a DGM-DR anatomy/style model on random crops (with flips and 90° rotations) of IMAGES "
        "with the paper's losses (reconstruction, anatomy and characteristics consistency over num-mixes style "
        "mixes). The model file is written atomically every --checkpoint-every steps and at the end; Ctrl-C keeps "
        "the last one and --resume continues it exactly.",
    )
    st.add_argument("images", nargs="+", metavar="IMAGE", help="training images (PNG, JPEG, TIFF, SVS, ...)")
    st.add_argument("--out", required=True, metavar="MODEL.pt", help="model file to write (and to --resume)")
    start = st.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the interrupted run saved in --out (its own settings; a larger --steps "
                       "extends it); starts a new run when --out does not exist yet")
    start.add_argument("--init", metavar="PATH|default",
                       help="fine-tune this model ('default': the shipped one) with the settings given here")
    st.add_argument("--preset", choices=list(PRESETS), default=d.preset,
                    help="encoder size of a new model: small (64 px tiles, 2.7M parameters, CPU-friendly) or paper "
                    f"(ViT-B/16 at 224 px) (default: {d.preset})")
    st.add_argument("--steps", type=int, default=None,
                    help=f"training steps (default: {d.steps}; with --resume: the run's own)")
    st.add_argument("--batch", type=int, default=d.batch_size, help=f"crops per step (default: {d.batch_size})")
    st.add_argument("--lr", type=float, default=d.lr,
                    help=f"AdamW learning rate, warm-up then cosine to 0 (default: {d.lr:g})")
    st.add_argument("--mixes", type=int, default=d.num_mixes,
                    help=f"style mixes per image and step (default: {d.num_mixes}, as the paper)")
    st.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N",
                    help=f"write the model every N steps and at the end (default: {d.checkpoint_every})")
    st.add_argument("--seed", type=int, default=d.seed, help=f"seeds every random draw (default: {d.seed})")
    st.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    st.add_argument("--quiet", action="store_true", help="no progress lines")
    st.set_defaults(func=_swap_train)


def _add_pretrain_parser(commands) -> None:
    from .core.pretrain import PretrainSettings

    p = PretrainSettings()
    pre = commands.add_parser(
        "pretrain-extractor",
        help="pretrain a stable 3D feature extractor on synthetic label ensembles (anatomix's recipe, small scale)",
        description="Pretrain an AnatomixUNet with anatomix's recipe at small scale: random label maps (warped "
        "Voronoi cells and ellipsoids, and MNI152 tissue crops with lesions), two random contrasts of each, and a "
        "voxel-wise supervised contrastive loss. The file is written atomically every --checkpoint-every steps; "
        "Ctrl-C keeps the last one and --resume continues it exactly. The finished file loads like the anatomix "
        "weights: --weights OUT in the other commands.",
    )
    pre.add_argument("--out", required=True, metavar="MODEL.pt", help="extractor file to write (and to --resume)")
    pre.add_argument("--resume", action="store_true", help="continue the interrupted run saved in --out")
    pre.add_argument("--steps", type=int, default=p.steps, help=f"training steps (default: {p.steps})")
    pre.add_argument("--width", type=int, default=p.ngf, help=f"channels of the first level (default: {p.ngf}; "
                     "anatomix uses 16)")
    pre.add_argument("--crop", type=int, default=p.crop, help=f"label-map side in voxels (default: {p.crop})")
    pre.add_argument("--batch", type=int, default=p.batch_size,
                     help=f"label maps per step, two views each (default: {p.batch_size})")
    pre.add_argument("--voxels", type=int, default=p.voxels,
                     help=f"voxels sampled per view for the loss (default: {p.voxels})")
    pre.add_argument("--tissue-fraction", type=float, default=p.tissue_fraction,
                     help=f"share of MNI152 tissue label maps (default: {p.tissue_fraction})")
    pre.add_argument("--lr", type=float, default=p.lr,
                     help=f"AdamW learning rate: linear warm-up over the first {p.warmup_fraction * 100:g} %% of the steps, "
                     f"then cosine to 0; gradients clipped to norm {p.grad_clip:g} (default: {p.lr:g})")
    pre.add_argument("--checkpoint-every", type=int, default=p.checkpoint_every, metavar="N",
                     help=f"write the file every N steps and at the end (default: {p.checkpoint_every})")
    pre.add_argument("--seed", type=int, default=p.seed, help=f"seeds every random draw (default: {p.seed})")
    pre.add_argument("--device", default=p.device, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    pre.add_argument("--quiet", action="store_true", help="no progress lines")
    pre.set_defaults(func=_pretrain_extractor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="domaingen",
        description="Domain-generalisation tools for medical images (anatomix features, MaskGen, DGM-DR swap).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser("demo", help="run the product on the plugin's own sample data")
    target = demo.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="write the results here (headless)")
    target.add_argument("--gui", action="store_true", help="open napari with the sample data and all dock widgets")
    demo.add_argument("--weights", default="anatomix", help="feature extractor: registry name or .pth (default: anatomix)")
    demo.add_argument("--train-steps", type=int, default=25, metavar="N",
                      help="steps of the demo's MaskGen (or, without the anatomix weights, ERM) training on the sample "
                      "brain (default: 25, well under a minute on an idle 2-core CPU; 0 skips training and "
                      "segmentation)")
    demo.set_defaults(func=_demo)

    _add_train_parser(commands)
    _add_segment_parser(commands)
    _add_swap_parsers(commands)
    _add_pretrain_parser(commands)

    from .io.intensity import CT_WINDOWS

    feats = commands.add_parser(
        "features",
        help="extract frozen anatomix features of a NIfTI volume",
        description="Frozen anatomix features of IMAGE written as a 4D NIfTI (channels last) with IMAGE's affine.",
    )
    feats.add_argument("image", help="input volume (.nii / .nii.gz)")
    feats.add_argument("--out", required=True, help="output .nii.gz (4D, channels last)")
    _add_feature_options(feats)
    feats.add_argument("--clip", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip to these percentiles first")
    feats.add_argument("--ct-window", choices=list(CT_WINDOWS), help="CT: clip to this Hounsfield window first")
    feats.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="output data type")
    feats.set_defaults(func=_features)

    comp = commands.add_parser(
        "compare",
        help="feature stability of two co-registered volumes (CKA, cosine map, RGB renderings)",
        description="Compare the anatomix features of two volumes of one subject on one grid (e.g. FLAIR vs T1): "
        "linear CKA of the features vs of the intensities, voxel-wise cosine similarity, RGB renderings that "
        "share A's colour projection.",
    )
    comp.add_argument("a", help="volume A (.nii/.nii.gz), the reference grid and colour basis")
    comp.add_argument("b", help="volume B, on A's grid (or use --resample)")
    _add_feature_options(comp)
    comp.add_argument("--mode", choices=["pca", "channels"], default="pca", help="colours: PCA of A or three channels")
    comp.add_argument("--channels", type=int, nargs=3, default=[0, 1, 2], metavar=("R", "G", "B"),
                      help="channels for --mode channels (default: 0 1 2)")
    comp.add_argument("--resample", action="store_true", help="resample B onto A's grid through the affines (linear)")
    comp.add_argument("--out", metavar="DIR", help="write RGB renderings, cosine map (NIfTI, A's affine), PNGs, summary.json")
    comp.add_argument("--json", action="store_true", help="print only the numbers, as JSON")
    comp.set_defaults(func=_compare)

    inf = commands.add_parser("info", help="header facts of a NIfTI file, a DICOM folder/zip or a DICOM file")
    inf.add_argument("path", help=".nii/.nii.gz file, DICOM folder, .zip of DICOM files, or a DICOM file")
    inf.add_argument("--json", action="store_true", help="print the facts as JSON")
    inf.set_defaults(func=_info)

    conv = commands.add_parser("convert", help="DICOM series → NIfTI with the right affine")
    conv.add_argument("dicom", help="DICOM folder, .zip, or one file of the series")
    conv.add_argument("--out", required=True, help="output .nii.gz")
    conv.add_argument("--series", metavar="UID", help="SeriesInstanceUID when the folder holds several series")
    conv.set_defaults(func=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DomaingenIOError, ValueError, OSError, RuntimeError) as exc:  # our errors name the file and the problem
        print(f"domaingen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
