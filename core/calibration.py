"""Calibration of a bundle's probabilities: does "90 % sure" mean right 9 times in 10, overall and for each group?

- `reliability`: per confidence bin, the share right (Wilson interval) against the mean confidence
  (`reliability_curves`: of several groups at once).
- `calibration_table`: expected calibration error (ECE) per group, with a bootstrap interval (a person's photos
  drawn together), mean confidence, accuracy and their difference (over- or under-confidence).
- `fit_temperatures` / `with_temperatures`: temperature scaling per head, fitted on one bundle (validation) by
  maximum likelihood and applied to another; the predicted class never changes (the age bin follows the median
  rule on the rescaled bin probabilities).

Confidence is the probability of the predicted class (`pred_<head>`); rows without a true label or without
probabilities (imported labels) do not count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import labels
from core.cohorts import CLASS_HEADS, OUTCOME_HEADS, true_labels
from core.fairness import (
    MAX_BOOTSTRAP_UNITS,
    SMALL_N,
    bootstrap_units,
    class_positions,
    cluster_column,
    cluster_ids,
    group_members,
    wilson_interval,
)

__all__ = ["BINS", "confidence_and_correct", "expected_calibration_error", "reliability", "reliability_curves",
           "calibration_table", "fit_temperatures", "with_temperatures", "has_probabilities", "calibrated_heads",
           "resampled_ece", "shifted_interval"]

BINS = 15  # equal-width confidence bins for ECE (Guo et al. 2017)


# Heads with probabilities: `CLASS_HEADS`, and a seven-class race head (classes in `labels.HEAD_CLASSES`) scored
# against FairFace's labels (`labels.true_column`).


def _probability_columns(head: str) -> list[str]:
    return [f"p_{head}_{name}" for name in labels.HEAD_CLASSES[head]]


def has_probabilities(frame: pd.DataFrame, head: str) -> bool:
    return all(column in frame for column in _probability_columns(head)) and frame[_probability_columns(head)].notna().any().any()


def calibrated_heads(frame: pd.DataFrame) -> list[str]:
    """The heads whose calibration `frame` can show (of `OUTCOME_HEADS`): probabilities and some true labels (the
    seven-class race head on data labelled with FairFace's seven races)."""
    return [head for head in OUTCOME_HEADS
            if has_probabilities(frame, head) and true_labels(frame, head).notna().any()]


def confidence_and_correct(frame: pd.DataFrame, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the predicted class's probability, whether it is right, and whether the row counts (label and
    probabilities present)."""
    if not has_probabilities(frame, head):
        empty = np.zeros(len(frame))
        return empty, empty, np.zeros(len(frame), dtype=bool)
    probs = frame[_probability_columns(head)].to_numpy(dtype=float)
    predicted = class_positions(frame[f"pred_{head}"], labels.HEAD_CLASSES[head])
    truth = true_labels(frame, head)
    known = truth.notna().to_numpy() & (predicted >= 0) & ~np.isnan(probs).any(axis=1)
    confidence = np.where(predicted >= 0, probs[np.arange(len(frame)), np.maximum(predicted, 0)], np.nan)
    correct = (predicted >= 0) & (class_positions(truth, labels.HEAD_CLASSES[head]) == predicted)
    return confidence, correct.astype(float), known


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((confidence * bins).astype(int), bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Σ over equal-width confidence bins of (share of rows) × |accuracy − mean confidence|; NaN without rows."""
    if len(confidence) == 0:
        return np.nan
    which = _bin_of(confidence, bins)
    n = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / n.sum())


def shifted_interval(resampled: np.ndarray, ece: float) -> tuple[float, float]:
    """The percentile interval of resampled ECEs shifted down by the bootstrap's estimate of the ECE's upward bias
    (their mean − `ece`), floored at 0.

    A resampled ECE adds its own noise to the bins' |accuracy − confidence|, so the plain percentile interval sits
    above the estimate (on 23 of the 956 intervals of the shipped bundles it excluded it) and seldom covers a small
    true ECE (`python -m benchmarks.ece_intervals`).
    """
    bias = resampled.mean() - ece
    low, high = np.percentile(resampled, [2.5, 97.5]) - bias
    return float(max(low, 0.0)), float(max(high, 0.0))


