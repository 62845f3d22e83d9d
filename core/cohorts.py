"""Named cohorts: conditions on any column, prediction, confidence or error, saved beside a bundle.

    Cohort("confident misses", (Condition("race_error", "==", "wrong"), Condition("race_confidence", ">", 0.9)))

A cohort is applied after the sidebar filter on every page and in reports. Besides the bundle's own
columns it can use the outcome columns of `with_outcomes` (`gender_error`, `race_confidence`,
`age_error`, ...). Cohorts live in `<bundle>/cohorts.json`; the bundle's files are never edited.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import labels
from core.errors import FaceAuditError
from core.fairness import equal_as_text, filter_frame, text_isin

__all__ = ["OPS", "COHORTS_FILE", "CohortError", "Condition", "Cohort", "exact_ages", "true_labels", "with_outcomes", "outcome_columns", "face_keys", "select",
           "read_cohorts", "save_cohort", "delete_cohort", "write_beside", "parse_value", "side_by_side"]

OPS = ("==", "!=", "in", "not in", "<=", ">")
COHORTS_FILE = "cohorts.json"
CLASS_HEADS = ("gender", "race", "age_bin")
OUTCOME_HEADS = (*CLASS_HEADS, "race7")  # and a seven-class race head's, scored against FairFace's races


class CohortError(FaceAuditError, ValueError):
    """A cohort that cannot be read, written or applied; the message says which and why."""


def exact_ages(frame: pd.DataFrame) -> pd.Series:
    """True ages as float64 with NaN where only a bin is known (FairFace), never pandas' NA."""
    return pd.to_numeric(frame["age"], errors="coerce").astype("float64")


def true_labels(frame: pd.DataFrame, head: str) -> pd.Series:
    """The true labels `pred_<head>` is scored against (`labels.true_column`); all missing where the data has none."""
    column = labels.true_column(head)
    return frame[column] if column in frame else pd.Series(pd.NA, index=frame.index, dtype="string")


def with_outcomes(frame: pd.DataFrame, columns: Collection[str] | None = None) -> pd.DataFrame:
    """`frame` plus, per head, whether the prediction was right and how confident it was.

    `<head>_error` is "right", "wrong" or missing (no true label, or no such head: race-7 of a five-class model);
    `<head>_confidence` is the probability of the predicted class; `age_error` is the absolute error in years
    (missing without an exact age). `columns`: only these of `outcome_columns()` (default all).
    """
    wanted = set(outcome_columns() if columns is None else columns)
    added = {}
    for head in OUTCOME_HEADS:
        if f"{head}_error" in wanted:
            truth = true_labels(frame, head)
            predicted = frame.get(f"pred_{head}", pd.Series(pd.NA, index=frame.index, dtype="string"))
            known = truth.notna() & predicted.notna()  # a model may not predict every head
            same = equal_as_text(truth, predicted)
            added[f"{head}_error"] = pd.Series(np.where(same, "right", "wrong"), index=frame.index,
                                               dtype="string").where(known)
        if f"{head}_confidence" in wanted:  # imported predictions may carry labels without probabilities: unknown
            added[f"{head}_confidence"] = frame.reindex(
                columns=[f"p_{head}_{name}" for name in labels.HEAD_CLASSES[head]]).max(axis=1)
    if "age_error" in wanted:
        added["age_error"] = (frame["pred_age"].astype("float64") - exact_ages(frame)).abs()
    return frame.assign(**added)


def outcome_columns() -> list[str]:
    """The names `with_outcomes` adds."""
    return [f"{head}_{kind}" for head in OUTCOME_HEADS for kind in ("error", "confidence")] + ["age_error"]


@dataclass(frozen=True)
class Condition:
    """`column op value`: text values for ==, != (one) and in, not in (a tuple); numbers for <= and >."""

    column: str
    op: str
    value: str | float | tuple[str, ...]

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise CohortError(f"unknown operator {self.op!r} in a condition on {self.column!r}; valid: {', '.join(OPS)}")
        if self.op in ("<=", ">") and not isinstance(self.value, (int, float)):
            raise CohortError(f"{self.column} {self.op} needs a number, got {self.value!r}")

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows meeting the condition (missing values meet only != and not in)."""
        if self.column not in frame:
            raise CohortError(f"this bundle has no column {self.column!r} (the cohort needs it)")
        series = frame[self.column]
        if self.op in ("<=", ">"):
            numbers = pd.to_numeric(series, errors="coerce").astype("float64")
            met = numbers <= self.value if self.op == "<=" else numbers > self.value
            return met.fillna(False).to_numpy(dtype=bool)
        inside = text_isin(series, {str(value) for value in ([self.value] if isinstance(self.value, str) else self.value)})
        return inside if self.op in ("==", "in") else ~inside

    def text(self) -> str:
        if isinstance(self.value, tuple):
            return f"{self.column} {self.op} {{{', '.join(self.value)}}}"
        value = f"{self.value:g}" if isinstance(self.value, float) else self.value
        return f"{self.column} {self.op.replace('<=', '≤')} {value}"


@dataclass(frozen=True)
class Cohort:
    """A named conjunction of conditions."""

    name: str
    conditions: tuple[Condition, ...]

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows meeting every condition; outcome columns are derived when a condition needs them."""
        needed = [c.column for c in self.conditions if c.column in outcome_columns() and c.column not in frame]
        if needed:
            frame = with_outcomes(frame, needed)
        met = np.ones(len(frame), dtype=bool)
        for condition in self.conditions:
            met &= condition.mask(frame)
        return met

    def describe(self) -> str:
        return " and ".join(condition.text() for condition in self.conditions) or "all faces"

    def to_dict(self) -> dict:
        return {"name": self.name, "conditions": [
            {"column": c.column, "op": c.op, "value": list(c.value) if isinstance(c.value, tuple) else c.value}
            for c in self.conditions]}

    @classmethod
    def from_dict(cls, data: dict) -> Cohort:
        try:
            name = str(data["name"]).strip()
            conditions = tuple(Condition(str(c["column"]), str(c["op"]),
                                         tuple(map(str, c["value"])) if isinstance(c["value"], list)
                                         else float(c["value"]) if c["op"] in ("<=", ">") else str(c["value"]))
                               for c in data["conditions"])
        except (KeyError, TypeError, ValueError) as error:
            raise CohortError(f"a malformed cohort {data!r}: {error}") from None
        if not name:
            raise CohortError("a cohort needs a name")
        return cls(name, conditions)


