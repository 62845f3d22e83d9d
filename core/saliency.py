"""Per-group saliency: where the model looks, on average, for each cohort of aligned faces.

For a head (gender or race) and a cohort (e.g. Black women, ages 60-69) this averages the
Grad-CAM maps of the cohort's faces, each explaining the face's true class and normalised to
sum 1, so that cohorts of different sizes and confidence compare side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import labels

if TYPE_CHECKING:  # torch loads when maps are computed: reading them (the dashboard) does without it
    import torch

    from core.model import MultiTaskNet

__all__ = ["default_cohorts", "cohort_saliency", "SALIENCY_FILE", "save_saliency", "load_saliency"]

SALIENCY_FILE = "saliency.npz"


def default_cohorts(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks: every race x gender cell and every age bin present in `frame`."""
    cohorts = {}
    for race in labels.RACES:
        for gender in labels.GENDERS:
            mask = ((frame["race"] == race) & (frame["gender"] == gender)).fillna(False).to_numpy()
            if mask.any():
                cohorts[f"{race} / {gender}"] = mask
    for age_bin in labels.AGE_BINS:
        mask = (frame["age_bin"] == age_bin).fillna(False).to_numpy()
        if mask.any():
            cohorts[f"age {age_bin}"] = mask
    return cohorts


def _class_scores(head: str, classes: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    def score(logits: dict[str, torch.Tensor]) -> torch.Tensor:
        probs = logits[head].float().softmax(dim=1)  # (b, classes)
        return probs.gather(1, classes[:, None])[:, 0]
    return score


def cohort_saliency(model: MultiTaskNet, chips: np.ndarray | torch.Tensor, frame: pd.DataFrame, *,
                    heads: tuple[str, ...] = ("gender", "race"), cohorts: dict[str, np.ndarray] | None = None,
                    max_per_cohort: int = 150, batch_size: int = 50, seed: int = 0,
                    progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, np.ndarray]:
    """Mean Grad-CAM map per (head, cohort), keyed `"<head>|<cohort>"`, each `(S, S)` float32.

    Args:
        model: The audited model in eval mode.
        chips: uint8 `(n, H, W, 3)` aligned chips, row-aligned with `frame`.
        frame: Rows with true `race`, `gender`, `age_bin` (rows with a missing true class are skipped per head).
        max_per_cohort: Faces sampled (seeded) per cohort.
    """
    import torch

    from core.explain import grad_cam

    chips = torch.as_tensor(chips)
    cohorts = default_cohorts(frame) if cohorts is None else cohorts
    rng = np.random.default_rng(seed)
    maps: dict[str, np.ndarray] = {}
    jobs = [(head, name, mask) for head in heads for name, mask in cohorts.items()]
    for head, name, mask in progress(jobs) if progress else jobs:
        names = labels.CLASSES[head]
        codes = pd.Categorical(frame[head].astype("string"), categories=names).codes
        rows = np.flatnonzero(mask & (codes >= 0))
        if len(rows) == 0:
            continue
        rows = np.sort(rng.choice(rows, size=min(max_per_cohort, len(rows)), replace=False))
        total = None
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            x = model.normalize(chips[part])  # (b, 3, S, S)
            cam = grad_cam(model, x, _class_scores(head, torch.as_tensor(codes[part], dtype=torch.long)))
            cam = cam / cam.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
            batch_sum = cam.sum(dim=0).detach()
            total = batch_sum if total is None else total + batch_sum
        maps[f"{head}|{name}"] = (total / len(rows)).numpy().astype(np.float32)
        maps[f"{head}|{name}|n"] = np.array(len(rows))
    return maps


def save_saliency(maps: dict[str, np.ndarray], path) -> None:
    """Write maps to an .npz file (float16 maps keep it small)."""
    np.savez_compressed(path, **{key: value.astype(np.float16) if value.ndim == 2 else value
                                 for key, value in maps.items()})


def load_saliency(path) -> dict[str, tuple[np.ndarray, int]]:
    """`"<head>|<cohort>"` -> (map, faces averaged)."""
    with np.load(path) as data:
        return {key: (data[key].astype(np.float32), int(data[f"{key}|n"])) for key in data.files if not key.endswith("|n")}
