"""A classical baseline: PCA of grayscale chips + gradient-boosted trees per task.

It shows how much the CNN adds. Same output format as `core.trainer.predict`, so the same
metrics apply. Seeded; fits in about a minute on the UTKFace train split on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from core import labels
from core.trainer import Targets

__all__ = ["PcaBaseline", "chip_features"]

_FEATURE_SIDE = 48


def chip_features(chips: np.ndarray | torch.Tensor, side: int = _FEATURE_SIDE) -> np.ndarray:
    """uint8 `(n, H, W, 3)` chips -> `(n, side*side)` grayscale pixels in [0, 1], each row mean-centred."""
    x = torch.as_tensor(chips).permute(0, 3, 1, 2).float() / 255.0  # (n, 3, H, W)
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    small = F.interpolate(gray, size=(side, side), mode="area").flatten(1).numpy()  # (n, side*side)
    return small - small.mean(axis=1, keepdims=True)


@dataclass
class PcaBaseline:
    """PCA (whitened) features, then one boosted-tree model per head."""

    components: int = 120
    seed: int = 0

    def fit(self, chips: np.ndarray | torch.Tensor, targets: Targets) -> PcaBaseline:
        """Fit on uint8 chips and their targets (rows with missing labels are skipped per head)."""
        features = chip_features(chips)
        self.pca = PCA(n_components=self.components, whiten=True, random_state=self.seed).fit(features)
        z = self.pca.transform(features)
        self.heads = {}
        for name, target in (("gender", targets.gender), ("race", targets.race), ("age_bin", targets.age_bin)):
            mask = target.numpy() >= 0
            self.heads[name] = HistGradientBoostingClassifier(max_iter=200, random_state=self.seed).fit(
                z[mask], target.numpy()[mask])
        mask = targets.age.numpy() >= 0
        self.heads["age"] = HistGradientBoostingRegressor(max_iter=200, loss="absolute_error", random_state=self.seed).fit(
            z[mask], targets.age.numpy()[mask])
        return self

    def predict(self, chips: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """Outputs in the format of `core.trainer.predict` (`age_std` is 0: trees give no spread)."""
        z = self.pca.transform(chip_features(chips))
        out: dict[str, np.ndarray] = {"age": np.clip(self.heads["age"].predict(z), labels.AGE_MIN, labels.AGE_MAX)}
        out["age_std"] = np.zeros(len(z))
        for name in ("gender", "race", "age_bin"):
            model = self.heads[name]
            probs = np.zeros((len(z), len(labels.CLASSES[name])))
            probs[:, model.classes_] = model.predict_proba(z)
            out[name] = probs
        return out
