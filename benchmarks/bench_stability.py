"""RGB rendering and stability numbers on a full BraTS pair with cached features, ours vs full-data baselines.

Features of the BraTS T1 and FLAIR (240×240×155, ../shared/data/mri) are extracted once with the anatomix
reference fixture (real architecture, random weights), then timed:

* PCA→RGB for both volumes (fit on a 200k-voxel foreground sample of A, applied to A and B) vs the baseline
  that fits the PCA on every foreground voxel (numpy SVD of the full covariance) — target ≤ 3 s;
* linear CKA on a 100k-voxel sample vs on every foreground voxel — target ≤ 2 s, with the sampled/full values;
* the voxel-wise cosine map.

    python benchmarks/bench_stability.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ANATOMIX_FIXTURE, SHARED, reference_weights, require

CASE = SHARED / "data" / "mri" / "brats23-gli-00001-000"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def full_pca_rgb(fa, fb, mask):
    """Baseline: PCA fitted on every foreground voxel (covariance eigendecomposition), same colour scaling."""
    rows = fa.reshape(fa.shape[0], -1)[:, mask.ravel()].astype(np.float64)
    mean = rows.mean(axis=1, keepdims=True)
    cov = (rows - mean) @ (rows - mean).T / rows.shape[1]
    _, vectors = np.linalg.eigh(cov)
    components = vectors[:, ::-1][:, :3].T
    out = []
    projected_a = components @ (rows - mean)
    low, high = np.percentile(projected_a, [1, 99], axis=1)
    for f in (fa, fb):
        p = components @ (f.reshape(f.shape[0], -1) - mean)
        out.append(np.clip((p.T - low) / (high - low), 0, 1).reshape(f.shape[1:] + (3,)))
    return out


def main() -> None:
    from napari_domaingen.core.compare import comparison_mask
    from napari_domaingen.core.features import FeatureSettings, extract_features
    from napari_domaingen.core.rgb import colour_projection
    from napari_domaingen.core.stability import cosine_map, linear_cka, sample_indices, voxel_rows
    from napari_domaingen.io.nifti import read_nifti
    from napari_domaingen.progress import run

    require(CASE)
    require(ANATOMIX_FIXTURE)
    a = read_nifti(CASE / "BraTS-GLI-00001-000-t1n.nii.gz").data
    b = read_nifti(CASE / "BraTS-GLI-00001-000-t2f.nii.gz").data
    with tempfile.TemporaryDirectory() as tmp:
        weights = reference_weights(Path(tmp) / "anatomix.pth")
        settings = FeatureSettings(weights=str(weights))
        (fa, fb), extract_seconds = timed(lambda: [run(extract_features(v, settings)).features for v in (a, b)])
    mask = comparison_mask(a, b)
    print(
        f"volumes {a.shape}, features {fa.shape} {fa.dtype}, {int(mask.sum())} foreground voxels "
        f"(feature extraction, not timed below: {extract_seconds:.1f} s)"
    )

    def ours_rgb():
        projection = colour_projection(fa, mask, "pca")
        return projection.apply(fa, mask), projection.apply(fb, mask)

    _, rgb_seconds = timed(ours_rgb)
    _, rgb_full_seconds = timed(full_pca_rgb, fa, fb, mask)

    def ours_cka():
        index = sample_indices(a.shape, mask, 100_000)
        return linear_cka(voxel_rows(fa, index), voxel_rows(fb, index))

    cka_sampled, cka_seconds = timed(ours_cka)
    full_index = np.flatnonzero(mask)
    cka_full, cka_full_seconds = timed(lambda: linear_cka(voxel_rows(fa, full_index), voxel_rows(fb, full_index)))
    _, cosine_seconds = timed(cosine_map, fa, fb)

    print(
        f"PCA->RGB, two volumes : ours {rgb_seconds:5.2f} s   full-data PCA {rgb_full_seconds:5.2f} s   "
        f"ratio {rgb_full_seconds / rgb_seconds:.1f}x   (target ours <= 3 s)"
    )
    print(
        f"linear CKA            : ours {cka_seconds:5.2f} s   all voxels    {cka_full_seconds:5.2f} s   "
        f"ratio {cka_full_seconds / cka_seconds:.1f}x   (target ours <= 2 s)"
    )
    print(
        f"  CKA value           : sampled {cka_sampled:.4f}  all voxels {cka_full:.4f}  "
        f"|delta| {abs(cka_sampled - cka_full):.4f}"
    )
    print(f"cosine map            : {cosine_seconds:5.2f} s")


if __name__ == "__main__":
    main()
