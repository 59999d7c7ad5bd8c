"""Frozen anatomix feature extraction: preprocessing, fast inference, normalisation, caching.

:func:`extract_features` is a generator: it yields progress dicts ``{"stage", "fraction", "message"}`` and
returns a :class:`FeatureResult`; it checks ``cancel()`` between network modules and windows. The napari
widget runs it in a ``thread_worker``; the CLI drives it with :func:`napari_domaingen.progress.run`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..io.intensity import CT_WINDOWS
from ..models.anatomix import AnatomixUNet, load_anatomix
from ..progress import Cancelled, Progress, in_background
from ..typing import FeatureLayer, Precision
from .device import available_memory_bytes, memory_format, resolve_device, resolve_precision

Normalisation = Literal["auto", "none", "instance", "unit"]
Strategy = Literal["auto", "whole", "sliding"]

# Peak inference memory per voxel and per unit of network width (ngf), measured for anatomix on the CPU
# (benchmarks/bench_features.py: 42·ngf bytes fp32, 22·ngf bytes bf16), with a margin.
_BYTES_PER_VOXEL_PER_WIDTH = {"fp32": 48.0, "bf16": 28.0}


LAYER_DESCRIPTIONS = {
    "final": "final output — as in the MaskGen code",
    "penultimate": "penultimate block (module 64) — as in the MaskGen paper text",
}


@dataclass(frozen=True)
class FeatureSettings:
    """What to extract and how. Every field has a sensible default; ``auto`` fields depend on the model.

    * ``weights``: registry name (``"anatomix"``, ``"anatomix-dev"``) or a local ``.pth`` path.
    * ``layer``: ``"final"`` (default, the MaskGen code's choice) or ``"penultimate"`` (the paper text's).
    * ``normalisation``: ``"instance"`` = per-channel z-score over the volume (affine-free InstanceNorm, as the
      MaskGen code does), ``"unit"`` = voxel-wise unit L2 norm across channels, ``"none"``; ``"auto"`` →
      ``instance`` for the batch-norm ``anatomix`` family, ``unit`` for the ``anatomix-dev`` family.
    * ``clip_percentiles``: clip intensities to these percentiles of the non-zero voxels before min-max.
    * ``ct_window``: a name of :data:`CT_WINDOWS` or ``(low, high)`` in HU, clipped before min-max (CT).
    * ``precision``: ``"bf16"`` autocast halves time and memory for ``anatomix`` (0.6% relative error);
      ``"auto"`` → bf16 for the ``anatomix`` family on hardware with fast bf16, fp32 otherwise and always for
      ``anatomix-dev`` (its instance norms make bf16 too inaccurate).
    * ``strategy``: ``"whole"`` volume in one pass, ``"sliding"`` MONAI sliding window (Gaussian blending,
      ``roi``/``overlap``), ``"auto"`` → whole when the estimated peak fits ``memory_budget`` bytes (default: half
      of the free memory of the device).
    * ``output_dtype``: ``"float32"`` or ``"float16"``.
    """

    weights: str = "anatomix"
    layer: FeatureLayer = "final"
    normalisation: Normalisation = "auto"
    clip_percentiles: tuple[float, float] | None = None
    ct_window: str | tuple[float, float] | None = None
    device: str = "auto"
    precision: Precision = "auto"
    strategy: Strategy = "auto"
    roi: int = 128
    overlap: float = 0.25
    memory_budget: int | None = None
    output_dtype: Literal["float32", "float16"] = "float32"

    def cache_key(self) -> tuple:
        """Fields that change the features (not device or strategy details beyond precision)."""
        return (
            self.weights,
            self.layer,
            self.normalisation,
            self.clip_percentiles,
            self.ct_window,
            self.precision,
            self.output_dtype,
        )


@dataclass
class FeatureResult:
    """``features``: ``(C, Z, Y, X)`` on the input's grid; what was actually run; wall time in seconds."""

    features: np.ndarray
    settings: FeatureSettings
    device: str
    precision: str
    strategy: str
    normalisation: str
    seconds: float
    cached: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people, e.g. ``"whole volume, bf16, instance normalisation, on cpu, 8.7 s"``."""
        how = "whole volume" if self.strategy == "whole" else f"sliding window {self.settings.roi}³"
        where = "from the cache" if self.cached else f"on {self.device}, {self.seconds:.1f} s"
        return f"{how}, {self.precision}, {self.normalisation} normalisation, {where}"


# ----------------------------------------------------------------------------------------------- preprocessing


def check_volume(image: np.ndarray) -> np.ndarray:
    """A ``(Z, Y, X)`` real-valued volume, or a clear ``ValueError`` (2D, RGB, 4D+, complex, NaN/inf)."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8:
        raise ValueError(f"expected a 3D grayscale volume (Z, Y, X), got an RGB(A) image of shape {array.shape}")
    if array.ndim != 3:
        raise ValueError(f"expected a 3D volume (Z, Y, X), got {array.ndim}D data of shape {array.shape}")
    if array.dtype.kind not in "uif" and array.dtype.kind != "b":
        raise ValueError(f"expected real-valued intensities, got dtype {array.dtype}")
    if min(array.shape) < 2:
        raise ValueError(f"volume too small for 3D features: shape {array.shape}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(
                f"the volume has {int(bad.sum())} NaN/infinite voxels; fill or mask them before extracting features"
            )
    return array


