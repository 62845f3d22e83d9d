"""Training and batch inference for `MultiTaskNet`: targets, augmentation, losses, epochs, metrics.

Loss (weights in `TrainConfig`): age = KL divergence to a Gaussian label distribution over years
(sigma `age_sigma`) + `age_l1_weight` x |expected age - age|; a row with only an age bin (FairFace) adds
-log of the probability the year distribution puts inside its bin instead. Gender and race = cross-entropy
with label smoothing; a seven-class race head (`race7`) learns FairFace's labels directly and a five-class
label as a label set (-log of the summed probability of its classes, through the model's `race` view).
Rows with a missing label (-1) add nothing to that head's loss. With
`balance="group"` each row is weighted by 1 / frequency of its race x gender x age-bin cell
(normalised to mean 1), so that small groups count as much as large ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import labels
from core.model import AGE_BIN_MATRIX, AGES, MultiTaskNet, age_summary, mirror_average
from core.split import stratum

CPU = torch.device("cpu")

__all__ = ["TrainConfig", "Targets", "targets_from_table", "group_weights", "mitigation_note", "augment", "multitask_loss",
           "train_epoch", "predict", "metrics"]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (stored in the checkpoint)."""

    epochs: int = 10
    head_epochs: int = 1
    batch_size: int = 64
    lr: float = 2e-3
    head_lr: float = 5e-3
    weight_decay: float = 0.02
    warmup_steps: int = 200
    age_sigma: float = 2.5
    age_weight: float = 1.0
    age_l1_weight: float = 0.05
    gender_weight: float = 1.0
    race_weight: float = 1.0
    label_smoothing: float = 0.05
    balance: Literal["none", "group"] = "none"
    seed: int = 0


@dataclass
class Targets:
    """Integer targets per row; -1 where a label is missing."""

    age: torch.Tensor  # (n,) years
    gender: torch.Tensor  # (n,)
    race: torch.Tensor  # (n,)
    age_bin: torch.Tensor  # (n,)
    race7: torch.Tensor | None = None  # (n,) FairFace's seven classes, where the data has them

    def __post_init__(self) -> None:
        if self.race7 is None:
            self.race7 = torch.full_like(self.race, -1)

    def take(self, index: torch.Tensor) -> Targets:
        """The targets of rows `index`."""
        return Targets(self.age[index], self.gender[index], self.race[index], self.age_bin[index], self.race7[index])


def _codes(column: pd.Series) -> torch.Tensor:
    return torch.as_tensor(np.asarray(column.cat.codes, dtype=np.int64))  # missing -> -1


def targets_from_table(table: pd.DataFrame) -> Targets:
    """Targets from a dataset table (categorical label columns, nullable age; FairFace's `fairface_race` if any)."""
    age = torch.as_tensor(table["age"].fillna(-1).to_numpy(dtype=np.int64))
    race7 = None
    if "fairface_race" in table:
        race7 = _codes(table["fairface_race"].astype(pd.CategoricalDtype(labels.FAIRFACE_RACES)))
    return Targets(age=age, gender=_codes(table["gender"]), race=_codes(table["race"]), age_bin=_codes(table["age_bin"]),
                   race7=race7)


def mitigation_note(training: dict) -> str | None:
    """How a checkpoint's training (its config.json `training` block) mitigated group imbalance, if it did."""
    if training.get("balance") == "group":
        return ("training-time reweighting, each row weighted by 1 / size of its race x gender x age-bin cell "
                "(--balance group)")
    return None


def group_weights(table: pd.DataFrame) -> torch.Tensor:
    """Per-row weight 1 / size of its race x gender x age-bin cell, normalised to mean 1."""
    cell = stratum(table)
    weight = 1.0 / cell.map(cell.value_counts()).to_numpy(dtype=np.float64)
    return torch.as_tensor(weight / weight.mean(), dtype=torch.float32)


