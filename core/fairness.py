"""Subgroup metrics of an audit bundle: per-group point estimates plus 95 % intervals.

Every metric here is the mean of a per-row quantity over a row mask (a correct answer, an age
error, a false-female among true males, ...). That makes a group's value its sum over its count
(sufficient statistics: a million rows take a second), intervals cheap and exact per group, and
lets one fairlearn `MetricFrame` hold all metrics at once (`SubgroupMetrics.metric_frame`, the same
values): its `y_true`/`y_pred` are row positions and each metric looks its values up by position. Shares get Wilson score intervals (a percentile bootstrap
collapses to zero width at 0 or 1, making small perfect groups look the most certain); age errors get
a bootstrap; photos of one person are resampled together (`cluster_column`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from core import labels
from core.errors import FaceAuditError
from core.glossary import Term

if TYPE_CHECKING:  # fairlearn imports scikit-learn and SciPy (about 1 s): loaded when a MetricFrame is asked for
    from fairlearn.metrics import MetricFrame

__all__ = ["CONFUSIONS", "CONFUSION_TITLES", "confusion_heads", "SelectionError", "METRIC_TERMS", "METRICS", "RACE7_METRICS", "HEADLINE_METRICS", "headline_metrics", "has_fairface_races", "has_seven_races", "with_race7", "race_x_gender", "available_metrics", "PROPORTIONS", "SHORT_NAMES", "SMALL_N", "MAX_GROUP_VALUES", "IDENTITY_COLUMNS", "is_identity", "taxonomy", "row_values",
           "subgroup_metrics", "overall_metrics", "confusion", "grouping_columns", "filter_options", "value_order", "check_filters",
           "filter_frame", "distinct_text", "text_isin", "group_keys", "group_members", "group_label", "worst_group", "cluster_column", "cluster_ids", "interval_note",
           "wilson_interval", "class_positions", "equal_as_text", "bootstrap_means", "bootstrap_units", "MAX_BOOTSTRAP_UNITS", "metric_interval", "SubgroupMetrics"]

class SelectionError(FaceAuditError, ValueError):
    """A grouping, filter or metric that names a column, value or metric the audit does not have."""


SMALL_N = 30  # groups with fewer rows are flagged: their estimates are unstable
# Columns that name the person in a photo, in order of preference (compared as `labels.column_key` writes them:
# `Subject ID` too); rows of one person are resampled together.
IDENTITY_COLUMNS = ("identity", "person_id", "subject_id", "participant_id", "face_id")

# name -> plain name, definition, direction of good: the glossary's metric entries (core.glossary)
METRIC_TERMS: dict[str, Term] = {
    "gender_accuracy": Term("Gender accuracy", "share of faces whose gender is predicted right", "higher"),
    "race_accuracy": Term("Race accuracy", "share of faces whose race is predicted right", "higher"),
    "age_bin_accuracy": Term("Age-bin accuracy", "share of faces whose age bin is predicted right", "higher"),
    "age_mae": Term("Age error (years)", "mean absolute difference between predicted and true age, in years (MAE)",
                    "lower"),
    "signed_age_error": Term("Age bias (years)", "mean of predicted minus true age, in years; negative: ages "
                                                 "underestimated", "closer to 0"),
    "cs5": Term("Ages within 5 years", "share of faces whose predicted age is within 5 years of the true age (CS@5)",
                "higher"),
    "false_female_rate": Term("Men called women", "share of true males predicted female", "lower"),
    "false_male_rate": Term("Women called men", "share of true females predicted male", "lower"),
    **{f"race_recall_{race}": Term(f"{race} recall", f"share of true {race} faces predicted {race}", "higher")
       for race in labels.RACES},
    # FairFace's seven races: from a model with a seven-class head, on data labelled with them (`fairface_race`)
    "race7_accuracy": Term("Race-7 accuracy", "share of faces whose FairFace race (seven classes) is predicted right",
                           "higher"),
    **{f"race7_recall_{race}": Term(f"{race} recall (race-7)", f"share of true {race} faces (FairFace's seven "
                                    f"classes) predicted {race}", "higher") for race in labels.FAIRFACE_RACES},
}
RACE7_METRICS = tuple(name for name in METRIC_TERMS if name.startswith("race7_"))
# name -> (definition, higher is better), derived from the terms
METRICS: dict[str, tuple[str, bool]] = {name: (term.definition, term.good == "higher") for name, term in METRIC_TERMS.items()}

# Metrics whose per-row values are 0 or 1: their intervals are for a proportion.
PROPORTIONS = frozenset(name for name in METRICS if name not in ("age_mae", "signed_age_error"))

SHORT_NAMES = {name: term.name for name, term in METRIC_TERMS.items()}


def _value_ids(series: pd.Series, vocabulary: dict[str, int], *, add: bool = True) -> np.ndarray:
    """Each row's value, as text, as its id in `vocabulary` (new values added when `add`); -1 for no value or, without
    `add`, a value not in it. Each distinct value is converted once: a million rows cost about what a few do."""
    codes, uniques = pd.factorize(series)
    lookup = [vocabulary.setdefault(str(value), len(vocabulary)) if add else vocabulary.get(str(value), -1)
              for value in uniques]
    return np.array([*lookup, -1], dtype=np.int64)[codes]


def class_positions(series: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    """Each row's value as its position in `names`; -1 for no value or one not among them."""
    return _value_ids(series, {name: index for index, name in enumerate(names)}, add=False)