def preprocess(
    image: np.ndarray,
    clip_percentiles: tuple[float, float] | None = None,
    ct_window: str | tuple[float, float] | None = None,
) -> np.ndarray:
    """``(Z, Y, X)`` → float32 in [0, 1]: optional HU window or percentile clip, then min-max (anatomix's input)."""
    array = check_volume(image).astype(np.float32, copy=True)
    if ct_window is not None:
        low, high = CT_WINDOWS[ct_window] if isinstance(ct_window, str) else ct_window
        np.clip(array, low, high, out=array)
    elif clip_percentiles is not None:
        foreground = array[array != 0]
        if foreground.size:
            low, high = np.percentile(foreground, clip_percentiles)
            np.clip(array, low, high, out=array)
    low, high = float(array.min()), float(array.max())
    if high > low:
        array -= low
        array /= high - low
    else:
        array[...] = 0.0
    return array


def normalise(features: torch.Tensor, how: str, eps: float = 1e-5) -> torch.Tensor:
    """``(C, Z, Y, X)`` features: ``instance`` (per-channel z-score), ``unit`` (voxel-wise L2), or ``none``."""
    if how == "instance":
        return F.instance_norm(features[None], eps=eps)[0]
    if how == "unit":
        return features / features.norm(dim=0, keepdim=True).clamp_min(1e-8)
    if how == "none":
        return features
    raise ValueError(f"unknown normalisation {how!r}; use 'instance', 'unit' or 'none'")


# ----------------------------------------------------------------------------------------------- models


_MODEL_CACHE: OrderedDict[tuple[str, str], AnatomixUNet] = OrderedDict()
_MODEL_LOCK = threading.Lock()
#: Held while a shared (cached) extractor runs: feature extraction hangs progress/cancel hooks on it.
EXTRACTOR_LOCK = threading.Lock()


def get_extractor(weights: str, device: torch.device) -> AnatomixUNet:
    """A frozen extractor, loaded once per (weights, device) and kept (at most 2)."""
    key = (str(weights), str(device))
    with _MODEL_LOCK:
        if key in _MODEL_CACHE:
            _MODEL_CACHE.move_to_end(key)
            return _MODEL_CACHE[key]
    model = load_anatomix(weights, device=device).to(memory_format=memory_format(device))
    with _MODEL_LOCK:
        _MODEL_CACHE[key] = model
        while len(_MODEL_CACHE) > 2:
            _MODEL_CACHE.popitem(last=False)
    return model


def model_family(model: AnatomixUNet) -> str:
    """``"anatomix"`` (batch norm) or ``"anatomix-dev"`` (instance norm)."""
    return "anatomix" if model.config["norm"] == "batch" else "anatomix-dev"


