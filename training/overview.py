"""Store the Overview of bundles written before FaceAudit stored it, or whose stored one older code made.

    python -m training.overview models/default/audits/fairface-test models/default/audits/utkface-only/*

`write_bundle` stores it with every bundle it writes (`overview.json`: what the dashboard's first page shows of all
faces, so that page needs no read of the predictions). A bundle without a current one still opens: the page then
computes it from the predictions. Bundles whose stored Overview is current are left as they are.
"""

from __future__ import annotations

import argparse
import sys
import time

from core.bundle import read_bundle, store_overview, stored_overview
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", help="bundle folders")
    args = parser.parse_args(argv)
    for folder in args.bundles:
        if stored_overview(folder) is not None:
            print(f"{folder}: current")
            continue
        started = time.perf_counter()
        store_overview(folder, read_bundle(folder).predictions)
        print(f"{folder}: stored ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
