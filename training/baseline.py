"""Fit the PCA + gradient-boosting baseline on the UTKFace train split and score it on test.

    python -m training.baseline [--out models/baseline/audits/utkface-test]

Uses the same aligned chips as the CNN. Prints the headline metrics; with --out, also writes an
audit bundle of the baseline's test predictions so the dashboard can compare it with the CNN.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.baseline import PcaBaseline
from core.bundle import Bundle, compute_metrics, prediction_frame, write_bundle
from core.config import SPLIT_FILE, Settings
from core.trainer import metrics, targets_from_table
from training._cli import command
from training._data import load_chips, split_tables


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data folder holding utkface/UTKFace")
    parser.add_argument("--size", type=int, default=128, help="chip size to read from the cache (default: %(default)s)")
    parser.add_argument("--components", type=int, default=PcaBaseline.components)
    parser.add_argument("--out", help="write an audit bundle of the test predictions here")
    args = parser.parse_args(argv)
    settings = Settings.from_env().with_overrides(data=args.data)
    tables = split_tables(settings, SPLIT_FILE)
    folder = settings.dataset_dir("utkface", "UTKFace")
    train_chips = load_chips(folder, tables["train"]["file"].tolist(), args.size)
    test_chips = load_chips(folder, tables["test"]["file"].tolist(), args.size)
    started = time.perf_counter()
    baseline = PcaBaseline(components=args.components).fit(train_chips, targets_from_table(tables["train"]))
    print(f"fitted in {time.perf_counter() - started:.0f} s")
    outputs = baseline.predict(test_chips)
    print(json.dumps(metrics(outputs, targets_from_table(tables["test"])), indent=2))
    if args.out:
        frame = prediction_frame(tables["test"], outputs)
        bundle_metrics = compute_metrics(frame, len(frame)) | {
            "dataset": "utkface-test", "model_id": "pca-baseline", "model_backbone": f"PCA({args.components}) + boosted trees",
            "notes": [], "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_bundle(Bundle(frame, bundle_metrics, tables["test"].iloc[0:0][["file", "path", "source"]].assign(reason="")),
                     Path(args.out))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