def augment(chips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random scale/shift/rotation crop, flip and colour jitter, batched on uint8 `(b, H, W, 3)` chips.

    Returns:
        float `(b, 3, H, W)` in [0, 1].
    """
    x = chips.permute(0, 3, 1, 2).float().div_(255.0)  # (b, 3, H, W)
    b = x.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    scale = 0.85 + 0.15 * rand(b)  # share of the chip kept
    angle = (rand(b) - 0.5) * math.radians(20)
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0)
    shift = (rand(b, 2) - 0.5) * 0.12
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = 1 + (rand(b, 1, 1, 1) - 0.5) * 0.4
    contrast = 1 + (rand(b, 1, 1, 1) - 0.5) * 0.4
    saturation = 1 + (rand(b, 1, 1, 1) - 0.5) * 0.4
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = gray + (x - gray) * torch.where(rand(b, 1, 1, 1) < 0.05, 0.0, saturation)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    return (x * brightness).clamp_(0, 1)


def multitask_loss(outputs: dict[str, torch.Tensor], targets: Targets, config: TrainConfig,
                   weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-head losses and their weighted `total` (see module docstring)."""
    b = targets.age.shape[0]
    weights = torch.ones(b) if weights is None else weights
    weights = weights.to(outputs["age"].device)
    ages = AGES.to(outputs["age"].device)
    has_age = (targets.age >= 0).to(weights.device)
    age = targets.age.clamp_min(0).float().to(ages.device)
    soft = torch.exp(-0.5 * ((ages[None, :] - age[:, None]) / config.age_sigma) ** 2)  # (b, 117)
    soft = soft / soft.sum(dim=1, keepdim=True)
    log_probs = outputs["age"].float().log_softmax(dim=1)
    kl = (soft * (soft.clamp_min(1e-12).log() - log_probs)).sum(dim=1)  # (b,)
    l1 = (log_probs.exp() @ ages - age).abs()  # (b,)
    bin_only = ((targets.age < 0) & (targets.age_bin >= 0)).to(weights.device)  # FairFace: an age bin, no year
    bin_log_mass = torch.logsumexp(log_probs[:, :, None] + AGE_BIN_MATRIX.log().to(log_probs.device)[None], dim=1)
    bin_nll = -bin_log_mass.gather(1, targets.age_bin.clamp_min(0).to(log_probs.device)[:, None])[:, 0]  # (b,)

    def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = weights * mask
        return (values * w).sum() / w.sum().clamp_min(1e-6)

    def ce(name: str, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss and its mask (rows with a label)."""
        loss = F.cross_entropy(outputs[name].float(), target.clamp_min(0).to(weights.device), reduction="none",
                               label_smoothing=config.label_smoothing)
        return loss, (target >= 0).to(weights.device)

    gender_loss, gender_mask = ce("gender", targets.gender)
    race_loss, race_mask = ce("race", targets.race)
    if "race7" in outputs:  # a seven-class label where there is one, else the five-class label as a set
        race7_loss, race7_mask = ce("race7", targets.race7)
        race_loss = torch.where(race7_mask.bool(), race7_loss, race_loss)
        race_mask = torch.maximum(race_mask, race7_mask)
    losses = {"age_kl": masked_mean(kl, has_age), "age_l1": masked_mean(l1, has_age),
              "age_bin": masked_mean(bin_nll, bin_only),
              "gender": masked_mean(gender_loss, gender_mask), "race": masked_mean(race_loss, race_mask)}
    losses["total"] = (config.age_weight * (losses["age_kl"] + losses["age_bin"]) + config.age_l1_weight * losses["age_l1"]
                       + config.gender_weight * losses["gender"] + config.race_weight * losses["race"])
    return losses


def train_epoch(model: MultiTaskNet, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                chips: torch.Tensor, targets: Targets, config: TrainConfig, *, epoch: int,
                weights: torch.Tensor | None = None, device: torch.device = CPU,
                progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, float]:
    """One pass over `chips` (uint8 `(n, H, W, 3)`) in a seeded random order; returns mean losses."""
    model.train()
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    order = torch.randperm(len(chips), generator=generator)
    batches = list(order.split(config.batch_size))
    totals: dict[str, float] = {}
    use_bf16 = device.type == "cuda"
    iterator = progress(batches) if progress else batches
    for index in iterator:
        x = augment(chips[index], generator)  # (b, 3, H, W)
        x = model.normalize((x * 255).to(device))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            outputs = model(x)
        losses = multitask_loss(outputs, targets.take(index), config, None if weights is None else weights[index])
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        scheduler.step()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.item() * len(index)
        if hasattr(iterator, "set_postfix"):
            iterator.set_postfix(loss=f"{losses['total'].item():.3f}", age_l1=f"{losses['age_l1'].item():.2f}")
    return {name: value / len(chips) for name, value in totals.items()}


@torch.inference_mode()
def predict(model: MultiTaskNet, chips: torch.Tensor | np.ndarray, *, batch_size: int = 64, tta: bool = True,
            device: torch.device = CPU,
            progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, np.ndarray]:
    """Predict every chip (uint8 `(n, H, W, 3)`), optionally averaging with the mirrored chip.

    Returns:
        `age` (n,) the model's age estimate (`model.age_estimate`), `age_std` (n,), `age_bin` (n, 9), `gender`
        (n, 2), `race` (n, 5) probabilities; `race7` (n, 7) too from a seven-class race head.
    """
    model.eval()
    chips = torch.as_tensor(chips)
    if len(chips) == 0:  # an audit where no image gave a face still writes its (empty) predictions
        return {"age": np.zeros(0, np.float32), "age_std": np.zeros(0, np.float32),
                **{head: np.zeros((0, len(names)), np.float32) for head, names in labels.CLASSES.items()}}
    parts: dict[str, list[np.ndarray]] = {}
    starts = range(0, len(chips), batch_size)
    for start in progress(starts) if progress else starts:
        x = model.normalize(chips[start : start + batch_size].to(device))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs = model(x)
            if tta:
                outputs = mirror_average(outputs, model(x.flip(3)))
        summary = age_summary(outputs["age"], model.age_estimate)
        batch = {"age": summary["age"], "age_std": summary["age_std"], "age_bin": summary["age_bin"],
                 **{head: outputs[head].float().softmax(1) for head in ("gender", "race", "race7") if head in outputs}}
        for name, value in batch.items():
            parts.setdefault(name, []).append(value.float().cpu().numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def metrics(predictions: dict[str, np.ndarray], targets: Targets) -> dict[str, float | None]:
    """Headline metrics; None where the labels are absent.

    Returns:
        `age_mae`, `cs5` (share within 5 years), `age_bin_accuracy`, `gender_accuracy`, `race_accuracy`,
        `race7_accuracy` (FairFace's seven classes, from a seven-class head).
    """
    def accuracy(probs: np.ndarray, target: torch.Tensor, rule=lambda p: p.argmax(1)) -> float | None:
        mask = target.numpy() >= 0
        return float((rule(probs[mask]) == target.numpy()[mask]).mean()) if mask.any() else None

    age_mask = targets.age.numpy() >= 0
    error = np.abs(predictions["age"][age_mask] - targets.age.numpy()[age_mask])
    return {
        "age_mae": float(error.mean()) if age_mask.any() else None,
        "cs5": float((error <= 5).mean()) if age_mask.any() else None,
        "age_bin_accuracy": accuracy(predictions["age_bin"], targets.age_bin, labels.median_bin_index),
        "gender_accuracy": accuracy(predictions["gender"], targets.gender),
        "race_accuracy": accuracy(predictions["race"], targets.race),
        "race7_accuracy": accuracy(predictions["race7"], targets.race7) if "race7" in predictions else None,
    }
