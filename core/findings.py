"""A bundle's headline findings in words: the largest group gaps with intervals, and the most one-sided errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from core import labels
from core.fairness import (
    METRICS,
    SHORT_NAMES,
    SMALL_N,
    confusion,
    group_label,
    has_fairface_races,
    has_seven_races,
    race_x_gender,
    row_values,
    subgroup_metrics,
    with_race7,
)

__all__ = ["GAP_METRICS", "GROUPINGS", "Gap", "difference_interval", "error_findings", "gap_setup", "gap_tables",
           "largest_gaps"]

GAP_METRICS = ("gender_accuracy", "race_accuracy", "age_bin_accuracy", "age_mae")
GROUPINGS = (("gender",), ("race",), ("age_bin",), ("race", "gender"))


def gap_setup(frame: pd.DataFrame) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The metrics and groupings whose gaps are looked for: on data labelled with FairFace's seven races, the seven as
    groups in place of the five (whose "Others" merges Latino and Middle Eastern faces into no single group), and
    race-7 accuracy too where the model predicts them (`has_seven_races`)."""
    race = race_x_gender(frame)[0]
    groupings = tuple(tuple(race if column == "race" else column for column in by) for by in GROUPINGS)
    return tuple(with_race7(GAP_METRICS, frame)), groupings


def difference_interval(a: float, a_ci: tuple[float, float], b: float, b_ci: tuple[float, float]) -> tuple[float, float]:
    """95 % interval of `a - b` for independent estimates from their own intervals (MOVER; Newcombe's for shares).

    Keeps what each interval knows (Wilson's asymmetry near 0 and 1, clustering by person).
    """
    difference = a - b
    return (difference - math.hypot(a - a_ci[0], b_ci[1] - b), difference + math.hypot(a_ci[1] - a, b - b_ci[0]))


@dataclass
class Gap:
    """The best and the worst group of one grouping for one metric, and the difference with its interval."""

    metric: str
    by: tuple[str, ...]
    best: dict
    worst: dict
    low: float
    high: float

    @property
    def size(self) -> float:
        return abs(self.best["value"] - self.worst["value"])

    @property
    def clear(self) -> bool:
        """The interval of the gap excludes 0."""
        return self.low > 0 or self.high < 0

    def sentence(self) -> str:
        share = self.metric != "age_mae"
        scale, unit, gap_unit = (100, " %", " points") if share else (1, " years", " years")

        def group(found: dict) -> str:
            return (f"{found['label']} {scale * found['value']:.1f}{unit} (95 % CI {scale * found['ci_low']:.1f}–"
                    f"{scale * found['ci_high']:.1f}, n = {found['n']:,})")

        low, high = sorted((scale * abs(self.low), scale * abs(self.high))) if self.clear else (scale * self.low, scale * self.high)
        return (f"{SHORT_NAMES[self.metric]} by {' × '.join(self.by)}: {group(self.worst)} vs {group(self.best)}, "
                f"a gap of {scale * self.size:.1f}{gap_unit} (95 % CI {low:.1f} to {high:.1f})"
                + ("." if self.clear else "; the interval includes no gap, so this may be chance."))


def _extreme(table: pd.DataFrame, metric: str, key: object) -> dict:
    row = table.loc[key]
    return {"label": group_label(key), "value": float(row[metric]), "ci_low": float(row[f"{metric}_ci_low"]),
            "ci_high": float(row[f"{metric}_ci_high"]), "n": int(row["n"])}


def gap_tables(frame: pd.DataFrame, metrics: tuple[str, ...], groupings: tuple[tuple[str, ...], ...],
               values: pd.DataFrame | None = None) -> dict[tuple[str, ...], pd.DataFrame]:
    """The subgroup table (`subgroup_metrics`, every one of `metrics`) of each grouping whose columns `frame` has."""
    values = row_values(frame) if values is None else values
    return {by: subgroup_metrics(frame, list(by), list(metrics), rounds=200, values=values).table
            for by in groupings if all(column in frame for column in by)}


def largest_gaps(frame: pd.DataFrame, metrics: tuple[str, ...] | None = None,
                 groupings: tuple[tuple[str, ...], ...] | None = None, min_n: int = SMALL_N,
                 values: pd.DataFrame | None = None,
                 tables: dict[tuple[str, ...], pd.DataFrame] | None = None) -> list[Gap]:
    """Per metric, the grouping whose best and worst group (each of at least `min_n` faces) differ most.

    Clear gaps (interval excluding 0) come first, larger first; metrics without labels are left out.
    `metrics`, `groupings`: `gap_setup(frame)`'s unless given. `values`: `row_values(frame)`, and `tables`:
    `gap_tables`' result for these metrics and groupings, when already at hand.
    """
    default_metrics, default_groupings = gap_setup(frame)
    metrics, groupings = metrics or default_metrics, groupings or default_groupings
    tables = gap_tables(frame, metrics, groupings, values) if tables is None else tables
    gaps = []
    for metric in metrics:
        candidates = []
        for by, table in tables.items():
            table = table[(table["n"] >= min_n) & table[metric].notna()]
            if len(table) < 2:
                continue
            higher_is_better = METRICS[metric][1]
            best_key = table[metric].idxmax() if higher_is_better else table[metric].idxmin()
            worst_key = table[metric].idxmin() if higher_is_better else table[metric].idxmax()
            best, worst = _extreme(table, metric, best_key), _extreme(table, metric, worst_key)
            low, high = difference_interval(best["value"], (best["ci_low"], best["ci_high"]),
                                            worst["value"], (worst["ci_low"], worst["ci_high"]))
            candidates.append(Gap(metric, by, best, worst, low, high))
        if candidates:
            gaps.append(max(candidates, key=lambda gap: (gap.clear, gap.size)))
    return sorted(gaps, key=lambda gap: not gap.clear)


def error_findings(frame: pd.DataFrame, min_n: int = SMALL_N, top: int = 3) -> list[str]:
    """The most one-sided mistakes in words: both gender directions, then the largest race and age-bin confusions;
    on data labelled with FairFace's seven races, also where the seven go wrong (among the seven from a model that
    predicts them, else among the five: a Latino face called "Others" is right).

    A confusion is listed when its true class has at least `min_n` faces; shares are of that class.
    """
    seven = ["race7"] if has_seven_races(frame) else ["fairface_race"] if has_fairface_races(frame) else []
    sentences = []
    for head in ("gender", "race", *seven, "age_bin"):
        counts = confusion(frame, head)
        totals = counts.sum(axis=1)
        right = labels.FAIRFACE_TO_RACE if head == "fairface_race" else {}  # the five's name of each of the seven
        cells = [(counts.loc[true, predicted] / totals[true], true, predicted) for true in counts.index
                 for predicted in counts.columns if right.get(true, true) != predicted and totals[true] >= min_n
                 and counts.loc[true, predicted] > 0]
        # gender: both directions, the asymmetry is the finding; race: the `top` largest; age bin: the largest
        chosen = cells if head == "gender" else sorted(cells, reverse=True)[:1 if head == "age_bin" else top]
        for share, true, predicted in sorted(chosen, reverse=True):  # the axis says "true FairFace race" and so on
            sentences.append(f"{counts.loc[true, predicted]:,} of {totals[true]:,} faces of {counts.index.name} {true} "
                             f"({100 * share:.1f} %) are predicted {predicted}.")
    return sentences
