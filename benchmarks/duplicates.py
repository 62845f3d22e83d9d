"""Duplicate groups on the real data, with and without the centre-thumbnail check (`core.dedup`).

    python -m benchmarks.duplicates [--data DIR]

London set (102 people, 2 photos each): groups holding two or more people (goal: 0).
UTKFace: exact-duplicate groups, duplicate groups and rows in them, largest group, label conflicts.
"Hash only" is the rule before the check (whole-image difference hash within 20 bits, chained).
"""

from __future__ import annotations

import argparse

import pandas as pd

from core.catalog import Catalog, summarize
from core.config import Settings, add_settings_arguments
from core.datasets import read_london_set, read_utkface
from core.dedup import NEAR_DUPLICATE_CORRELATION, find_duplicate_groups, scan_images

RULES = {"hash only (before)": -1.0, f"hash + centre >= {NEAR_DUPLICATE_CORRELATION} (now)": NEAR_DUPLICATE_CORRELATION}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser, "data")
    settings = Settings.from_args(parser.parse_args(argv))
    london = scan_images(read_london_set(settings.dataset_dir("london_set"))).table
    utkface = scan_images(read_utkface(settings.dataset_dir("utkface", "UTKFace")))
    rows = []
    for rule, correlation in RULES.items():
        groups = find_duplicate_groups(london, min_centre_correlation=correlation)
        people = london.assign(group=groups["group"]).groupby("group")["face_id"].nunique()
        utk_groups = find_duplicate_groups(utkface.table, min_centre_correlation=correlation)
        counts = summarize(Catalog(utkface.name, pd.concat([utkface.table, utk_groups], axis=1), utkface.rejects,
                                   utkface.notes))["counts"]
        rows.append({"rule": rule, "London groups with >1 person": int((people > 1).sum()),
                     "London largest group (people)": int(people.max()),
                     "UTKFace exact groups": counts["exact-duplicate groups"],
                     "UTKFace duplicate groups": counts["duplicate groups (exact or near)"],
                     "UTKFace rows in groups": counts["rows in duplicate groups"],
                     "UTKFace largest group": int(utk_groups["group_size"].max()),
                     "UTKFace groups with conflicts": counts["groups with conflicting labels"]})
    print(pd.DataFrame(rows).set_index("rule").T.to_string())


if __name__ == "__main__":
    main()
