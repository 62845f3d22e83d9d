"""Training and batch inference for `MultiTaskNet`: targets, augmentation, losses, epochs, metrics.

Loss (weights in `TrainConfig`): age = KL divergence to a Gaussian label distribution over years
(sigma `age_sigma`) + `age_l1_weight` x |expected age - age|; gender and race = cross-entropy with
label smoothing. Rows with a missing label (-1) add nothing to that head's loss. With
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
from core.model import AGES, MultiTaskNet, age_summary, mirror_average
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

    def take(self, index: torch.Tensor) -> Targets:
        """The targets of rows `index`."""
        return Targets(self.age[index], self.gender[index], self.race[index], self.age_bin[index])


def _codes(column: pd.Series) -> torch.Tensor:
    return torch.as_tensor(np.asarray(column.cat.codes, dtype=np.int64))  # missing -> -1


def targets_from_table(table: pd.DataFrame) -> Targets:
    """Targets from a dataset table (categorical label columns, nullable age)."""
    age = torch.as_tensor(table["age"].fillna(-1).to_numpy(dtype=np.int64))
    return Targets(age=age, gender=_codes(table["gender"]), race=_codes(table["race"]), age_bin=_codes(table["age_bin"]))


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

    def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = weights * mask
        return (values * w).sum() / w.sum().clamp_min(1e-6)

    def ce(name: str, target: torch.Tensor) -> torch.Tensor:
        mask = (target >= 0).to(weights.device)
        loss = F.cross_entropy(outputs[name].float(), target.clamp_min(0).to(weights.device), reduction="none",
                               label_smoothing=config.label_smoothing)
        return masked_mean(loss, mask)

    losses = {"age_kl": masked_mean(kl, has_age), "age_l1": masked_mean(l1, has_age),
              "gender": ce("gender", targets.gender), "race": ce("race", targets.race)}
    losses["total"] = (config.age_weight * losses["age_kl"] + config.age_l1_weight * losses["age_l1"]
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
        `age`, `age_std` (n,), `age_bin` (n, 9), `gender` (n, 2), `race` (n, 5) probabilities.
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
        summary = age_summary(outputs["age"])
        batch = {"age": summary["age"], "age_std": summary["age_std"], "age_bin": summary["age_bin"],
                 "gender": outputs["gender"].float().softmax(1), "race": outputs["race"].float().softmax(1)}
        for name, value in batch.items():
            parts.setdefault(name, []).append(value.float().cpu().numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def metrics(predictions: dict[str, np.ndarray], targets: Targets) -> dict[str, float | None]:
    """Headline metrics; None where the labels are absent.

    Returns:
        `age_mae`, `cs5` (share within 5 years), `age_bin_accuracy`, `gender_accuracy`, `race_accuracy`.
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
    }
