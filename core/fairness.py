"""Subgroup metrics of an audit bundle: fairlearn `MetricFrame` point estimates plus bootstrap intervals.

Every metric here is the mean of a per-row quantity over a row mask (a correct answer, an age
error, a false-female among true males, ...). That makes bootstrap intervals cheap and exact
per group, and lets one `MetricFrame` hold all metrics at once: its `y_true`/`y_pred` are row
positions and each metric looks its values up by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from core import labels

__all__ = ["METRICS", "SHORT_NAMES", "SMALL_N", "row_values", "subgroup_metrics", "overall_metrics", "confusion",
           "filter_frame", "group_keys", "group_label", "SubgroupMetrics"]

SMALL_N = 30  # groups with fewer rows are flagged: their estimates are unstable

# name -> (description, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "gender_accuracy": ("share of correct gender predictions", True),
    "race_accuracy": ("share of correct race predictions", True),
    "age_bin_accuracy": ("share of correct age-bin predictions", True),
    "age_mae": ("mean absolute age error, years", False),
    "signed_age_error": ("mean of predicted minus true age, years (negative: underestimated)", False),
    "cs5": ("share of age predictions within 5 years", True),
    "false_female_rate": ("share of true males predicted female", False),
    "false_male_rate": ("share of true females predicted male", False),
    **{f"race_recall_{race}": (f"share of true {race} predicted {race}", True) for race in labels.RACES},
}

SHORT_NAMES = {"gender_accuracy": "Gender accuracy", "race_accuracy": "Race accuracy", "age_bin_accuracy": "Age-bin accuracy",
               "age_mae": "Age MAE (years)", "signed_age_error": "Signed age error", "cs5": "CS@5 (within 5 y)",
               "false_female_rate": "False-female rate", "false_male_rate": "False-male rate"}


def row_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-row quantities whose mean is each metric; NaN where a row does not count for a metric."""
    def equal(true: str, pred: str) -> np.ndarray:
        known = frame[true].notna().to_numpy()
        same = (frame[true].astype("string") == frame[pred].astype("string")).fillna(False).to_numpy()
        return np.where(known, same.astype(float), np.nan)

    age = frame["age"].astype("float64").to_numpy()
    error = frame["pred_age"].to_numpy(dtype=float) - age
    gender, pred_gender = frame["gender"].astype("string"), frame["pred_gender"].astype("string")
    race, pred_race = frame["race"].astype("string"), frame["pred_race"].astype("string")
    values = {
        "gender_accuracy": equal("gender", "pred_gender"),
        "race_accuracy": equal("race", "pred_race"),
        "age_bin_accuracy": equal("age_bin", "pred_age_bin"),
        "age_mae": np.abs(error),
        "signed_age_error": error,
        "cs5": np.where(np.isnan(error), np.nan, (np.abs(error) <= 5).astype(float)),
        "false_female_rate": np.where((gender == "Male").fillna(False), (pred_gender == "Female").astype(float), np.nan),
        "false_male_rate": np.where((gender == "Female").fillna(False), (pred_gender == "Male").astype(float), np.nan),
    }
    for name in labels.RACES:
        values[f"race_recall_{name}"] = np.where((race == name).fillna(False), (pred_race == name).astype(float), np.nan)
    return pd.DataFrame(values, index=frame.index)


def filter_frame(frame: pd.DataFrame, filters: dict[str, list[str]]) -> pd.DataFrame:
    """Rows whose columns take one of the chosen values; an empty choice means no filter."""
    mask = pd.Series(True, index=frame.index)
    for column, chosen in filters.items():
        if chosen and column in frame.columns:
            mask &= frame[column].astype("string").isin(chosen).fillna(False)
    return frame[mask]


