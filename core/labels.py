"""The one label taxonomy of FaceAudit: age, age bins, gender and race.

Every reader, model head, metric and page takes its label names from here.

Race follows UTKFace's five classes. FairFace's seven classes are mapped onto them; the map is
lossy (two FairFace classes become "Asian", two more disappear into "Others"), so "Others" is a
catch-all, not an ethnicity. Pages and reports show `RACE_MAPPING_NOTE` wherever race appears.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from core.errors import FaceAuditError

__all__ = [
    "BOX_COLUMNS",
    "column_key",
    "AGE_MIN",
    "AGE_MAX",
    "AGE_BINS",
    "GENDERS",
    "RACES",
    "CLASSES",
    "FAIRFACE_RACES",
    "HEAD_CLASSES",
    "TRUE_COLUMNS",
    "true_column",
    "FAIRFACE_TO_RACE",
    "RACE7_TO_RACE",
    "LONDON_TO_RACE",
    "RACE_MAPPING_NOTE",
    "RACE7_NOTE",
    "race_note",
    "LabelError",
    "age_to_bin",
    "bins_of_ages",
    "median_bin_index",
    "parse_age",
    "parse_age_bin",
    "parse_gender",
    "parse_race",
    "parse_race7",
    "race7_labels",
]

AGE_MIN, AGE_MAX = 0, 116
# FairFace's nine age bins, as (name, first year, last year).
_AGE_BIN_RANGES: tuple[tuple[str, int, int], ...] = (
    ("0-2", 0, 2),
    ("3-9", 3, 9),
    ("10-19", 10, 19),
    ("20-29", 20, 29),
    ("30-39", 30, 39),
    ("40-49", 40, 49),
    ("50-59", 50, 59),
    ("60-69", 60, 69),
    ("more than 70", 70, AGE_MAX),
)
AGE_BINS: tuple[str, ...] = tuple(name for name, _, _ in _AGE_BIN_RANGES)
GENDERS: tuple[str, ...] = ("Male", "Female")  # UTKFace codes 0, 1
RACES: tuple[str, ...] = ("White", "Black", "Asian", "Indian", "Others")  # UTKFace codes 0-4
# Every categorical label column and its classes, in the order pages and reports show them.
CLASSES: dict[str, tuple[str, ...]] = {"race": RACES, "gender": GENDERS, "age_bin": AGE_BINS}

FAIRFACE_RACES: tuple[str, ...] = (
    "White",
    "Black",
    "Latino_Hispanic",
    "East Asian",
    "Southeast Asian",
    "Indian",
    "Middle Eastern",
)
# Every classifying head's classes: the label columns' and a seven-class race head's (`pred_race7`, `p_race7_*`).
HEAD_CLASSES: dict[str, tuple[str, ...]] = {**CLASSES, "race7": FAIRFACE_RACES}
# The true-label column of a head's predictions where it is not the head's own name (FairFace's race for race-7)
TRUE_COLUMNS: dict[str, str] = {"race7": "fairface_race"}


def true_column(head: str) -> str:
    """The column holding the true labels `pred_<head>` is scored against."""
    return TRUE_COLUMNS.get(head, head)

FAIRFACE_TO_RACE: dict[str, str] = {
    "White": "White",
    "Black": "Black",
    "East Asian": "Asian",
    "Southeast Asian": "Asian",
    "Indian": "Indian",
    "Latino_Hispanic": "Others",
    "Middle Eastern": "Others",
}
# Which of `RACES` each of `FAIRFACE_RACES` is (by index): a seven-class race head's five-class view, and the
# label *set* a five-class label stands for when it trains a seven-class head.
RACE7_TO_RACE: tuple[int, ...] = tuple(RACES.index(FAIRFACE_TO_RACE[name]) for name in FAIRFACE_RACES)
# The London set's `ethnicity` column. West Asian is FairFace's "Middle Eastern", hence "Others";
# people labelled with two ethnicities ("east_asian/white") also go to the catch-all.
LONDON_TO_RACE: dict[str, str] = {
    "white": "White",
    "black": "Black",
    "east_asian": "Asian",
    "west_asian": "Others",
    "east_asian/white": "Others",
}

RACE_MAPPING_NOTE = (
    "Race uses UTKFace's five classes (White, Black, Asian, Indian, Others). FairFace's seven classes "
    "are mapped onto them: East Asian and Southeast Asian become Asian; Latino_Hispanic and Middle "
    "Eastern become Others; White, Black and Indian map one to one. The map is lossy, and 'Others' is "
    "a catch-all of very different populations, so metrics for 'Others' describe no single group."
)
RACE7_NOTE = f"This model predicts FairFace's seven races ({', '.join(FAIRFACE_RACES)}) and derives the five from them."


def race_note(seven_classes: bool) -> str:
    """What race means where it is shown: `RACE_MAPPING_NOTE`, after `RACE7_NOTE` for a seven-class model."""
    return f"{RACE_MAPPING_NOTE} {RACE7_NOTE}" if seven_classes else RACE_MAPPING_NOTE


class LabelError(FaceAuditError, ValueError):
    """A label value that is not part of the taxonomy."""


# A manifest's labelled face in its photo, in pixels of the photo as shown (EXIF orientation applied): the face the
# row's labels belong to, where a photo holds several (a row each)
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")


def column_key(name: object) -> str:
    """A column name as FaceAudit compares names an auditor writes: lower case, spaces and hyphens as `_`
    (`Subject ID` is `subject_id`, `Age Group` is `age_group`)."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _key(value: object) -> str:
    return " ".join(str(value).strip().lower().replace("_", " ").split())