def equal_as_text(first: pd.Series, second: pd.Series) -> np.ndarray:
    """Whether each row's two values are equal as text; False where either is missing."""
    vocabulary: dict[str, int] = {}
    first_ids, second_ids = _value_ids(first, vocabulary), _value_ids(second, vocabulary)
    return (first_ids >= 0) & (first_ids == second_ids)


def row_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-row quantities whose mean is each metric; NaN where a row does not count for a metric.

    Written into one preallocated float block (a million rows: 21 columns of 8 MB, not built twice).
    """
    vocabulary: dict[str, int] = {}  # every text value of the label and prediction columns, as one integer id
    text = {column: _value_ids(frame[column], vocabulary) if column in frame else np.full(len(frame), -1) for column in ("gender", "pred_gender", "race", "pred_race", "age_bin", "pred_age_bin",
                                               "fairface_race", "pred_race7")}
    has_race7 = "fairface_race" in frame and "pred_race7" in frame
    names = list(METRIC_TERMS)  # every metric, each written below
    block = np.full((len(names), len(frame)), np.nan)
    values = dict(zip(names, block))  # each a row of the block, written in place

    def equal(name: str, true: str, pred: str) -> None:  # a row counts where both the label and a prediction exist
        truth, guess = text[true], text[pred]
        np.copyto(values[name], truth == guess, where=(truth >= 0) & (guess >= 0))

    def predicted_as(name: str, true: str, label: str, pred: str, predicted: str) -> None:  # of rows labelled `label`
        np.copyto(values[name], text[pred] == vocabulary.get(predicted, -2),
                  where=(text[true] == vocabulary.get(label, -2)) & (text[pred] >= 0))

    equal("gender_accuracy", "gender", "pred_gender")
    equal("race_accuracy", "race", "pred_race")
    equal("age_bin_accuracy", "age_bin", "pred_age_bin")
    error = values["signed_age_error"]
    np.subtract(frame["pred_age"].to_numpy(dtype=float), frame["age"].astype("float64").to_numpy(), out=error)
    np.abs(error, out=values["age_mae"])
    np.copyto(values["cs5"], values["age_mae"] <= 5, where=~np.isnan(error))
    predicted_as("false_female_rate", "gender", "Male", "pred_gender", "Female")
    predicted_as("false_male_rate", "gender", "Female", "pred_gender", "Male")
    for name in labels.RACES:
        predicted_as(f"race_recall_{name}", "race", name, "pred_race", name)
    if has_race7:  # else NaN: a five-class model
        equal("race7_accuracy", "fairface_race", "pred_race7")
        for name in labels.FAIRFACE_RACES:
            predicted_as(f"race7_recall_{name}", "fairface_race", name, "pred_race7", name)
    return pd.DataFrame(block.T, index=frame.index, columns=names, copy=False)


# What an audit is summed up by: bundles' metrics.json, the Overview, reports
HEADLINE_METRICS = ("age_mae", "cs5", "age_bin_accuracy", "gender_accuracy", "race_accuracy")


def headline_metrics(frame: pd.DataFrame) -> list[str]:
    """`HEADLINE_METRICS`, and race-7 accuracy from a model with a seven-class race head."""
    return [*HEADLINE_METRICS, *(["race7_accuracy"] if "pred_race7" in frame else [])]


def has_fairface_races(frame: pd.DataFrame) -> bool:
    """Some faces are labelled with FairFace's seven races (`fairface_race`)."""
    return "fairface_race" in frame and bool(frame["fairface_race"].notna().any())