def resampled_ece(confidence: np.ndarray, correct: np.ndarray, clusters: np.ndarray | None, bins: int, rounds: int,
                  rng: np.random.Generator, bucket_weights: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The ECE of `rounds` bootstrap resamples of the rows, or of whole clusters (one person's photos).

    Groups of more than `MAX_BOOTSTRAP_UNITS` units (a million-row audit) resample as many buckets, and share one
    draw of the buckets' weights through `bucket_weights`: each group's interval is still a bootstrap of its own
    buckets, and a race x gender table of a million rows takes 0.27 s instead of 0.59 s.
    """
    which = _bin_of(confidence, bins)
    cluster = bootstrap_units(len(confidence), clusters, rng)
    k = cluster.max() + 1
    # per cluster and bin: rows, sum of confidence, sum of correct
    index = cluster * bins + which
    rows = np.bincount(index, minlength=k * bins).reshape(k, bins)
    conf = np.bincount(index, confidence, k * bins).reshape(k, bins)
    right = np.bincount(index, correct, k * bins).reshape(k, bins)
    weights = None if bucket_weights is None else bucket_weights.get(k)
    if weights is None:
        draws = rng.integers(0, k, (rounds, k))  # all rounds at once: (rounds, clusters) times each cluster is drawn
        weights = np.bincount((draws + k * np.arange(rounds)[:, None]).ravel(), minlength=rounds * k).reshape(rounds, k)
        weights = weights.astype(np.float64)  # BLAS: an integer matrix product is ten times slower
        if k == MAX_BOOTSTRAP_UNITS and bucket_weights is not None:
            bucket_weights[k] = weights
    n, c, r = weights @ rows, weights @ conf, weights @ right  # (rounds, bins)
    return np.abs(r - c).sum(axis=1) / n.sum(axis=1)


def reliability(frame: pd.DataFrame, head: str, bins: int = 10, rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row per non-empty confidence bin: `bin` (its range), `n`, `confidence` (mean), `accuracy`, `ci_low`,
    `ci_high`; of the rows at positions `rows` (default all)."""
    return _reliability(*confidence_and_correct(frame, head), rows, bins)


def reliability_curves(frame: pd.DataFrame, head: str, groups: dict[str, np.ndarray | None],
                       bins: int = 10) -> dict[str, pd.DataFrame]:
    """`reliability` of each named set of row positions (None: every row), the probabilities read once."""
    scored = confidence_and_correct(frame, head)
    return {name: _reliability(*scored, rows, bins) for name, rows in groups.items()}


def _reliability(confidence: np.ndarray, correct: np.ndarray, known: np.ndarray, rows: np.ndarray | None,
                 bins: int) -> pd.DataFrame:
    rows = np.flatnonzero(known) if rows is None else rows[known[rows]]
    which = _bin_of(confidence[rows], bins)
    counts = np.bincount(which, minlength=bins)
    right = np.bincount(which, correct[rows], bins)
    mean_confidence = np.bincount(which, confidence[rows], bins)
    curve = []
    for index in np.flatnonzero(counts):
        n = int(counts[index])
        low, high = wilson_interval(right[index], n)
        curve.append({"bin": f"{index / bins:.1f}–{(index + 1) / bins:.1f}", "n": n,
                      "confidence": mean_confidence[index] / n, "accuracy": right[index] / n, "ci_low": low, "ci_high": high})
    return pd.DataFrame(curve, columns=["bin", "n", "confidence", "accuracy", "ci_low", "ci_high"])


def calibration_table(frame: pd.DataFrame, head: str, by: list[str] | None = None, *, bins: int = BINS,
                      rounds: int = 200, seed: int = 0) -> pd.DataFrame:
    """ECE per group of `by` (all rows when None or empty), with its 95 % interval, n, mean confidence, accuracy
    and `overconfidence` (confidence − accuracy); `small_n` marks groups under `SMALL_N` faces."""
    confidence, correct, known = confidence_and_correct(frame, head)
    clusters = cluster_ids(frame, cluster_column(frame))
    rng = np.random.default_rng(seed)
    if by:
        members = group_members(frame, by)  # in natural order
        keys, groups = list(members), list(members.values())
        index = pd.MultiIndex.from_tuples(keys, names=by) if len(by) > 1 else pd.Index(keys, name=by[0])
    else:
        groups, index = [np.arange(len(frame))], pd.Index(["all faces"], name="group")
    rows, bucket_weights = [], {}
    for positions in groups:
        rows_here = positions[known[positions]]
        c, r = confidence[rows_here], correct[rows_here]
        ece = expected_calibration_error(c, r, bins)
        low, high = (np.nan, np.nan) if len(c) < 2 else shifted_interval(resampled_ece(
            c, r, None if clusters is None else clusters[rows_here], bins, rounds, rng, bucket_weights), ece)
        n = len(rows_here)
        rows.append({"n": n, "small_n": n < SMALL_N, "ece": ece, "ece_ci_low": low,
                     "ece_ci_high": high, "confidence": float(c.mean()) if n else np.nan,
                     "accuracy": float(r.mean()) if n else np.nan})
    table = pd.DataFrame(rows, index=index)
    table["overconfidence"] = table["confidence"] - table["accuracy"]
    return table


def _log_probabilities(frame: pd.DataFrame, head: str) -> np.ndarray:
    return np.log(np.clip(frame[_probability_columns(head)].to_numpy(dtype=float), 1e-12, None))


def _rescaled(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    scaled = log_probs / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    probs = np.exp(scaled)
    return probs / probs.sum(axis=1, keepdims=True)


def fit_temperatures(frame: pd.DataFrame, heads: tuple[str, ...] = CLASS_HEADS) -> dict[str, float]:
    """Per head with labels and probabilities, the temperature T (0.05–20) that maximises the likelihood of the true
    classes under softmax(log p / T); log p are the stored (mirror-averaged) log-probabilities, so this is
    temperature scaling of the model's averaged logits."""
    from scipy.optimize import minimize_scalar

    temperatures = {}
    for head in heads:
        if not has_probabilities(frame, head):
            continue
        known = (true_labels(frame, head).notna().to_numpy()
                 & frame[_probability_columns(head)].notna().all(axis=1).to_numpy())
        if known.sum() < SMALL_N:
            continue
        log_probs = _log_probabilities(frame.loc[known], head)
        truth = class_positions(true_labels(frame, head)[known], labels.HEAD_CLASSES[head])

        def loss(log_t: float) -> float:
            return -np.log(_rescaled(log_probs, np.exp(log_t))[np.arange(len(truth)), truth] + 1e-12).mean()

        temperatures[head] = float(np.exp(minimize_scalar(loss, bounds=(np.log(0.05), np.log(20)), method="bounded").x))
    return temperatures


def with_temperatures(frame: pd.DataFrame, temperatures: dict[str, float]) -> pd.DataFrame:
    """`frame` with each head's probabilities rescaled by its temperature; classes kept (the age bin by the median
    rule on the rescaled bins, as audits choose it)."""
    frame = frame.copy()
    for head, temperature in temperatures.items():
        probs = _rescaled(_log_probabilities(frame, head), temperature)
        frame[_probability_columns(head)] = probs.astype(np.float32)
        if head == "age_bin":
            frame["pred_age_bin"] = pd.Categorical.from_codes(labels.median_bin_index(probs), categories=list(labels.AGE_BINS),
                                                              ordered=True)
    return frame