def _sensitive(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame[by].astype("string").fillna("(missing)").reset_index(drop=True)


def group_keys(frame: pd.DataFrame, by: list[str]) -> list:
    """The groups `subgroup_metrics` reports for `by`: values, or tuples for intersections."""
    rows = sorted(_sensitive(frame, by).drop_duplicates().itertuples(index=False, name=None))
    return [row[0] for row in rows] if len(by) == 1 else rows


def group_label(key: object) -> str:
    """'Black / Female' for an intersection tuple, the value itself otherwise."""
    return " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _bootstrap(values: np.ndarray, rng: np.random.Generator, rounds: int) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return np.nan, np.nan
    means = values[rng.integers(0, len(values), size=(rounds, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class SubgroupMetrics:
    """Per-group metrics with their CIs, and the fairlearn frame behind them."""

    table: pd.DataFrame  # one row per group: n, small_n, then per metric: value, ci_low, ci_high, diff, ratio
    overall: pd.Series
    metric_frame: MetricFrame


def overall_metrics(frame: pd.DataFrame, metrics: list[str] | None = None, *, rounds: int = 500,
                    seed: int = 0) -> pd.DataFrame:
    """Headline metrics over all rows with 95 % bootstrap intervals: columns value, ci_low, ci_high, n."""
    values = row_values(frame)
    rng = np.random.default_rng(seed)
    rows = {}
    for name in metrics or list(METRICS):
        column = values[name].to_numpy()
        low, high = _bootstrap(column, rng, rounds)
        n = int((~np.isnan(column)).sum())
        rows[name] = {"value": float(np.nanmean(column)) if n else np.nan, "ci_low": low, "ci_high": high, "n": n}
    return pd.DataFrame(rows).T


def subgroup_metrics(frame: pd.DataFrame, by: list[str], metrics: list[str], *,
                     reference: tuple | str | None = None, rounds: int = 300, seed: int = 0,
                     method: Literal["to_overall", "between_groups"] = "to_overall") -> SubgroupMetrics:
    """Metrics per group of the columns `by` (several columns: their intersections).

    Args:
        frame: Bundle predictions (possibly filtered).
        by: Grouping columns, e.g. `["race", "gender"]`.
        metrics: Names from `METRICS`.
        reference: A group label (tuple for intersections) to compare with; default: overall.
        rounds: Bootstrap resamples for the 95 % intervals.

    Raises:
        ValueError: an unknown metric or grouping column, naming the valid ones.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    missing = [c for c in by if c not in frame.columns]
    if missing or not by:
        raise ValueError(f"cannot group by {missing or by}; columns: {', '.join(map(str, frame.columns))}")
    values = row_values(frame)
    positions = np.arange(len(frame))

    def metric_fn(name: str):
        column = values[name].to_numpy()

        def mean_of(y_true: np.ndarray, y_pred: np.ndarray) -> float:
            chosen = column[np.asarray(y_true, dtype=int)]
            return float(np.nanmean(chosen)) if (~np.isnan(chosen)).any() else np.nan
        return mean_of

    def count(y_true: np.ndarray, y_pred: np.ndarray) -> int:
        return len(y_true)

    sensitive = _sensitive(frame, by)
    metric_frame = MetricFrame(metrics={"n": count, **{m: metric_fn(m) for m in metrics}},
                               y_true=positions, y_pred=positions, sensitive_features=sensitive)
    by_group = metric_frame.by_group
    by_group = by_group[by_group["n"].notna()]  # fairlearn lists every combination of values, empty ones too
    rng = np.random.default_rng(seed)
    members = sensitive.groupby(by if len(by) > 1 else by[0]).indices  # group key -> row positions
    table = pd.DataFrame(index=by_group.index)
    table["n"] = by_group["n"].astype(int)
    table["small_n"] = table["n"] < SMALL_N
    reference_row = by_group.loc[reference] if reference is not None else metric_frame.overall
    for name in metrics:
        column = values[name].to_numpy()
        table[name] = by_group[name].astype(float)
        intervals = [_bootstrap(column[members[key]], rng, rounds) if key in members else (np.nan, np.nan)
                     for key in by_group.index]
        table[f"{name}_ci_low"] = [low for low, _ in intervals]
        table[f"{name}_ci_high"] = [high for _, high in intervals]
        table[f"{name}_diff"] = table[name] - float(reference_row[name])
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"{name}_ratio"] = table[name] / float(reference_row[name])
    return SubgroupMetrics(table=table, overall=metric_frame.overall, metric_frame=metric_frame)


def confusion(frame: pd.DataFrame, head: Literal["gender", "race", "age_bin"], *, normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix of one head: rows true labels, columns predictions, in taxonomy order."""
    names = labels.CLASSES[head]
    known = frame[frame[head].notna()]
    table = pd.crosstab(pd.Categorical(known[head].astype("string"), categories=names),
                        pd.Categorical(known[f"pred_{head}"].astype("string"), categories=names), dropna=False)
    table.index.name, table.columns.name = f"true {head}", f"predicted {head}"
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0)
    return table
