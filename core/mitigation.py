"""Post-processing mitigations of the gender head, fitted on one bundle and applied to another.

Both are fitted on one bundle (the validation split) and applied to another (the test split), so the
test set is never used for fitting; each result is a new bundle whose gender predictions change, not
its probabilities.

- fairlearn's ThresholdOptimizer: group-specific (randomised) thresholds on P(Female) per race.
- One threshold on P(Female) for everyone, where women's and men's error rates are equal on the fit
  bundle: it uses no group at prediction time.
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
from core.errors import FaceAuditError

__all__ = ["MitigationError", "fit_gender_thresholds", "apply_gender_thresholds", "fit_equal_error_threshold",
           "apply_gender_threshold"]


class MitigationError(FaceAuditError, ValueError):
    """A bundle a mitigation cannot be fitted on or applied to."""


def _p_female(frame: pd.DataFrame) -> pd.Series:
    """The model's P(Female) per face, or a MitigationError if the bundle has none."""
    if "p_gender_Female" not in frame:
        raise MitigationError("the bundle has no p_gender_Female column: a gender threshold needs the model's P(Female)")
    return frame["p_gender_Female"]


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
    frame = bundle.predictions
    known = frame["race"].notna()
    female = optimizer.predict(frame.loc[known, ["p_gender_Female"]], sensitive_features=frame.loc[known, "race"].astype("string"),
                               random_state=seed)
    return _with_gender(bundle, known.to_numpy(), female == 1, fitted_on, command,
                        f"ThresholdOptimizer({optimizer.constraints}) on the gender head per race, fitted on {fitted_on}")


def _error_rates(p_female: np.ndarray, female: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Women called men and men called women when Female is predicted at P(Female) >= each threshold."""
    women, men = np.sort(p_female[female]), np.sort(p_female[~female])
    return (np.searchsorted(women, thresholds, side="left") / len(women),
            (len(men) - np.searchsorted(men, thresholds, side="left")) / len(men))


def fit_equal_error_threshold(frame: pd.DataFrame) -> float:
    """The threshold on P(Female) at which as many women are called men as men are called women (as shares)
    among `frame`'s faces with a true gender; the one nearest 0.5 where several are equally close.

    Raises:
        MitigationError: `frame` has no P(Female), or no woman or no man with one.
    """
    p_female = _p_female(frame)
    known = frame["gender"].notna() & p_female.notna()
    p = p_female[known].to_numpy(dtype=float)
    female = (frame.loc[known, "gender"].astype("string") == "Female").to_numpy()
    if female.all() or not female.any():
        raise MitigationError(f"fitting an equal-error threshold needs women and men with a P(Female); this bundle has "
                              f"{female.sum():,} women and {(~female).sum():,} men")
    scores = np.unique(p)
    candidates = np.concatenate([[0.0], (scores[:-1] + scores[1:]) / 2, [1.0]])  # between neighbouring scores
    called_men, called_women = _error_rates(p, female, candidates)
    gap = np.abs(called_men - called_women)
    best = np.flatnonzero(gap == gap.min())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def apply_gender_threshold(bundle: Bundle, threshold: float, *, fitted_on: str = "validation",
                           command: str | None = None) -> Bundle:
    """A copy of `bundle` whose `pred_gender` is Female where P(Female) >= `threshold` (rows without a P(Female)
    keep theirs); provenance as `apply_gender_thresholds` records it."""
    p = _p_female(bundle.predictions)
    known = p.notna().to_numpy()
    return _with_gender(bundle, known, p[known].to_numpy() >= threshold, fitted_on, command,
                        f"one threshold on P(Female) for everyone, {threshold:.3f}, where women's and men's error "
                        f"rates are equal on {fitted_on}")


def _with_gender(bundle: Bundle, rows: np.ndarray, female: np.ndarray, fitted_on: str, command: str | None,
                 mitigation: str) -> Bundle:
    """`bundle` with `pred_gender` of `rows` set from `female`, its metrics computed again and the mitigation recorded."""
    frame = bundle.predictions.copy()
    predicted = frame["pred_gender"].astype("string")
    predicted[rows] = np.where(female, "Female", "Male")
    frame["pred_gender"] = pd.Categorical(predicted, categories=list(labels.GENDERS), ordered=True)
    metrics = compute_metrics(frame, bundle.metrics["n_images"]) | {
        key: bundle.metrics[key] for key in PROVENANCE_KEYS if key in bundle.metrics}
    metrics["mitigation"] = mitigation
    metrics["fitted_on"] = fitted_on
    metrics["base_created"], metrics["created"] = bundle.metrics.get("created"), time.strftime("%Y-%m-%d %H:%M:%S")
    metrics["command"] = command
    return Bundle(predictions=frame, metrics=metrics, rejects=bundle.rejects)