def _lookup(value: object, names: tuple[str, ...], kind: str, extra: dict[str, str] | None = None) -> str:
    by_key = {_key(name): name for name in names}
    by_key.update({_key(alias): target for alias, target in (extra or {}).items()})
    try:
        return by_key[_key(value)]
    except KeyError:
        valid = list(names) + [alias for alias in (extra or {}) if alias not in names]
        raise LabelError(f"unknown {kind} {str(value)!r}; valid: {', '.join(valid)}") from None


# FairFace's Latino_Hispanic as label files also write it
RACE7_ALIASES = {"Latino": "Latino_Hispanic", "Hispanic": "Latino_Hispanic"}
# How auditors' own label files write the two genders; a number (0/1) is left out: datasets code it both ways
GENDER_ALIASES = {"M": "Male", "F": "Female", "man": "Male", "woman": "Female"}


def parse_gender(value: object) -> str:
    """Return the canonical gender name for `value` (case-insensitive; `GENDER_ALIASES` too).

    Raises:
        LabelError: `value` is not one of `GENDERS` or their aliases.
    """
    return _lookup(value, GENDERS, "gender", extra=GENDER_ALIASES)


def parse_race(value: object) -> str:
    """Return the canonical race for `value`; FairFace's seven names (and `RACE7_ALIASES`) are accepted and mapped.

    Raises:
        LabelError: `value` is neither one of `RACES` nor of `FAIRFACE_RACES`.
    """
    return _lookup(value, RACES, "race", extra=FAIRFACE_TO_RACE | {alias: FAIRFACE_TO_RACE[name]
                                                                  for alias, name in RACE7_ALIASES.items()})


def parse_race7(value: object) -> str:
    """Return the canonical name of one of FairFace's seven races for `value` (case-insensitive, `_` or space;
    `RACE7_ALIASES` too).

    Raises:
        LabelError: `value` is not one of `FAIRFACE_RACES`.
    """
    return _lookup(value, FAIRFACE_RACES, "FairFace race", extra=RACE7_ALIASES)


def race7_labels(names: Iterable[object]) -> list[str] | None:
    """Race labels as FairFace's seven classes when they are written in them: each one of the seven and some a race
    the five merge (East or Southeast Asian, Latino_Hispanic, Middle Eastern); None otherwise."""
    try:
        seven = [parse_race7(name) for name in names]
    except LabelError:
        return None
    return seven if set(seven) - set(RACES) else None


def parse_age_bin(value: object) -> str:
    """Return the canonical age-bin name (`"70+"` and `"more than 70"` both work).

    Raises:
        LabelError: `value` is not one of `AGE_BINS`.
    """
    spaced = re.sub(r"\s*[-\u2013]\s*", "-", str(value).strip())  # '20 - 29' and an en dash '20\u201329' too
    return _lookup(spaced, AGE_BINS, "age bin", extra={"70+": "more than 70"})


def parse_age(value: object) -> int:
    """Return `value` as whole years in [AGE_MIN, AGE_MAX].

    Raises:
        LabelError: `value` is not a whole number of years in range.
    """
    try:
        number = float(str(value).strip())
    except ValueError:
        raise LabelError(f"age {value!r} is not a number") from None
    if not math.isfinite(number) or number != int(number) or not AGE_MIN <= number <= AGE_MAX:
        raise LabelError(f"age {value!r} is not a whole number of years in {AGE_MIN}-{AGE_MAX}")
    return int(number)


def age_to_bin(age: int) -> str:
    """Return the FairFace age bin of an age in years.

    Example:
        >>> age_to_bin(25)
        '20-29'
    """
    for name, first, last in _AGE_BIN_RANGES:
        if first <= age <= last:
            return name
    raise LabelError(f"age {age!r} is outside {AGE_MIN}-{AGE_MAX}")


def bins_of_ages(ages: np.ndarray) -> list[str | None]:
    """The age bin of each (possibly fractional, possibly NaN) predicted age; None where it is NaN."""
    return [None if np.isnan(age) else age_to_bin(int(np.clip(round(age), AGE_MIN, AGE_MAX))) for age in ages]


def median_bin_index(bin_probs: np.ndarray) -> np.ndarray:
    """Index of the age bin that holds the median of each row's age distribution.

    The bins are contiguous and ordered, so this is the first bin whose cumulative probability
    reaches one half. Unlike the most probable bin it follows the predicted age: the wide last bin
    (70-116) no longer wins just for being wide.

    Args:
        bin_probs: `(n, len(AGE_BINS))` probabilities in bin order.

    Example:
        >>> median_bin_index(np.array([[0, 0, 0, 0, 0, 0.2, 0.2, 0.2, 0.4]])).tolist()
        [7]
    """
    cumulative = np.cumsum(np.asarray(bin_probs, dtype=np.float64), axis=1)
    cumulative /= np.where(cumulative[:, -1:] > 0, cumulative[:, -1:], 1.0)  # rows summing to 1 - eps still count
    return np.minimum((cumulative < 0.5).sum(axis=1), len(AGE_BINS) - 1)
