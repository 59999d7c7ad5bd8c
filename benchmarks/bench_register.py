"""Registration on real brains (FireANTs engine, MIND-SSC features by default): a FLAIR moved by a known affine and
a known smooth deformation, registered back onto its T1 across contrast; an identity pair; the written transform
applied by SimpleITK alone.

    python benchmarks/bench_register.py [--case tcga|brats] [--transform affine,deformable] [--baseline]

Prints: landmark error (mm, 20 brain points) before/after, tumour-label Dice before/after, folds, seconds, peak
memory, the identity pair's mean displacement, and the SimpleITK agreement (share of voxels within 1 % of range).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
from _register_cases import landmark_errors, make_case

MRI = Path(__file__).resolve().parents[2] / "shared" / "data" / "mri"
#: (T1, FLAIR, labels on both): TCGA-DU-7294 with its fused tumour labels; BraTS-GLI-00001-000 with its tumour
#: region mask (the inpainting mask: the tumour's extent, not a segmentation)
CASES = {
    "tcga": ("tcga-du-7294/TCGA-DU-7294_t1_bet.nii.gz", "tcga-du-7294/TCGA-DU-7294_fla_bet.nii.gz",
             "tcga-du-7294/tcga-du-7294_seg-fusion-simple.nii.gz"),
    "brats": ("brats23-gli-00001-000/BraTS-GLI-00001-000-t1n.nii.gz",
              "brats23-gli-00001-000/BraTS-GLI-00001-000-t2f.nii.gz",
              "brats23-gli-00001-000/BraTS-GLI-00001-000-inpainting-mask.nii.gz"),
}  # fmt: skip


def main() -> int:
    from napari_domaingen.core.jobs.register import RegisterJob, run_register
    from napari_domaingen.core.register import RegisterSettings
    from napari_domaingen.core.registration_space import as_array
    from napari_domaingen.progress import run

    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=list(CASES), default="tcga")
    parser.add_argument("--features", default="mindssc")
    parser.add_argument("--transform", default="rigid,affine,deformable", help="stages (as the command takes them)")
    parser.add_argument("--iterations", default="200,100,50")
    parser.add_argument("--weights", default="anatomix", help="anatomix weights (registry name or .pth)")
    parser.add_argument("--linear", default="200,100", help="linear iterations per scale")
    parser.add_argument("--sigmas", default="1.0,1.0", help="gradient and warp smoothing (voxels)")
    parser.add_argument("--grid", type=float, default=2.0)
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument("--baseline", action="store_true", help="also elastix (affine + B-spline, Mattes MI)")
    parser.add_argument("--json")
    args = parser.parse_args()
    t1, flair, labels = (MRI / name for name in CASES[args.case])
    if not t1.is_file():
        print(f"skipped: {t1} not found")
        return 0
    iterations = tuple(int(v) for v in args.iterations.split(","))
    grad_sigma, warp_sigma = (float(v) for v in args.sigmas.split(","))
    settings = RegisterSettings(
        stages=tuple(args.transform.split(",")),
        features=args.features,
        weights=args.weights,
        deformable_iterations=iterations,
        linear_iterations=tuple(int(v) for v in args.linear.split(",")),
        gradient_sigma=grad_sigma,
        warp_sigma=warp_sigma,
        grid_mm=args.grid,
    )
    work = Path(tempfile.mkdtemp(prefix="bench_register_"))
    moving, moving_labels, truth = make_case(t1, flair, labels, work / "case")
    start = time.perf_counter()
    result = run(run_register(RegisterJob(t1, moving, work / "out", moving_labels, labels, settings)))
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    fixed = sitk.ReadImage(str(t1), sitk.sitkFloat32)
    found = result.registration.transform.itk()
    before = landmark_errors(fixed, sitk.Transform(3, sitk.sitkIdentity), truth)
    after = landmark_errors(fixed, found, truth)
    # the written files, applied by SimpleITK alone, against our moved image
    field = sitk.ReadImage(str(work / "out" / "warp.nii.gz"), sitk.sitkVectorFloat64)
    theirs_tx = sitk.CompositeTransform(
        [sitk.ReadTransform(str(work / "out" / "affine.mat")), sitk.DisplacementFieldTransform(field)]
    )
    theirs = as_array(sitk.Resample(sitk.ReadImage(str(moving), sitk.sitkFloat32), fixed, theirs_tx))
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(result.written[0]), sitk.sitkFloat32))
    tolerance = 0.01 * float(ours.max() - ours.min())
    agree = float(np.mean(np.abs(theirs - ours) <= tolerance))
    # identity: the T1 onto itself
    drift = np.zeros(1)
    if not args.no_identity:
        identity = run(run_register(RegisterJob(t1, t1, work / "identity", settings=settings)))
        reference = sitk.ReadImage(str(t1), sitk.sitkFloat32)
        brain = sitk.GetArrayFromImage(reference) > 0
        drift = identity.registration.transform.displacement_mm(reference)[brain]
    figures = {
        "landmark_mm_before": float(before.mean()),
        "landmark_mm_after": float(after.mean()),
        "landmark_mm_after_max": float(after.max()),
        "dice_before": result.metrics.get("mean_dice_before"),
        "dice_after": result.metrics.get("mean_dice"),
        "dice_tumour_before": result.metrics.get("dice_all_before"),
        "dice_tumour_after": result.metrics.get("dice_all"),
        "folds": result.metrics["folds"],
        "seconds_register": result.registration.seconds,
        "seconds_job": wall,
        "peak_rss_gb": peak_gb,
        "simpleitk_agree_share": agree,
        "identity_mean_mm": float(drift.mean()),
        "identity_max_mm": float(drift.max()),
        "case": args.case,
        "stages": "+".join(settings.stages),
        "features": result.registration.features,
        "iterations": list(iterations),
        "linear_iterations": list(settings.linear_iterations),
        "sigmas": [grad_sigma, warp_sigma],
        "grid_mm": args.grid,
        "dice_per_class": {k: v for k, v in result.metrics.items() if k.startswith("dice_")},
    }
    if args.baseline:
        figures.update(_elastix(t1, moving, moving_labels, labels, truth, work))
    for key, value in figures.items():
        print(f"{key:24s} {value:.3f}" if isinstance(value, float) else f"{key:24s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _elastix(t1: Path, moving: Path, moving_labels: Path, labels: Path, truth, work: Path) -> dict:
    """The elastix baseline on the same case, in its own process; its figures measured as ours are."""
    import subprocess

    from napari_domaingen.core.jobs.register import dice_per_class

    field_path = work / "elastix_field.nii.gz"
    script = Path(__file__).with_name("_elastix_baseline.py")
    done = subprocess.run(
        [sys.executable, str(script), str(t1), str(moving), str(field_path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        return {"elastix_error": done.stderr.strip().splitlines()[-1:]}
    seconds = float(done.stdout.strip().splitlines()[-1])
    field = sitk.ReadImage(str(field_path), sitk.sitkVectorFloat64)
    folds = int(np.count_nonzero(sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field)) <= 0))
    transform = sitk.DisplacementFieldTransform(field)
    fixed = sitk.ReadImage(str(t1), sitk.sitkFloat32)
    errors = landmark_errors(fixed, transform, truth)
    moved = sitk.Resample(sitk.ReadImage(str(moving_labels)), fixed, transform, sitk.sitkNearestNeighbor, 0)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(labels)))
    moved_array = sitk.GetArrayFromImage(moved)
    per_class = dice_per_class(reference, moved_array)
    whole = dice_per_class((reference > 0).astype(np.uint8), (moved_array > 0).astype(np.uint8))[1]
    return {
        "elastix_seconds": seconds,
        "elastix_landmark_mm": float(errors.mean()),
        "elastix_landmark_mm_max": float(errors.max()),
        "elastix_dice_mean": float(np.mean(list(per_class.values()))),
        "elastix_dice_tumour": whole,
        "elastix_dice_per_class": per_class,
        "elastix_folds": folds,
    }


if __name__ == "__main__":
    raise SystemExit(main())
