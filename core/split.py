"""A seeded train/val/test split, stratified by race x gender x age bin, that keeps duplicate groups whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import FaceAuditError

__all__ = ["SPLITS", "DEFAULT_FRACTIONS", "SplitError", "stratum", "make_split", "read_split", "write_split"]

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


class SplitError(FaceAuditError, ValueError):
    """A split file that does not match the data it is applied to."""


def stratum(table: pd.DataFrame) -> pd.Series:
    """Return each row's stratum label `race|gender|age_bin`."""
    return table["race"].astype("string") + "|" + table["gender"].astype("string") + "|" + table["age_bin"].astype("string")


def make_split(table: pd.DataFrame, groups: pd.Series, *, seed: int = 0,
               fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> pd.DataFrame:
    """Assign every row to train, val or test.

    Whole duplicate groups go to one split. Within each stratum (race x gender x age bin of a
    group's first row) groups are shuffled with `seed` and each goes to the split furthest
    below its target share, so every stratum is split close to `fractions`.

    Args:
        table: Rows with `file` and label columns.
        groups: Duplicate-group id per row (see `core.dedup.find_duplicate_groups`).
        seed: Seed of the shuffle.
        fractions: Target shares of train, val and test.

    Returns:
        DataFrame with `file`, `split`, `group`, in the order of `table`.
    """
    if len(fractions) != len(SPLITS) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three shares summing to 1, got {fractions}")
    target = np.asarray(fractions)
    frame = pd.DataFrame({"group": groups.to_numpy(), "stratum": stratum(table).fillna("unknown").to_numpy()})
    sizes = frame.groupby("group").size()
    group_stratum = frame.groupby("group")["stratum"].first()
    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for _, members in group_stratum.groupby(group_stratum, sort=True):
        group_ids = members.index.to_numpy().copy()
        rng.shuffle(group_ids)
        counts = np.zeros(len(SPLITS))
        for group_id in group_ids:
            size = sizes[group_id]
            deficit = target * (counts.sum() + size) - counts
            choice = int(np.argmax(deficit))
            counts[choice] += size
            assignment[int(group_id)] = SPLITS[choice]
    return pd.DataFrame({
        "file": table["file"].to_numpy(),
        "split": [assignment[int(g)] for g in frame["group"]],
        "group": frame["group"].to_numpy(),
    })


def write_split(split: pd.DataFrame, path: str | Path) -> None:
    """Write a split as CSV (`file,split,group`), sorted by file name for stable diffs."""
    split.sort_values("file").to_csv(path, index=False)


def read_split(path: str | Path) -> pd.DataFrame:
    """Read a split CSV written by `write_split`.

    Raises:
        FileNotFoundError: no file at `path`.
        SplitError: columns or split names are not as written by `write_split`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist; create it with `python -m training.data --write-split`")
    split = pd.read_csv(path, dtype={"file": "string", "split": "string", "group": "int64"}, keep_default_na=False)
    if list(split.columns) != ["file", "split", "group"]:
        raise SplitError(f"{path}: expected columns file,split,group, found {','.join(split.columns)}")
    unknown = set(split["split"]) - set(SPLITS)
    if unknown:
        raise SplitError(f"{path}: unknown split name(s) {sorted(unknown)}; valid: {', '.join(SPLITS)}")
    return split
