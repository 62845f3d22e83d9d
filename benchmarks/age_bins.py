"""Predicted age bins by the old rule (most probable bin) and today's (the bin holding the median age).

    python -m benchmarks.age_bins [--bundle DIR ...]

For each bundle (default: the shipped UTKFace test, FairFace sample and FairFace validation audits),
prints the true and the predicted count per bin under both rules, the age-bin accuracy, and the
two failures the median rule was made for: true 50-69 faces predicted "more than 70", and how often
40-49 is predicted against how often it is true. Both rules read the same stored probabilities.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from core import labels
from core.bundle import read_bundle
from core.config import REPO_ROOT

DEFAULT = [REPO_ROOT / "models" / "default" / "audits" / name for name in ("utkface-test", "fairface-sample", "fairface-test")]


def compare_rules(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-bin counts (true, most probable, median) and summary figures of a predictions frame."""
    frame = frame[frame["age_bin"].notna()]
    probs = frame[[f"p_age_bin_{name}" for name in labels.AGE_BINS]].to_numpy()
    true = frame["age_bin"].astype("string").map(labels.AGE_BINS.index).to_numpy()
    rules = {"most probable": probs.argmax(1), "median": labels.median_bin_index(probs)}
    counts = pd.DataFrame({"true": np.bincount(true, minlength=9)} | {name: np.bincount(codes, minlength=9)
                                                                       for name, codes in rules.items()},
                          index=list(labels.AGE_BINS))
    fifties_sixties = np.isin(true, [6, 7])
    summary = {}
    for name, codes in rules.items():
        summary[f"accuracy, {name}"] = float((codes == true).mean())
        summary[f"true 50-69 called 70+, {name}"] = float((codes[fifties_sixties] == 8).mean()) if fifties_sixties.any() else np.nan
        summary[f"40-49 predicted / true, {name}"] = float((codes == 5).sum() / max((true == 5).sum(), 1))
    return counts, summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", action="append", default=None)
    args = parser.parse_args(argv)
    for folder in args.bundle or DEFAULT:
        counts, summary = compare_rules(read_bundle(folder).predictions)
        print(f"\n{folder} ({int(counts['true'].sum()):,} faces with an age bin)")
        print(counts.T.to_string())
        print("\n".join(f"  {name}: {value:.3f}" for name, value in summary.items()))


if __name__ == "__main__":
    main()
