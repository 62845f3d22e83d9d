"""Post-processing mitigation: fairlearn's ThresholdOptimizer on the gender head, per race group.

Thresholds are fitted on one bundle (the validation split) and applied to another (the test
split), so the test set is never used for fitting. The result is a new bundle whose gender
predictions come from group-specific (randomised) thresholds on P(Female).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

from core import labels
from core.bundle import PROVENANCE_KEYS, Bundle, compute_metrics

__all__ = ["fit_gender_thresholds", "apply_gender_thresholds"]


class _PrefitScores(ClassifierMixin, BaseEstimator):
    """A fitted 'classifier' whose input already is the model's P(Female)."""

    def fit(self, X, y):  # noqa: N803 - sklearn's signature
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):  # noqa: N803
        p = np.asarray(X, dtype=float)[:, 0]
        return np.column_stack([1 - p, p])

    def predict(self, X):  # noqa: N803
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    known = frame["gender"].notna() & frame["race"].notna()
    part = frame[known]
    return (part[["p_gender_Female"]], (part["gender"].astype("string") == "Female").to_numpy().astype(int),
            part["race"].astype("string"))


def fit_gender_thresholds(frame: pd.DataFrame, *, constraints: Literal["equalized_odds", "demographic_parity",
                          "true_positive_rate_parity"] = "equalized_odds") -> ThresholdOptimizer:
    """Fit per-race thresholds for the gender head on a predictions frame with true labels."""
    x, y, race = _xy(frame)
    optimizer = ThresholdOptimizer(estimator=_PrefitScores().fit(x, y), constraints=constraints, prefit=True,
                                   predict_method="predict_proba", objective="accuracy_score")
    return optimizer.fit(x, y, sensitive_features=race)


def apply_gender_thresholds(bundle: Bundle, optimizer: ThresholdOptimizer, *, seed: int = 0,
                            fitted_on: str = "validation", command: str | None = None) -> Bundle:
    """A copy of `bundle` whose `pred_gender` comes from `optimizer` (rows without a race keep theirs).

    The copy keeps the bundle's dataset and model provenance and records the mitigation, the bundle the
    thresholds were `fitted_on` and the `command` that made it.
    """
    frame = bundle.predictions.copy()
    known = frame["race"].notna()
    female = optimizer.predict(frame.loc[known, ["p_gender_Female"]], sensitive_features=frame.loc[known, "race"].astype("string"),
                               random_state=seed)
    predicted = frame["pred_gender"].astype("string")
    predicted[known] = np.where(female == 1, "Female", "Male")
    frame["pred_gender"] = pd.Categorical(predicted, categories=list(labels.GENDERS), ordered=True)
    metrics = compute_metrics(frame, bundle.metrics["n_images"]) | {
        key: bundle.metrics[key] for key in PROVENANCE_KEYS if key in bundle.metrics}
    metrics["mitigation"] = (f"ThresholdOptimizer({optimizer.constraints}) on the gender head per race, "
                             f"fitted on {fitted_on}")
    metrics["fitted_on"] = fitted_on
    metrics["base_created"], metrics["created"] = bundle.metrics.get("created"), time.strftime("%Y-%m-%d %H:%M:%S")
    metrics["command"] = command
    return Bundle(predictions=frame, metrics=metrics, rejects=bundle.rejects)

