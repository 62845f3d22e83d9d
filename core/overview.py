"""What the Overview page shows of a selection of faces, as one value computed in one place.

A bundle also stores the Overview of all its faces (`core.bundle.write_bundle`), so that the dashboard's first page
of a million-row audit reads a few kilobytes instead of its rows; it is used only while `CODE` is the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from core import fairness, findings, labels
from core.fairness import (
    METRICS,
    cluster_column,
    filter_options,
    group_label,
    headline_metrics,
    overall_metrics,
    race_x_gender,
    row_values,
)
from core.findings import Gap, error_findings, gap_setup, gap_tables, largest_gaps

__all__ = ["CODE", "WORST_METRICS", "Overview", "overview"]

WORST_METRICS = ("gender_accuracy", "race_accuracy", "race7_accuracy", "age_mae")  # of race × gender (`race_x_gender`)
WORST_SHOWN = 3
# Which code computed an Overview: a stored one made by other code is not used
CODE = hashlib.sha256(b"".join(Path(module.__file__).read_bytes() for module in (fairness, findings, labels))
                       + Path(__file__).read_bytes()).hexdigest()[:16]


@dataclass
class Overview:
    """Headline metrics with intervals, the largest gaps, the most one-sided errors and the worst race × gender groups
    of a selection; and the columns that can filter it, with their values (`core.fairness.filter_options`)."""

    faces: int
    overall: dict[str, dict[str, float]]  # metric -> value, ci_low, ci_high, n (NaN value: no labels for it)
    cluster: str | None  # what the intervals resample (`core.fairness.cluster_column`)
    gaps: list[Gap]
    errors: list[str]
    worst_by: list[str]  # the columns of the worst groups' grouping
    worst: dict[str, list[dict]] | None  # metric -> its worst groups of at least `SMALL_N` faces; None: no such group
    filter_options: dict[str, list[str]]

    def to_dict(self) -> dict:
        """As JSON values (NaN as JSON's NaN, which Python's json module reads back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> Overview:
        gaps = [Gap(**gap | {"by": tuple(gap["by"])}) for gap in fields["gaps"]]
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__} | {"gaps": gaps})


def overview(frame: pd.DataFrame, values: pd.DataFrame | None = None) -> Overview:
    """The Overview of the faces in `frame`; `values`: `row_values(frame)`, when already at hand."""
    values = row_values(frame) if values is None else values
    table = overall_metrics(frame, headline_metrics(frame), values=values)
    overall = {name: {key: float(row[key]) for key in ("value", "ci_low", "ci_high")} | {"n": int(row["n"])}
               for name, row in table.iterrows()}
    metrics, groupings = gap_setup(frame)
    tables = gap_tables(frame, metrics, groupings, values)  # the worst groups' grouping is one of them
    worst_by = tuple(race_x_gender(frame))
    shown = [name for name in metrics if name in WORST_METRICS and overall[name]["n"] > 0]
    worst = None
    if shown and worst_by in tables:
        groups = tables[worst_by]
        groups = groups[~groups["small_n"]]
        if not groups.empty:
            worst = {name: [{"group": group_label(key), "value": float(groups.loc[key, name]),
                             "ci_low": float(groups.loc[key, f"{name}_ci_low"]),
                             "ci_high": float(groups.loc[key, f"{name}_ci_high"]), "n": int(groups.loc[key, "n"])}
                            for key in groups[name].sort_values(ascending=METRICS[name][1]).head(WORST_SHOWN).index]
                     for name in shown}
    return Overview(faces=len(frame), overall=overall, cluster=cluster_column(frame),
                    gaps=largest_gaps(frame, metrics, groupings, tables=tables), errors=error_findings(frame),
                    worst_by=list(worst_by), worst=worst,
                    filter_options=filter_options(frame))