def face_keys(frame: pd.DataFrame) -> pd.Series:
    """One key per audited face: its file and the face's index in the photo ("img.jpg#0"; #0 for imported
    predictions, one per image, which record no face)."""
    index = (pd.to_numeric(frame["face_index"], errors="coerce").fillna(0).astype("int64") if "face_index" in frame
             else pd.Series(0, index=frame.index))
    return frame["file"].astype("string") + "#" + index.astype("string")


def parse_value(op: str, text: str) -> str | float | tuple[str, ...]:
    """A condition's value as typed: a number for <= and >, a comma-separated list for in / not in, else text."""
    text = str(text).strip()
    if op in ("<=", ">"):
        try:
            return float(text)
        except ValueError:
            raise CohortError(f"{op} needs a number, got {text!r}") from None
    if op in ("in", "not in"):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def select(frame: pd.DataFrame, filters: dict[str, list[str]], cohort: Cohort | None = None,
           leave_out: Collection[str] = ()) -> pd.DataFrame:
    """Rows of `frame` under the sidebar filter, then the cohort, without the faces whose `face_keys` are left out."""
    chosen = filter_frame(frame, filters)
    if cohort is not None:
        chosen = chosen[cohort.mask(chosen)]
    if len(leave_out):
        chosen = chosen[~face_keys(chosen).isin(list(leave_out)).to_numpy(dtype=bool)]
    return chosen


def write_beside(bundle_dir: str | Path, name: str, text: str) -> Path:
    """Write a file into a bundle's folder atomically (never one of the bundle's own files)."""
    folder = Path(bundle_dir)
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    except OSError as error:
        raise CohortError(f"cannot save {name} beside the bundle in {folder}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, folder / name)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise CohortError(f"cannot save {name} beside the bundle in {folder}: {error.strerror or error}") from None
    return folder / name


def read_cohorts(bundle_dir: str | Path) -> list[Cohort]:
    """The cohorts saved beside a bundle (none if it has no cohorts file)."""
    path = Path(bundle_dir) / COHORTS_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Cohort.from_dict(item) for item in data["cohorts"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CohortError(f"{path} is not a cohorts file ({error}); fix or delete it") from None


def _write(bundle_dir: str | Path, cohorts: list[Cohort]) -> None:
    text = json.dumps({"schema": "faceaudit-cohorts/1", "cohorts": [c.to_dict() for c in cohorts]}, indent=2)
    write_beside(bundle_dir, COHORTS_FILE, text + "\n")


def save_cohort(bundle_dir: str | Path, cohort: Cohort) -> None:
    """Add a cohort, or replace the one of the same name."""
    if not cohort.conditions:
        raise CohortError(f"cohort {cohort.name!r} has no condition")
    _write(bundle_dir, [c for c in read_cohorts(bundle_dir) if c.name != cohort.name] + [cohort])


def delete_cohort(bundle_dir: str | Path, name: str) -> None:
    _write(bundle_dir, [c for c in read_cohorts(bundle_dir) if c.name != name])


def side_by_side(frame: pd.DataFrame, a: Cohort | None, b: Cohort | None, metrics: list[str],
                 rounds: int = 300) -> tuple[pd.DataFrame, int]:
    """Each metric in cohort `a` and `b` of `frame` (None: all faces) with 95 % intervals, and b − a with its interval.

    Returns the table (one row per metric) and how many faces the two cohorts share: the difference's
    interval treats them as independent, which overlapping cohorts are not.
    """
    from core.fairness import overall_metrics
    from core.findings import difference_interval

    masks = [np.ones(len(frame), dtype=bool) if cohort is None else cohort.mask(frame) for cohort in (a, b)]

    def metrics_of(mask: np.ndarray) -> pd.DataFrame:
        return overall_metrics(frame if mask.all() else frame[mask], metrics, rounds=rounds)

    first = metrics_of(masks[0])
    tables = [first, first if a == b else metrics_of(masks[1])]  # one cohort twice (all faces, on opening): once
    rows = {}
    for name in metrics:
        first, second = tables[0].loc[name], tables[1].loc[name]
        low, high = difference_interval(second["value"], (second["ci_low"], second["ci_high"]),
                                        first["value"], (first["ci_low"], first["ci_high"]))
        rows[name] = {"a": first["value"], "a_low": first["ci_low"], "a_high": first["ci_high"], "a_n": first["n"],
                      "b": second["value"], "b_low": second["ci_low"], "b_high": second["ci_high"], "b_n": second["n"],
                      "b_minus_a": second["value"] - first["value"], "diff_low": low, "diff_high": high}
    return pd.DataFrame(rows).T, int((masks[0] & masks[1]).sum())
