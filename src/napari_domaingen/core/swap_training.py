"""Train, fine-tune or resume a DGM-DR anatomy/style model: a generator over steps.

Same conventions as the MaskGen loop (:mod:`napari_domaingen.core.training`): progress dicts ``{"stage", "step",
"steps", "loss", "losses", "lr", "seconds_per_step", "eta", "fraction", "message"}``, ``cancel()`` checked between
steps, atomic checkpoints every ``checkpoint_every`` steps and at the end, bit-exact resume (every random draw of
step k is seeded from ``(seed, k)``), :class:`~napari_domaingen.core.progress.Cancelled` keeps the last checkpoint.

One step (the paper's): a batch of random crops (random flips and 90° rotations; histology has no up or left)
normalised → tokens ``z = [z_a | z_c]`` → reconstruction ``x̂ = S(z_a, z_c)`` and ``num_mixes`` mixes (for every
image, the style vector of one random patch of a random image of the batch, broadcast to all its patches) →
all of them re-encoded → losses (MSE, weight 1 each): reconstruction ``‖x − x̂‖²``, anatomy consistency
``‖a(E(·)) − z_a‖²`` and characteristics consistency ``‖c(E(·)) − z_c,target‖²`` over the reconstruction and
every mix → AdamW (lr 1e-3, wd 0.05) with a per-step cosine schedule (after a short linear warm-up).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.dgm import PRESETS, DGMEncoder, split_tokens, synthesize
from .device import resolve_device
from .progress import Cancelled, Progress
from .swap import as_rgb
from .swap_model import CAMELYON_MEAN, CAMELYON_STD, SwapModel, load_swap_model, read_swap_file, save_swap_model
from .training import StepClock, checkpoint_due, format_seconds, seeded_torch, step_seed

__all__ = ["SwapTrainResult", "SwapTrainSettings", "swap_losses", "train_swap"]


@dataclass(frozen=True)
class SwapTrainSettings:
    """How to train. ``preset``: encoder size (``"small"`` or ``"paper"``) for a new model; ``steps``,
    ``batch_size``, ``num_mixes`` (paper 4), ``lr`` (1e-3), ``weight_decay`` (0.05), ``warmup`` steps;
    ``checkpoint_every`` (0: only at the end); ``seed``; ``device``."""

    preset: str = "small"
    steps: int = 500
    batch_size: int = 8
    num_mixes: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 20
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.num_mixes < 0:
            raise ValueError("steps and batch size must be at least 1, num_mixes at least 0")
        if self.lr <= 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown encoder preset {self.preset!r}; known: {', '.join(PRESETS)}")


@dataclass
class SwapTrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    history: dict[str, list] = field(default_factory=dict)


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
            crop = image[:, y:y + self.size, x:x + self.size]
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


def _schedule(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(0, min(warmup, steps - 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_swap(
    images: Sequence[np.ndarray],
    out: str | os.PathLike[str],
    settings: SwapTrainSettings = SwapTrainSettings(),
    init: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    cancel: Callable[[], bool] | None = None,
    names: Sequence[str] | None = None,
    card: dict[str, Any] | None = None,
) -> Generator[Progress, None, SwapTrainResult]:
    """Train on random crops of ``images`` (RGB/RGBA/grayscale arrays) and write ``out``.

    ``init``: fine-tune this model file (``"default"``: the shipped one) with the new settings; ``resume``: continue
    an interrupted run from its checkpoint exactly (its settings win, except ``steps`` may grow). ``card``: facts
    stored with the model.
    """
    cancel = cancel or (lambda: False)
    start_time = time.perf_counter()
    stored = None
    if resume is not None:
        stored = read_swap_file(resume)
        if "training" not in stored:
            raise ValueError(f"{Path(resume).name} is a finished model without training state; fine-tune it instead")
        saved = {k: v for k, v in stored["training"]["settings"].items() if k in SwapTrainSettings.__dataclass_fields__}
        settings = SwapTrainSettings(**{**saved, "steps": max(settings.steps, saved["steps"]),
                                        "device": settings.device})
    settings.check()
    device = resolve_device(settings.device)
    source_model: SwapModel | None = None
    if resume is not None:
        source_model = load_swap_model(resume, device)
    elif init is not None:
        source_model = load_swap_model(init, device)
    if source_model is not None:
        encoder = source_model.encoder
        mean, std = source_model.mean, source_model.std
        base_card = dict(source_model.card)
    else:
        with seeded_torch(step_seed(settings.seed, -1)):
            encoder = DGMEncoder(PRESETS[settings.preset]).to(device)
        mean, std, base_card = CAMELYON_MEAN, CAMELYON_STD, {}
    base_card.update(card or {})
    if init is not None:
        base_card["fine_tuned_from"] = str(init)
        if "steps" in base_card:
            base_card["steps_before_fine_tuning"] = base_card.pop("steps")
    encoder.train()
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(name != "pos_embed")
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = _schedule(optimizer, settings.steps, settings.warmup)
    history: dict[str, list] = {"loss": [], "reconstruction": [], "anatomy": [], "characteristics": [], "lr": []}
    first_step = 0
    if stored is not None:
        state = stored["training"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_step = int(state["step"])
        history = {k: list(v) for k, v in state["history"].items()}
    data = CropSource(images, encoder.config.img_size, names)
    helper = SwapModel(encoder, tuple(mean), tuple(std))  # type: ignore[arg-type]

    def checkpoint(step: int) -> Path:
        if not all(bool(torch.isfinite(p).all()) for p in encoder.state_dict().values()):
            raise FloatingPointError(f"the weights are no longer finite at step {step}; not saved (the last "
                                     "checkpoint is kept): lower the learning rate")
        training = None
        if step < settings.steps:
            training = {"step": step, "steps": settings.steps, "settings": asdict(settings),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history}
        facts = {**base_card, "steps": step, "final_losses": {k: history[k][-1] for k in
                 ("loss", "reconstruction", "anatomy", "characteristics") if history[k]}}
        return save_swap_model(out, encoder, mean, std, card=facts, training=training)

    clock = StepClock()
    c = encoder.config
    yield {"stage": "train", "fraction": first_step / settings.steps, "step": first_step, "steps": settings.steps,
           "history": history,
           "message": f"training ViT {c.img_size} px/patch {c.patch_size}/{c.embed_dim}-d, batch "
                      f"{settings.batch_size}, {settings.num_mixes} mixes, on {device}"
                      + (f" (resumed at step {first_step})" if first_step else "")}
    path = Path(out)
    for step in range(first_step, settings.steps):
        if cancel():
            raise Cancelled(f"training cancelled at step {step}")
        clock.start()
        x = helper.normalise(data.sample(settings.seed, step, settings.batch_size).to(device))
        generator = torch.Generator().manual_seed(step_seed(settings.seed, step, stream=2))
        losses = swap_losses(encoder, x, settings.num_mixes, generator)
        loss = losses["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step + 1}; lower the learning rate "
                                     "(the last checkpoint written is kept)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, max_norm=1.0)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            scheduler.step()
        clock.stop()
        done = step + 1
        values = {k: float(v.item()) for k, v in losses.items()}
        history["loss"].append(values["total"])
        for key in ("reconstruction", "anatomy", "characteristics"):
            history[key].append(values[key])
        history["lr"].append(float(lr))
        left = settings.steps - done
        update: Progress = {
            "stage": "train", "step": done, "steps": settings.steps, "loss": values["total"],
            "losses": {k: values[k] for k in ("reconstruction", "anatomy", "characteristics")}, "lr": float(lr),
            "seconds_per_step": clock.seconds_per_step, "eta": clock.eta(left), "fraction": done / settings.steps,
            "message": f"step {done}/{settings.steps}: loss {values['total']:.4f} (reconstruction "
                       f"{values['reconstruction']:.4f}), {clock.seconds_per_step:.2f} s/step, "
                       f"{format_seconds(clock.eta(left))} left",
        }
        if checkpoint_due(done, settings.steps, settings.checkpoint_every):
            path = checkpoint(done)
            update = {**update, "checkpoint": str(path), "checkpoint_step": done}
        yield update
    encoder.eval()
    seconds = time.perf_counter() - start_time
    yield {"stage": "done", "fraction": 1.0, "step": settings.steps, "steps": settings.steps,
           "message": f"trained {settings.steps - first_step} steps in {format_seconds(seconds)}; saved {path}"}
    return SwapTrainResult(checkpoint=path, steps=settings.steps, seconds=seconds, history=history)