def resolve_choices(settings: FeatureSettings, model: AnatomixUNet, device: torch.device) -> tuple[str, str]:
    """(precision, normalisation) with ``auto`` replaced by the per-family default."""
    family = model_family(model)
    precision = resolve_precision(settings.precision, device, allow_bf16=family == "anatomix")
    normalisation = settings.normalisation
    if normalisation == "auto":
        normalisation = "instance" if family == "anatomix" else "unit"
    return precision, normalisation


def estimated_peak_bytes(model: AnatomixUNet, spatial: tuple[int, ...], precision: str) -> int:
    """Rough peak memory of one whole-volume pass (padded volume × width × measured bytes per voxel)."""
    voxels = int(np.prod(model.padded_shape(spatial)))
    return int(voxels * model.config["ngf"] * _BYTES_PER_VOXEL_PER_WIDTH[precision])


# ----------------------------------------------------------------------------------------------- inference


def extract_features(
    image: np.ndarray,
    settings: FeatureSettings = FeatureSettings(),
    cancel: Callable[[], bool] | None = None,
    cache: FeatureCache | None = None,
) -> Generator[Progress, None, FeatureResult]:
    """Features of a ``(Z, Y, X)`` volume → :class:`FeatureResult` with ``(C, Z, Y, X)`` features.

    Yields progress dicts; raises :class:`~napari_domaingen.progress.Cancelled` when ``cancel()`` turns
    true (nothing is cached then). ``cache`` (default: the module's :data:`FEATURE_CACHE`) is consulted first.
    """
    cancel = cancel or (lambda: False)
    cache = FEATURE_CACHE if cache is None else cache
    image = check_volume(image)
    key = cache.key(image, settings)
    hit = cache.get(key)
    if hit is not None:
        yield {"stage": "cached", "fraction": 1.0, "message": "features taken from the cache"}
        return replace(hit, cached=True)

    start = time.perf_counter()
    yield {"stage": "load", "fraction": 0.0, "message": f"loading {settings.weights}"}
    device = resolve_device(settings.device)
    model = get_extractor(settings.weights, device)
    precision, normalisation = resolve_choices(settings, model, device)
    volume = preprocess(image, settings.clip_percentiles, settings.ct_window)
    if cancel():
        raise Cancelled("feature extraction cancelled")

    budget = settings.memory_budget or available_memory_bytes(device) // 2
    strategy = settings.strategy
    if strategy == "auto":
        strategy = "whole" if estimated_peak_bytes(model, volume.shape, precision) <= budget else "sliding"
    message = (
        f"{strategy} volume, {precision}, on {device}"
        if strategy == "whole"
        else (f"sliding window {settings.roi}³ (overlap {settings.overlap}), {precision}, on {device}")
    )
    yield {"stage": "inference", "fraction": 0.02, "message": message}

    tracker = _ModuleTracker(model, cancel)
    x = torch.from_numpy(volume)[None, None]
    infer = _whole if strategy == "whole" else _sliding

    def guarded() -> torch.Tensor:
        # one pass at a time: the progress/cancel hooks sit on the shared (cached) model
        with EXTRACTOR_LOCK, tracker:
            return infer(model, x, settings, precision, device, tracker)

    def stop() -> None:
        tracker.stop = True  # the inference thread stops at its next module

    def report() -> Progress:
        return {"stage": "inference", "fraction": 0.02 + 0.93 * tracker.fraction(), "message": message}

    raw = yield from in_background(guarded, report, stop, name="domaingen-features")
    yield {"stage": "normalise", "fraction": 0.96, "message": f"normalising ({normalisation})"}
    features = normalise(raw.float(), normalisation)
    out = features.to(torch.float16 if settings.output_dtype == "float16" else torch.float32).cpu().numpy()
    result = FeatureResult(
        features=out,
        settings=settings,
        device=str(device),
        precision=precision,
        strategy=strategy,
        normalisation=normalisation,
        seconds=time.perf_counter() - start,
        info={"model": model.config, "family": model_family(model)},
    )
    cache.put(key, result)
    yield {"stage": "done", "fraction": 1.0, "message": f"done in {result.seconds:.1f} s"}
    return result


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _whole(model, x, settings, precision, device, tracker) -> torch.Tensor:
    tracker.expect(windows=1)
    with torch.inference_mode(), _autocast(device, precision):
        x = x.to(device).contiguous(memory_format=memory_format(device))
        return model.features(x, layer=settings.layer)[0].float().cpu().contiguous()


