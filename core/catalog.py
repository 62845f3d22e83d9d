"""A dataset's catalog: scanned rows, their duplicate groups and split, and a printable summary."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from core import labels
from core.datasets import Dataset
from core.dedup import find_duplicate_groups, scan_images
from core.split import SPLITS, SplitError

__all__ = ["Catalog", "build_catalog", "apply_split", "summarize", "format_summary"]


@dataclass
class Catalog:
    """Scanned rows with duplicate-group columns (and `split` once applied), plus rejects and notes."""

    name: str
    table: pd.DataFrame
    rejects: pd.DataFrame
    notes: list[str]


def build_catalog(dataset: Dataset, *, progress: Callable[[Iterable], Iterable] | None = None) -> Catalog:
    """Scan every image of `dataset` and attach its duplicate group (see `core.dedup`)."""
    scanned = scan_images(dataset, progress=progress)
    groups = find_duplicate_groups(scanned.table)
    return Catalog(scanned.name, pd.concat([scanned.table, groups], axis=1), scanned.rejects, scanned.notes)


def apply_split(catalog: Catalog, split: pd.DataFrame) -> Catalog:
    """Return `catalog` with a `split` column taken from a split table (`file,split,group`).

    Raises:
        SplitError: a catalog row has no split, or a duplicate group of the catalog straddles splits.
    """
    table = catalog.table.drop(columns="split", errors="ignore")
    table = table.merge(split[["file", "split"]], on="file", how="left", validate="one_to_one")
    missing = table.loc[table["split"].isna(), "file"]
    if len(missing):
        raise SplitError(f"{len(missing)} file(s) have no split, e.g. {missing.iloc[0]!r}: regenerate the split file")
    straddling = table.groupby("group")["split"].nunique()
    if (straddling > 1).any():
        raise SplitError(f"{int((straddling > 1).sum())} duplicate group(s) straddle splits")
    table["split"] = pd.Categorical(table["split"], categories=list(SPLITS), ordered=True)
    return Catalog(catalog.name, table, catalog.rejects, catalog.notes)


def _counts(table: pd.DataFrame, column: str, by: str | None) -> pd.DataFrame:
    if by is None:
        counts = table[column].value_counts(sort=False, dropna=False).rename("n").to_frame()
    else:
        counts = pd.crosstab(table[column], table[by], dropna=False)
        counts["all"] = counts.sum(axis=1)
    counts["share %"] = (100 * counts.iloc[:, -1] / counts.iloc[:, -1].sum()).round(1)
    return counts


def summarize(catalog: Catalog) -> dict[str, pd.DataFrame | dict[str, int]]:
    """Return the summary tables of a catalog.

    Returns:
        `counts` (dict), `rejects` (reason counts), `duplicates` (conflict kinds of duplicate
        groups), one distribution table per attribute (per split when split), and
        `strata` (race x gender x age bin counts).
    """
    table = catalog.table
    multi = table[table["group_size"] > 1].drop_duplicates("group")
    exact_groups = table.loc[table["exact_duplicate"], "sha1"].nunique()
    counts = {
        "files": len(table) + len(catalog.rejects),
        "usable": len(table),
        "rejected": len(catalog.rejects),
        "exact-duplicate groups": int(exact_groups),
        "duplicate groups (exact or near)": len(multi),
        "rows in duplicate groups": int((table["group_size"] > 1).sum()),
        "groups with conflicting labels": int(multi["label_conflict"].sum()),
    }
    by = "split" if "split" in table.columns else None
    if by:
        counts.update({f"{name} rows": int((table["split"] == name).sum()) for name in SPLITS})
    conflict_kinds = multi.loc[multi["label_conflict"], "conflict"].value_counts().rename("groups").to_frame()
    strata = table.pivot_table(index=["race", "gender"], columns="age_bin", values="file",
                               aggfunc="count", observed=False, fill_value=0)
    summary: dict[str, pd.DataFrame | dict[str, int]] = {
        "counts": counts,
        "rejects": catalog.rejects[["file", "reason"]],
        "conflicting labels in duplicate groups": conflict_kinds,
    }
    for column in ("age_bin", "gender", "race"):
        summary[column] = _counts(table, column, by)
    summary["race x gender x age bin"] = strata
    summary["age (years)"] = table["age"].describe().to_frame().T
    return summary


def format_summary(summary: dict[str, pd.DataFrame | dict[str, int]], notes: list[str]) -> str:
    """Render `summarize()`'s tables as plain text."""
    lines = []
    for title, value in summary.items():
        lines.append(f"\n== {title} ==")
        if isinstance(value, dict):
            width = max(map(len, value))
            lines.extend(f"{key:<{width}}  {number:>7,}" for key, number in value.items())
        else:
            lines.append(value.to_string() if len(value) else "(none)")
    if notes:
        lines.append("\n== notes ==")
        lines.extend(notes)
    lines.append(f"\n{labels.RACE_MAPPING_NOTE}")
    return "\n".join(lines)
