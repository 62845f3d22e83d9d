"""Scan UTKFace, find duplicate groups, make or check the split, and print a data summary.

    python -m training.data                 # summary, using the committed split
    python -m training.data --write-split   # (re)create splits/utkface.csv
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from tqdm import tqdm

from core.catalog import apply_split, build_catalog, format_summary, summarize
from core.config import SPLIT_FILE, Settings
from core.datasets import read_utkface
from core.split import make_split, read_split, write_split
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data folder holding utkface/UTKFace (default: FACEAUDIT_DATA or ../shared/data)")
    parser.add_argument("--split-file", default=str(SPLIT_FILE), help="split CSV (default: %(default)s)")
    parser.add_argument("--write-split", action="store_true", help="create the split file instead of reading it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (with --write-split)")
    parser.add_argument("--rejects-out", help="also write the rejects table to this CSV")
    args = parser.parse_args(argv)

    settings = Settings.from_env().with_overrides(data=args.data)
    folder = settings.dataset_dir("utkface", "UTKFace")
    dataset = read_utkface(folder)
    catalog = build_catalog(dataset, progress=lambda it: tqdm(it, total=len(dataset.table), desc="scanning images", unit="img"))
    if args.write_split:
        split = make_split(catalog.table, catalog.table["group"], seed=args.seed)
        write_split(split, args.split_file)
        print(f"wrote {args.split_file} ({len(split)} rows)")
    catalog = apply_split(catalog, read_split(args.split_file))
    if args.rejects_out:
        catalog.rejects.to_csv(args.rejects_out, index=False)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 100):
        print(format_summary(summarize(catalog), catalog.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