def sliding_window_count(spatial: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    """Number of windows MONAI's ``sliding_window_inference`` runs over ``spatial`` (ROI clipped to the volume)."""
    roi = tuple(min(r, s) for r, s in zip(roi, spatial))
    steps = [max(1, int(r * (1 - overlap))) for r in roi]
    return int(np.prod([1 if r == s else -(-(s - r) // step) + 1 for r, s, step in zip(roi, spatial, steps)]))


def _sliding(model, x, settings, precision, device, tracker) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    spatial = tuple(int(s) for s in x.shape[2:])
    roi = tuple(min(settings.roi, s) for s in spatial)
    tracker.expect(windows=sliding_window_count(spatial, roi, settings.overlap))

    def predictor(window: torch.Tensor) -> torch.Tensor:
        window = window.contiguous(memory_format=memory_format(device))
        return model.features(window, layer=settings.layer).float().contiguous()

    with torch.inference_mode(), _autocast(device, precision):
        out = sliding_window_inference(
            x,
            roi,
            sw_batch_size=1,
            predictor=predictor,
            overlap=settings.overlap,
            mode="gaussian",
            sw_device=device,
            device=torch.device("cpu"),
        )
    return out[0]


class _ModuleTracker:
    """Counts executed network modules (progress) and stops the pass when cancelled (forward pre-hooks)."""

    def __init__(self, model: AnatomixUNet, cancel: Callable[[], bool]) -> None:
        self.model = model
        self.cancel = cancel
        self.stop = False
        self.done = 0
        self.total = len(model.model)
        self._handles: list[Any] = []

    def expect(self, windows: int) -> None:
        self.total = max(1, windows) * len(self.model.model)

    def fraction(self) -> float:
        return min(1.0, self.done / self.total)

    def _hook(self, _module, _inputs) -> None:
        if self.stop or self.cancel():
            self.stop = True
            raise Cancelled("feature extraction cancelled")
        self.done += 1

    def __enter__(self) -> _ModuleTracker:
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.model.model]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


# ----------------------------------------------------------------------------------------------- cache


class FeatureCache:
    """LRU cache of :class:`FeatureResult` keyed by the image content and the settings, bounded in bytes.

    The key hashes the voxel values (BLAKE2b), so an edited layer is recomputed and a re-opened file is not.
    """

    def __init__(self, max_bytes: int = 4 * 2**30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, FeatureResult] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(image: np.ndarray) -> str:
        array = np.ascontiguousarray(image)
        digest = hashlib.blake2b(array.view(np.uint8).reshape(-1), digest_size=16)
        digest.update(repr((array.shape, array.dtype.str)).encode())
        return digest.hexdigest()

    def key(self, image: np.ndarray, settings: FeatureSettings) -> tuple:
        return (self.fingerprint(image), settings.cache_key())

    def get(self, key: tuple) -> FeatureResult | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple, result: FeatureResult) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > 1 and self.nbytes > self.max_bytes:
                self._items.popitem(last=False)

    def lookup(self, image: np.ndarray, settings: FeatureSettings) -> FeatureResult | None:
        """The cached result for this image and settings, if any."""
        return self.get(self.key(check_volume(image), settings))

    @property
    def nbytes(self) -> int:
        return sum(r.features.nbytes for r in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


FEATURE_CACHE = FeatureCache()


def settings_summary(settings: FeatureSettings) -> dict[str, Any]:
    """The settings as a plain dict (for layer metadata and JSON)."""
    return asdict(settings)