def has_seven_races(frame: pd.DataFrame) -> bool:
    """The model predicts FairFace's seven races and some faces are labelled with them."""
    return "pred_race7" in frame and has_fairface_races(frame)


def with_race7(metrics: Sequence[str], frame: pd.DataFrame) -> list[str]:
    """`metrics` with race-7 accuracy after race accuracy where `has_seven_races(frame)`."""
    metrics = list(metrics)
    if not has_seven_races(frame) or "race_accuracy" not in metrics:
        return metrics
    at = metrics.index("race_accuracy") + 1
    return [*metrics[:at], "race7_accuracy", *metrics[at:]]


def race_x_gender(frame: pd.DataFrame) -> list[str]:
    """The race × gender grouping of summaries (Overview, calibration, comparisons): by FairFace's seven races where
    the data has them, whatever the model predicts (the five's "Others" merges Latino and Middle Eastern faces into
    no single group)."""
    return ["fairface_race" if has_fairface_races(frame) else "race", "gender"]


def available_metrics(frame: pd.DataFrame) -> list[str]:
    """The names of `METRICS` a bundle can have: the race-7 ones only from a model with a seven-class race head."""
    return [name for name in METRICS if name not in RACE7_METRICS or "pred_race7" in frame]


# A column can group or filter an audit when it has at most this many distinct values.
MAX_GROUP_VALUES = 50
# Columns that are never groups: ids, paths, per-face geometry, and the model's own outputs.
_NOT_GROUPS = {"file", "path", "source", "age", "dup_group", "dup_group_size", "face_index", "faces", "face_reason",
               "face_score", "face_box_x", "face_box_y", "face_box_w", "face_box_h", "face_px", "image_width",
               "image_height", *labels.BOX_COLUMNS}
MISSING = "(missing)"


def grouping_columns(frame: pd.DataFrame, max_values: int = MAX_GROUP_VALUES) -> list[str]:
    """Columns an audit can be grouped and filtered by: the label columns, then any column with few values.

    Text, categorical, boolean and integer columns with at most `max_values` distinct values
    qualify (an auditor's `skin`, `expression`, `n_faces`, ...); ids, paths, continuous numbers
    and prediction outputs (`pred_*`, `p_*`) do not.
    """
    chosen = [column for column in labels.CLASSES if column in frame.columns]
    for column in frame.columns:
        if column in chosen or column in _NOT_GROUPS or str(column).startswith(("pred_", "p_")):
            continue
        series = frame[column]
        if pd.api.types.is_float_dtype(series) and not series.dropna().eq(series.dropna().round()).all():
            continue  # continuous measurements are not groups
        if 0 < series.nunique(dropna=True) <= max_values:
            chosen.append(column)
    return chosen


