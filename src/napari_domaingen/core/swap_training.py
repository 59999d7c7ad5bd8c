"""Train, fine-tune or resume a DGM-DR anatomy/style model through the one training loop.

:func:`train_swap` is a job over steps (:func:`napari_domaingen.core.training.fit`: progress dicts with the loss
parts in ``"losses"``, cancel, atomic checkpoints, bit-exact resume, ``MODEL.history.csv``). With validation
images, every validation scores the reconstruction PSNR (dB) of fixed tiles of them (:class:`ValidationTiles`);
the best model is kept as ``MODEL.best.pt``.

One step (the paper's): a batch of random crops (random flips and 90° rotations; histology has no up or left)
normalised → tokens ``z = [z_a | z_c]`` → reconstruction ``x̂ = S(z_a, z_c)`` and ``num_mixes`` mixes (for every
image, the style vector of one random patch of a random image of the batch, broadcast to all its patches) →
all of them re-encoded → losses (MSE, weight 1 each): reconstruction ``‖x − x̂‖²``, anatomy consistency
``‖a(E(·)) − z_a‖²`` and characteristics consistency ``‖c(E(·)) − z_c,target‖²`` over the reconstruction and
every mix → AdamW (lr 1e-3, wd 0.05) with a per-step cosine schedule after a short linear warm-up, gradients
clipped to norm 1.

Optional (ours, not the paper's; ``stain_pairs`` > 0, used for the shipped model): every crop is also re-stained
at random (:func:`~napari_domaingen.core.stain_variants.random_restain`: the same tissue in another stain) and the
pair adds, with weight ``stain_pairs`` (:func:`stain_pair_losses`): the anatomy tokens of the two stains agree, and
each crop's anatomy rendered with the other stain's styles — patch-wise and their mean broadcast to every patch,
as a swap does — gives the other stain's pixels. This teaches what the paper's losses leave to chance: the style
half carries the stain, the anatomy half does not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.dgm import PRESETS, DGMEncoder, split_tokens, synthesize
from ..progress import Progress
from .distributed import training_device
from .swap import as_rgb
from .swap_model import CAMELYON_MEAN, CAMELYON_STD, SwapModel, load_swap_model, read_swap_file, swap_payload
from .training import FitResult, LoopSettings, RunState, Validation, fit, resumed_run, seeded_init, step_seed

__all__ = [
    "SwapTrainResult",
    "SwapTrainSettings",
    "ValidationTiles",
    "fine_tune_job",
    "restained",
    "stain_pair_losses",
    "swap_losses",
    "train_swap",
]

SwapTrainResult = FitResult


@dataclass(frozen=True)
class SwapTrainSettings(LoopSettings):
    """How to train (the loop's own settings: :class:`~napari_domaingen.core.training.LoopSettings`).
    ``preset``: encoder size (``"small"`` or ``"paper"``) for a new model; ``batch_size``, ``num_mixes`` (paper
    4); AdamW ``lr`` 1e-3, ``weight_decay`` 0.05, ``warmup`` 20 steps, ``grad_clip`` 1; ``validation_tiles``: at
    most this many tiles of the validation images are scored; ``stain_pairs``: weight of the stain-pair losses
    (module docstring; 0: the paper's three losses only)."""

    steps: int = 500
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 20
    grad_clip: float = 1.0
    preset: str = "small"
    batch_size: int = 8
    num_mixes: int = 4
    validation_tiles: int = 32
    stain_pairs: float = 0.0

    def check(self) -> None:
        super().check()
        if self.batch_size < 1 or self.num_mixes < 0:
            raise ValueError("the batch size must be at least 1, num_mixes at least 0")
        if not (self.stain_pairs >= 0 and math.isfinite(self.stain_pairs)):
            raise ValueError(f"the stain-pair weight must be ≥ 0, got {self.stain_pairs}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown encoder preset {self.preset!r}; known: {', '.join(PRESETS)}")


class CropSource:
    """Random ``(B, 3, S, S)`` crops in [0, 1] from RGB images, with random flips / 90° rotations, seeded per step.

    Images smaller than ``size`` are padded by reflection. Each crop's image is drawn with probability
    proportional to its area (every pixel equally likely).
    """

    def __init__(self, images: Sequence[np.ndarray], size: int, names: Sequence[str] | None = None) -> None:
        if not images:
            raise ValueError("no training images")
        self.size = size
        self.images = []
        for i, image in enumerate(images):
            name = names[i] if names else f"image {i + 1}"
            rgb = as_rgb(image, name)
            pad = (max(0, size - rgb.shape[0]), max(0, size - rgb.shape[1]))
            if any(pad):
                rgb = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="symmetric")
            self.images.append(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
        areas = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=float)
        self.weights = areas / areas.sum()

    def sample(self, seed: int, step: int, batch: int) -> torch.Tensor:
        rng = np.random.default_rng(step_seed(seed, step, stream=1))
        crops = []
        for _ in range(batch):
            image = self.images[int(rng.choice(len(self.images), p=self.weights))]
            y = int(rng.integers(0, image.shape[1] - self.size + 1))
            x = int(rng.integers(0, image.shape[2] - self.size + 1))
            crop = image[:, y : y + self.size, x : x + self.size]
            crop = torch.rot90(crop, int(rng.integers(0, 4)), dims=(1, 2))
            if rng.random() < 0.5:
                crop = crop.flip(2)
            crops.append(crop)
        return torch.stack(crops)


def swap_losses(
    encoder: DGMEncoder, x: torch.Tensor, num_mixes: int, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """The three DGM-DR losses of a normalised batch ``x`` ``(B, 3, S, S)``; keys ``total``, ``reconstruction``,
    ``anatomy``, ``characteristics``."""
    config = encoder.config
    b = x.shape[0]
    anatomy, style = split_tokens(encoder(x))
    recon = synthesize(anatomy, style, config.in_channels, config.patch_size)
    images, anatomy_targets, style_targets = [recon], [anatomy], [style]
    patches = anatomy.shape[1]
    for _ in range(num_mixes):
        source = torch.randint(0, b, (b,), generator=generator)
        patch = torch.randint(0, patches, (b,), generator=generator)
        chosen = style[source.to(x.device), patch.to(x.device)][:, None]  # (B, 1, E/2)
        images.append(synthesize(anatomy, chosen, config.in_channels, config.patch_size))
        anatomy_targets.append(anatomy)
        style_targets.append(chosen.expand_as(style))
    again_anatomy, again_style = split_tokens(encoder(torch.cat(images)))
    losses = {
        "reconstruction": F.mse_loss(recon, x),
        "anatomy": F.mse_loss(again_anatomy, torch.cat(anatomy_targets)),
        "characteristics": F.mse_loss(again_style, torch.cat(style_targets)),
    }
    losses["total"] = losses["reconstruction"] + losses["anatomy"] + losses["characteristics"]
    return losses


def restained(crops: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """``(B, 3, S, S)`` crops in [0, 1] → the same crops re-stained at random (IHC- or H&E-like), seeded per step."""
    from .stain_variants import random_restain

    rng = np.random.default_rng(step_seed(seed, step, stream=3))
    out = []
    for crop in crops:
        rgb = np.rint(crop.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
        second = "dab" if rng.random() < 0.5 else "eosin"
        out.append(torch.from_numpy(random_restain(rgb, rng, second_from=second)).permute(2, 0, 1))
    return torch.stack(out).float() / 255.0


def stain_pair_losses(encoder: DGMEncoder, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Losses of normalised crops ``x`` and the same crops in another stain ``y`` ``(B, 3, S, S)``: ``pair_anatomy``
    ``‖z_a(x) − z_a(y)‖²`` and ``pair_render`` (each crop's anatomy with the other's styles, patch-wise and mean)."""
    config = encoder.config
    tokens = split_tokens(encoder(torch.cat([x, y])))
    (ax, ay), (cx, cy) = tokens[0].chunk(2), tokens[1].chunk(2)

    def draw(anatomy: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return synthesize(anatomy, style, config.in_channels, config.patch_size)

    renders = [
        F.mse_loss(draw(ax, cy), y),
        F.mse_loss(draw(ay, cx), x),
        F.mse_loss(draw(ax, cy.mean(1, keepdim=True)), y),
        F.mse_loss(draw(ay, cx.mean(1, keepdim=True)), x),
    ]
    return {"pair_anatomy": F.mse_loss(ax, ay), "pair_render": torch.stack(renders).mean()}


class ValidationTiles:
    """Fixed ``(N, 3, S, S)`` tiles in [0, 1] of validation images (a regular grid over each image, at most ``limit``
    in all, spread evenly over the images) and the PSNR of their reconstruction."""

    def __init__(
        self, images: Sequence[np.ndarray], size: int, limit: int = 32, names: Sequence[str] | None = None
    ) -> None:
        tiles = []
        for i, image in enumerate(images):
            rgb = CropSource([image], size, [names[i]] if names else [f"validation image {i + 1}"]).images[0]
            rows, cols = rgb.shape[1] // size, rgb.shape[2] // size
            tiles += [
                rgb[:, r * size : (r + 1) * size, c * size : (c + 1) * size] for r in range(rows) for c in range(cols)
            ]
        if not tiles:
            raise ValueError("no validation images")
        keep = np.unique(np.linspace(0, len(tiles) - 1, min(limit, len(tiles))).round().astype(int))
        self.tiles = torch.stack([tiles[i] for i in keep])

    def psnr(self, model: SwapModel, batch: int = 16) -> float:
        """Reconstruction PSNR in dB (images in [0, 1]) over all tiles."""
        config, errors = model.config, []
        with torch.no_grad():
            for start in range(0, len(self.tiles), batch):
                x = self.tiles[start : start + batch].to(model.device)
                anatomy, style = split_tokens(model.encoder(model.normalise(x)))
                recon = model.denormalise(synthesize(anatomy, style, config.in_channels, config.patch_size))
                errors.append(((recon.clamp(0, 1) - x) ** 2).flatten(1).mean(1))
        mse = float(torch.cat(errors).mean())
        return 10.0 * math.log10(1.0 / max(mse, 1e-12))


class _SwapTask:
    """One DGM-DR step and the reconstruction-PSNR validation for :func:`~napari_domaingen.core.training.fit`."""

    def __init__(
        self,
        helper: SwapModel,
        settings: SwapTrainSettings,
        data: CropSource,
        validation: ValidationTiles | None,
        card: dict[str, Any],
    ) -> None:
        self.helper, self.module, self.settings, self.data = helper, helper.encoder, settings, data
        self.validation, self.validates, self.card = validation, validation is not None, card

    def loss(self, step: int) -> dict[str, torch.Tensor]:
        settings, device = self.settings, self.helper.device
        crops = self.data.sample(settings.seed, step, settings.batch_size)
        x = self.helper.normalise(crops.to(device))
        generator = torch.Generator().manual_seed(step_seed(settings.seed, step, stream=2))
        losses = swap_losses(self.module, x, settings.num_mixes, generator)
        total = losses.pop("total")
        if settings.stain_pairs > 0:
            y = self.helper.normalise(restained(crops, settings.seed, step).to(device))
            pairs = stain_pair_losses(self.module, x, y)
            total = total + settings.stain_pairs * (pairs["pair_anatomy"] + pairs["pair_render"])
            losses.update(pairs)
        return {"loss": total, **losses}

    def validate(self, cancel: Callable[[], bool]) -> Validation:
        assert self.validation is not None
        self.module.eval()
        psnr = self.validation.psnr(self.helper)
        return Validation(
            psnr,
            f"validation reconstruction PSNR {psnr:.2f} dB ({len(self.validation.tiles)} tiles)",
            {"val_psnr": psnr},
        )

    def payload(self, state: RunState) -> dict[str, Any]:
        history = state.history
        parts = ("loss", "reconstruction", "anatomy", "characteristics", "pair_anatomy", "pair_render")
        final = {k: history[k][-1] for k in parts if history.get(k)}
        card = {**self.card, "steps": state.step, "final_losses": final}
        return swap_payload(self.module, self.helper.mean, self.helper.std, card=card)

    def finish(self) -> str:
        return ""


def train_swap(
    images: Sequence[np.ndarray],
    out: str | os.PathLike[str],
    settings: SwapTrainSettings = SwapTrainSettings(),
    init: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    cancel: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
    card: dict[str, Any] | None = None,
    validation: Sequence[np.ndarray] = (),
) -> Generator[Progress, None, SwapTrainResult]:
    """Train on random crops of ``images`` (RGB/RGBA/grayscale arrays) and write ``out``.

    ``init``: fine-tune this model file (``"default"``: the shipped one) with the new settings; ``resume``: continue
    a run from its checkpoint exactly (its settings win, except ``steps`` may grow). ``validation``: images scored
    by reconstruction PSNR. ``card``: facts stored with the model.
    """
    if resume is not None and init is not None:
        raise ValueError("give either a checkpoint to resume or one to fine-tune from, not both")
    state: RunState | None = None
    if resume is not None:
        settings, state = resumed_run(SwapTrainSettings, read_swap_file(resume), resume, settings)
    settings.check()
    device = training_device(settings.device)  # under torchrun: this process's GPU
    start = resume if resume is not None else init
    if start is not None:
        source = load_swap_model(start, device)
        encoder, mean, std, base_card = source.encoder, source.mean, source.std, dict(source.card)
    else:
        with seeded_init(settings.seed):
            encoder = DGMEncoder(PRESETS[settings.preset]).to(device)
        mean, std, base_card = CAMELYON_MEAN, CAMELYON_STD, {}
    base_card.update(card or {})
    if init is not None:
        base_card["fine_tuned_from"] = str(init)
        if "steps" in base_card:
            base_card["steps_before_fine_tuning"] = base_card.pop("steps")
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(name != "pos_embed")
    helper = SwapModel(encoder, tuple(mean), tuple(std))  # type: ignore[arg-type]
    size = encoder.config.img_size
    tiles = ValidationTiles(validation, size, settings.validation_tiles) if len(validation) else None
    task = _SwapTask(helper, settings, CropSource(images, size, names), tiles, base_card)
    c = encoder.config
    what = (
        f"ViT {c.img_size} px/patch {c.patch_size}/{c.embed_dim}-d, batch {settings.batch_size}, "
        f"{settings.num_mixes} mixes{f', stain pairs ×{settings.stain_pairs:g}' if settings.stain_pairs else ''}, "
        f"on {device}"
    )
    return (yield from fit(task, settings, out, state, resume, cancel, describe=what))


def fine_tune_job(
    inputs: Sequence[tuple[str, Any]],
    out: str | os.PathLike[str],
    settings: SwapTrainSettings,
    init: str | os.PathLike[str],
    cancel: Callable[[], bool] | None = None,
    source: str = "napari-domaingen 'Anatomy / style swap' widget",
) -> Generator[Progress, None, SwapTrainResult]:
    """Fine-tune the model ``init`` on the images ``inputs`` (``(name, array-like)``; converted to RGB here, in the
    job, not by the caller) and write ``out``; ``source``: who asked, stored in the model card."""
    yield {"stage": "prepare", "fraction": 0.0, "message": "preparing the training images"}
    images = [as_rgb(np.asarray(data), name) for name, data in inputs]
    names = [name for name, _ in inputs]
    card = {"fine_tuned_on": names, "source": source}
    return (yield from train_swap(images, out, settings, init=init, cancel=cancel, names=names, card=card))