def filter_options(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The columns that can group and filter `frame` (`grouping_columns`), each with its values (`value_order`)."""
    return {column: value_order(frame[column]) for column in grouping_columns(frame)}


# Columns whose values keep the taxonomy's order: the labels, the predictions of them, FairFace's seven races
_TAXONOMIES = {**labels.CLASSES, **{f"pred_{head}": names for head, names in labels.CLASSES.items()},
               "fairface_race": labels.FAIRFACE_RACES, "pred_race7": labels.FAIRFACE_RACES}


def taxonomy(column: object) -> tuple[str, ...] | None:
    """The classes of a label column (or a prediction of one, or FairFace's seven races) in their order; else None."""
    return _TAXONOMIES.get(column)


def value_order(series: pd.Series) -> list[str]:
    """The distinct values of a column as text, in their natural order (taxonomy, category, number, text)."""
    present = {str(value) for value in series.dropna().unique()} | ({MISSING} if series.isna().any() else set())
    return _in_natural_order(series, present)


def _in_natural_order(series: pd.Series, present: set[str]) -> list[str]:
    """`present` (texts of `series`' values, `MISSING` among them) in the column's natural order."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        order = [str(value) for value in series.cat.categories]
    elif taxonomy(series.name) is not None:
        order = list(taxonomy(series.name))
    else:
        numbers = pd.to_numeric(pd.Series(sorted(present - {MISSING})), errors="coerce")
        order = ([str(v) for v in sorted(present - {MISSING}, key=float)] if numbers.notna().all()
                 else sorted(present - {MISSING}))
    return [value for value in order if value in present] + sorted(present - set(order))


def check_filters(frame: pd.DataFrame, filters: dict[str, list[str]]) -> None:
    """Raise ValueError naming the valid choices if a filter names an unknown column or value.

    Raises:
        SelectionError: e.g. "unknown column 'skn'; columns that can filter: race, gender, age_bin, skin".
    """
    columns = grouping_columns(frame)
    for column, chosen in filters.items():
        if column not in frame.columns:
            raise SelectionError(f"unknown column {column!r}; columns that can filter: {', '.join(columns)}")
        valid = value_order(frame[column])
        wrong = [value for value in chosen if value not in valid]
        if wrong:
            raise SelectionError(f"{column} has no value {', '.join(map(repr, wrong))}; its values: {', '.join(valid)}")


def distinct_text(series: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Each row's code (-1: missing) and the text of each distinct value, as `astype("string")` writes it; each
    distinct value is converted once, so a million rows cost about what a few do."""
    codes, uniques = pd.factorize(series)
    return codes, pd.Series(uniques).astype(series.dtype).astype("string")  # factorize widens float32: back, as shown


def text_isin(series: pd.Series, values: Collection[str]) -> np.ndarray:
    """Whether each row's value, as text (`MISSING` for none), is one of `values`."""
    codes, text = distinct_text(series)
    return np.append(text.isin(values).to_numpy(dtype=bool), MISSING in values)[codes]


def filter_frame(frame: pd.DataFrame, filters: dict[str, list[str]]) -> pd.DataFrame:
    """Rows whose columns take one of the chosen values; an empty choice means no filter (then a shallow copy:
    copy-on-write keeps the original unchanged, without copying a million rows)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, chosen in filters.items():
        if chosen and column in frame.columns:
            mask &= text_isin(frame[column], set(chosen))
    return frame.copy(deep=False) if mask.all() else frame[mask]


def _sensitive(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The columns `by` as text categories (`MISSING` for no value), indexed by position."""
    def as_text(column: str) -> pd.Categorical:
        vocabulary: dict[str, int] = {}
        ids = _value_ids(frame[column], vocabulary)
        missing = vocabulary.setdefault(MISSING, len(vocabulary))
        return pd.Categorical.from_codes(np.where(ids < 0, missing, ids), categories=list(vocabulary))
    return pd.DataFrame({column: as_text(column) for column in by})


def group_keys(frame: pd.DataFrame, by: list[str]) -> list:
    """The groups `subgroup_metrics` reports for `by`, in natural order: values, or tuples for intersections."""
    rows = _sensitive(frame, by).drop_duplicates().itertuples(index=False, name=None)
    return _natural_keys(frame, by, [row[0] for row in rows] if len(by) == 1 else list(rows))


def _natural_keys(frame: pd.DataFrame, by: list[str], keys: list) -> list:
    """Group keys found (values, or tuples for intersections) in the order `group_keys` gives, from the keys alone."""
    tuples = keys if len(by) > 1 else [(key,) for key in keys]
    ranks = [{value: rank for rank, value in enumerate(_in_natural_order(frame[column], {row[i] for row in tuples}))}
             for i, column in enumerate(by)]
    ordered = sorted(tuples, key=lambda row: tuple(rank[value] for rank, value in zip(ranks, row)))
    return [row[0] for row in ordered] if len(by) == 1 else ordered


def group_members(frame: pd.DataFrame, by: list[str]) -> dict[object, np.ndarray]:
    """Row positions of each group (value, or tuple for intersections), in the order of `group_keys(frame, by)`."""
    members = _members(_sensitive(frame, by), by)
    return {key: members[key] for key in _natural_keys(frame, by, list(members))}


def _members(sensitive: pd.DataFrame, by: list[str]) -> dict[object, np.ndarray]:
    return sensitive.groupby(by if len(by) > 1 else by[0], observed=True).indices


def group_label(key: object) -> str:
    """'Black / Female' for an intersection tuple, the value itself otherwise."""
    return " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)


_Z95 = 1.959963984540054


def is_identity(column: object) -> bool:
    """Whether a column's name says it identifies people (`IDENTITY_COLUMNS`, written in any case, `Subject ID`)."""
    return labels.column_key(column) in IDENTITY_COLUMNS


def cluster_column(frame: pd.DataFrame) -> str | None:
    """The column whose values identify people: an identity column, else duplicate groups; None if every row is its own.

    Intervals resample these clusters instead of rows, so two photos of one person count as one
    observation's worth of evidence, not two.
    """
    named = {labels.column_key(column): column for column in frame.columns}
    for name in (*IDENTITY_COLUMNS, "dup_group"):
        if (column := named.get(name)) is not None and frame[column].notna().any():
            values = frame[column]
            if values.nunique(dropna=True) < values.notna().sum():
                return column
    return None


def cluster_ids(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """Integer cluster ids of the rows for `column` (rows without a value are their own cluster), or None."""
    if column is None:
        return None
    codes = pd.factorize(frame[column].astype("string"))[0].astype(np.int64)
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(missing.sum())
    return codes


def interval_note(column: str | None) -> str:
    """How this module's 95 % intervals are made, in one sentence for pages and reports."""
    how = ("95 % intervals: Wilson score for shares (never zero-width, also at 0 % or 100 %), "
           "bootstrap for age errors")
    if column is None:
        return how + "."
    return how + f"; photos sharing a `{column}` value are one person and resampled together."


def wilson_interval(successes: float, n: float, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; `n` may be an effective (non-integer) sample size."""
    if n <= 0:
        return np.nan, np.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if p <= 0 else float(max(0.0, centre - half))), (1.0 if p >= 1 else float(min(1.0, centre + half)))


def _cluster_sums(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of `values` and row counts (rows already without NaN)."""
    _, inverse = np.unique(clusters, return_inverse=True)
    return np.bincount(inverse, weights=values), np.bincount(inverse).astype(float)


# More people (or rows) than this are dealt into this many buckets before resampling (`bootstrap_units`).
MAX_BOOTSTRAP_UNITS = 20_000


def bootstrap_units(n: int, clusters: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Per row, the unit a bootstrap resamples: its cluster (one person), or the row itself; at most
    `MAX_BOOTSTRAP_UNITS` of them.

    With more units than that (a million-row audit), units are dealt at random into that many equal buckets and
    the buckets are resampled: a bucket's sums are sufficient statistics of its units, and a bucket's total is a
    sum of independent units' totals, so resampling buckets keeps the variance of resampling units while each
    round draws 20,000 numbers instead of a million.
    """
    units = np.arange(n) if clusters is None else np.unique(clusters, return_inverse=True)[1]
    count = int(units.max(initial=-1)) + 1
    if count <= MAX_BOOTSTRAP_UNITS:
        return units
    bucket_of_unit = rng.permutation(count) % MAX_BOOTSTRAP_UNITS
    return bucket_of_unit[units]


def bootstrap_means(columns: list[np.ndarray], clusters: np.ndarray | None, rng: np.random.Generator,
                    rounds: int) -> list[np.ndarray] | None:
    """`rounds` bootstrap means of each column, all from the same draws (paired), rows or clusters resampled
    (`bootstrap_units`).

    Rows where any column is NaN are left out. Returns None with fewer than two rows (or clusters).
    """
    keep = ~np.any([np.isnan(column) for column in columns], axis=0)
    columns = [column[keep] for column in columns]
    if keep.sum() < 2:
        return None
    if clusters is None and len(columns[0]) <= MAX_BOOTSTRAP_UNITS:
        draws = rng.integers(0, len(columns[0]), size=(rounds, len(columns[0])))
        return [column[draws].mean(axis=1) for column in columns]
    units = bootstrap_units(len(columns[0]), None if clusters is None else clusters[keep], rng)
    sums = [_cluster_sums(column, units) for column in columns]
    k = len(sums[0][1])
    if k < 2:
        return None
    draws = rng.integers(0, k, size=(rounds, k))
    return [total[draws].sum(axis=1) / count[draws].sum(axis=1) for total, count in sums]


def _bootstrap(values: np.ndarray, rng: np.random.Generator, rounds: int,
               clusters: np.ndarray | None = None) -> tuple[float, float]:
    means = bootstrap_means([values], clusters, rng, rounds)
    if means is None:
        return np.nan, np.nan
    low, high = np.percentile(means[0], [2.5, 97.5])
    return float(low), float(high)


def _effective_n(values: np.ndarray, clusters: np.ndarray | None) -> float:
    """Rows, shrunk by the design effect of clustering; a person counts once when the share is 0 or 1."""
    n = len(values)
    if clusters is None or n < 2:
        return float(n)
    sums, counts = _cluster_sums(values, clusters)
    k, p = len(counts), values.mean()
    if k < 2:
        return 1.0
    variance = k / (k - 1) * np.sum((sums - p * counts) ** 2) / n**2
    if variance <= 0:
        return float(k)
    return float(np.clip(p * (1 - p) / variance, 1.0, n))


def metric_interval(name: str, values: np.ndarray, rng: np.random.Generator, rounds: int,
                    clusters: np.ndarray | None = None) -> tuple[float, float]:
    """95 % interval of a metric from its per-row values (NaN: row does not count).

    Shares (accuracies, rates, recalls) get a Wilson score interval, on the effective sample size
    when rows cluster by person; age errors get a (cluster) bootstrap.
    """
    known = ~np.isnan(values)
    if not known.any():
        return np.nan, np.nan
    if name in PROPORTIONS:
        kept = values[known]
        n = _effective_n(kept, None if clusters is None else clusters[known])
        return wilson_interval(kept.mean() * n, n)
    return _bootstrap(values, rng, rounds, clusters)


@dataclass
class SubgroupMetrics:
    """Per-group metrics with their CIs; `metric_frame` is the same per-group values as fairlearn computes them."""

    table: pd.DataFrame  # one row per group: n, small_n, then per metric: value, ci_low, ci_high, diff, ratio
    overall: pd.Series
    _values: pd.DataFrame = field(repr=False)
    _sensitive: pd.DataFrame = field(repr=False)

    @functools.cached_property
    def metric_frame(self) -> MetricFrame:
        """fairlearn's `MetricFrame` of the same metrics and groups (built on first use: it calls each metric once per
        group with every row's position, which takes seconds beyond a hundred thousand rows)."""
        from fairlearn.metrics import MetricFrame

        positions = np.arange(len(self._values))

        def mean_of(name: str):
            column = self._values[name].to_numpy()

            def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
                chosen = column[np.asarray(y_true, dtype=int)]
                return float(np.nanmean(chosen)) if (~np.isnan(chosen)).any() else np.nan
            return metric

        return MetricFrame(metrics={"n": lambda y_true, y_pred: len(y_true),
                                    **{name: mean_of(name) for name in self._values.columns}},
                           y_true=positions, y_pred=positions, sensitive_features=self._sensitive)


def overall_metrics(frame: pd.DataFrame, metrics: list[str] | None = None, *, rounds: int = 500,
                    seed: int = 0, values: pd.DataFrame | None = None) -> pd.DataFrame:
    """Headline metrics over all rows with 95 % intervals (`metric_interval`): columns value, ci_low, ci_high, n.

    `values`: `row_values(frame)`, when already at hand.
    """
    values = row_values(frame) if values is None else values
    rng = np.random.default_rng(seed)
    clusters = cluster_ids(frame, cluster_column(frame))
    rows = {}
    for name in metrics or list(METRICS):
        column = values[name].to_numpy()
        low, high = metric_interval(name, column, rng, rounds, clusters)
        n = int((~np.isnan(column)).sum())
        rows[name] = {"value": float(np.nanmean(column)) if n else np.nan, "ci_low": low, "ci_high": high, "n": n}
    return pd.DataFrame(rows).T


def subgroup_metrics(frame: pd.DataFrame, by: list[str], metrics: list[str], *,
                     reference: tuple | str | None = None, rounds: int = 300, seed: int = 0,
                     method: Literal["to_overall", "between_groups"] = "to_overall",
                     values: pd.DataFrame | None = None) -> SubgroupMetrics:
    """Metrics per group of the columns `by` (several columns: their intersections).

    Args:
        frame: Bundle predictions (possibly filtered).
        by: Grouping columns, e.g. `["race", "gender"]`.
        metrics: Names from `METRICS`.
        reference: A group label (tuple for intersections) to compare with; default: overall.
        rounds: Bootstrap resamples for the intervals of age errors (shares get Wilson intervals).
        values: `row_values(frame)`, when already at hand (several tables of one frame).

    Raises:
        SelectionError: an unknown metric or grouping column, naming the valid ones.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SelectionError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    missing = [c for c in by if c not in frame.columns]
    if missing or not by:
        raise SelectionError(f"cannot group by {missing or by}; columns: {', '.join(map(str, frame.columns))}")
    values = (row_values(frame) if values is None else values)[metrics]
    sensitive = _sensitive(frame, by)
    # sufficient statistics: per group, its rows, and per metric the sum and count of the rows where it counts
    grouped = values.reset_index(drop=True).groupby([sensitive[column] for column in by], observed=True)
    by_group = grouped.sum(min_count=1) / grouped.count().replace(0, np.nan)
    by_group.insert(0, "n", grouped.size())
    keys = _natural_keys(frame, by, list(by_group.index))
    by_group = by_group.reindex(keys).set_axis(pd.MultiIndex.from_tuples(keys, names=by) if len(by) > 1
                                               else pd.Index(keys, name=by[0]))
    overall = values.mean()
    rng = np.random.default_rng(seed)
    clusters = cluster_ids(frame, cluster_column(frame))
    members = _members(sensitive, by)  # group key -> row positions
    table = pd.DataFrame(index=by_group.index)
    table["n"] = by_group["n"].astype(int)
    table["small_n"] = table["n"] < SMALL_N
    reference_row = by_group.loc[reference] if reference is not None else overall
    for name in metrics:
        column = values[name].to_numpy()
        table[name] = by_group[name].astype(float)
        intervals = [metric_interval(name, column[members[key]], rng, rounds,
                                     None if clusters is None else clusters[members[key]])
                     if key in members else (np.nan, np.nan) for key in by_group.index]
        table[f"{name}_ci_low"] = [low for low, _ in intervals]
        table[f"{name}_ci_high"] = [high for _, high in intervals]
        table[f"{name}_diff"] = table[name] - float(reference_row[name])
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"{name}_ratio"] = table[name] / float(reference_row[name])
    return SubgroupMetrics(table=table, overall=overall, _values=values.reset_index(drop=True), _sensitive=sensitive)


def worst_group(table: pd.DataFrame, metric: str, min_n: int = SMALL_N) -> dict | None:
    """The worst group of a `subgroup_metrics` table for `metric` among groups of at least `min_n` faces.

    Returns:
        `group` (key), `label`, `value`, `ci_low`, `ci_high`, `n`; None when no group qualifies.
    """
    candidates = table.loc[(table["n"] >= min_n) & table[metric].notna(), metric]
    if candidates.empty:
        return None
    if metric == "signed_age_error":  # a bias either way: the largest in size is the worst
        candidates = candidates.abs()
    key = candidates.idxmax() if not METRICS[metric][1] else candidates.idxmin()
    row = table.loc[key]
    return {"group": key, "label": group_label(key), "value": float(row[metric]), "ci_low": float(row[f"{metric}_ci_low"]),
            "ci_high": float(row[f"{metric}_ci_high"]), "n": int(row["n"])}


# Confusion tables: head -> (true column, predicted column, true classes, predicted classes). "race7" needs a
# seven-class race head; "fairface_race" shows where each of FairFace's seven races goes among the five.
CONFUSIONS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    **{head: (head, f"pred_{head}", labels.CLASSES[head], labels.CLASSES[head]) for head in ("gender", "race", "age_bin")},
    "race7": ("fairface_race", "pred_race7", labels.FAIRFACE_RACES, labels.FAIRFACE_RACES),
    "fairface_race": ("fairface_race", "pred_race", labels.FAIRFACE_RACES, labels.RACES),
}

CONFUSION_TITLES = {"gender": "gender", "race": "race", "age_bin": "age bin", "race7": "race (FairFace's 7)",
                    "fairface_race": "FairFace race → race"}
_AXIS_NAMES = {"age_bin": "age bin", "race7": "race (FairFace's 7)", "fairface_race": "FairFace race"}


def confusion_heads(frame: pd.DataFrame) -> list[str]:
    """The `CONFUSIONS` a predictions frame has both columns of."""
    return [head for head, (true, pred, _, _) in CONFUSIONS.items() if true in frame and pred in frame]


def confusion(frame: pd.DataFrame, head: str, *, normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix of one of `CONFUSIONS`: rows true labels, columns predictions, in taxonomy order."""
    true, pred, true_names, pred_names = CONFUSIONS[head]
    rows, columns = class_positions(frame[true], true_names), class_positions(frame[pred], pred_names)
    counted = (rows >= 0) & (columns >= 0)  # a label and a prediction, each one of the head's classes
    counts = np.bincount(rows[counted] * len(pred_names) + columns[counted], minlength=len(true_names) * len(pred_names))
    table = pd.DataFrame(counts.reshape(len(true_names), len(pred_names)),
                         index=pd.CategoricalIndex(true_names, categories=true_names),
                         columns=pd.CategoricalIndex(pred_names, categories=pred_names))
    predicted = pred.removeprefix("pred_")
    table.index.name = f"true {_AXIS_NAMES.get(true, true)}"
    table.columns.name = f"predicted {_AXIS_NAMES.get(predicted, predicted)}"
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0)
    return table
