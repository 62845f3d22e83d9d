"""Issue 11's targets, measured on the shipped audit bundles, one column per model.

    python -m benchmarks.targets [--model models/default]

Each column is a model's own audits (`training.evaluate` runs, or a peer's imported predictions) of the same
photos: FaceAudit's default model (`<model>/audits/<dataset>`) and every other model audited beside it
(`<model>/audits/<other>/<dataset>`). FairFace's test part is a `fairface-test` bundle, or a model's
`fairface-val` bundle restricted to the test part of splits/fairface.csv (the same 3,285 photos). A model that
misses a face on a photo loses it from its n (the peer's own detector finds fewer); the FairFace sample row
counts every image, a missed face as wrong.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from core import labels
from core.bundle import BundleError, discover_bundles, read_bundle
from core.calibration import confidence_and_correct, expected_calibration_error, has_probabilities
from core.config import FAIRFACE_SPLIT_FILE, Settings, add_settings_arguments
from core.fairness import row_values
from core.split import read_split

# (row label, target, higher is better)
TARGETS = {
    "FairFace test: gender": (0.92, True),
    "FairFace test: race-7": (0.70, True),
    "FairFace test: race-5": (0.82, True),
    "FairFace test: age bin": (0.55, True),
    "FairFace test: lowest race-7 recall": (0.50, True),
    "FairFace test: |women err - men err|": (0.02, False),
    "FairFace sample (every image): gender": (0.90, True),
    "FairFace sample (every image): race-5": (0.72, True),
    "UTKFace test: age MAE": (4.6, False),
    "UTKFace test: gender": (0.945, True),
    "UTKFace test: race-5": (0.865, True),
    "London set: gender": (0.97, True),
    "UTKFace test: ECE gender": (0.03, False),
    "UTKFace test: ECE race-5": (0.03, False),
    "FairFace test: ECE gender": (0.03, False),
    "FairFace test: ECE race-5": (0.03, False),
    "FairFace test: ECE race-7": (0.03, False),  # the head itself, where the model has seven classes
}


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if values.notna().any() else None


def _fairface_test(bundles: dict[str, Path]) -> pd.DataFrame | None:
    """The model's predictions on FairFace's test part, from a fairface-test or a fairface-val bundle."""
    if "fairface-test" in bundles:
        return read_bundle(bundles["fairface-test"]).predictions
    if "fairface-val" in bundles:
        split = read_split(FAIRFACE_SPLIT_FILE)
        test = set(split.loc[split["split"] == "test", "file"])
        frame = read_bundle(bundles["fairface-val"]).predictions
        return frame[frame["file"].isin(test)]
    return None


def _ece(frame: pd.DataFrame | None, head: str) -> float | None:
    if frame is None or not has_probabilities(frame, head) or frame[f"pred_{head}"].isna().all():
        return None
    confidence, correct, known = confidence_and_correct(frame, head)
    return expected_calibration_error(confidence[known], correct[known])


def model_targets(bundles: dict[str, Path]) -> dict[str, float | None]:
    """Every row of `TARGETS` for one model's bundles (None where it has no such bundle or head)."""
    result: dict[str, float | None] = dict.fromkeys(TARGETS)
    test = _fairface_test(bundles)
    if test is not None:
        values = row_values(test)
        recalls = [_mean(values[f"race7_recall_{race}"]) for race in labels.FAIRFACE_RACES]
        women, men = _mean(values["false_male_rate"]), _mean(values["false_female_rate"])
        result |= {"FairFace test: gender": _mean(values["gender_accuracy"]),
                   "FairFace test: race-7": _mean(values["race7_accuracy"]),
                   "FairFace test: race-5": _mean(values["race_accuracy"]),
                   "FairFace test: age bin": _mean(values["age_bin_accuracy"]),
                   "FairFace test: lowest race-7 recall": min((r for r in recalls if r is not None), default=None),
                   "FairFace test: |women err - men err|": abs(women - men) if women is not None and men is not None
                   else None,
                   "FairFace test: ECE gender": _ece(test, "gender"), "FairFace test: ECE race-5": _ece(test, "race"),
                   "FairFace test: ECE race-7": _ece(test, "race7")}
    if "fairface-sample" in bundles:
        sample = read_bundle(bundles["fairface-sample"]).metrics
        result |= {"FairFace sample (every image): gender": sample.get("gender_accuracy_all_images"),
                   "FairFace sample (every image): race-5": sample.get("race_accuracy_all_images")}
    if "utkface-test" in bundles:
        bundle = read_bundle(bundles["utkface-test"])
        result |= {"UTKFace test: age MAE": bundle.metrics.get("age_mae"),
                   "UTKFace test: gender": bundle.metrics.get("gender_accuracy"),
                   "UTKFace test: race-5": bundle.metrics.get("race_accuracy"),
                   "UTKFace test: ECE gender": _ece(bundle.predictions, "gender"),
                   "UTKFace test: ECE race-5": _ece(bundle.predictions, "race")}
    if "london-set" in bundles:
        result["London set: gender"] = read_bundle(bundles["london-set"]).metrics.get("gender_accuracy")
    return result


def models_beside(model_dir: Path) -> dict[str, dict[str, Path]]:
    """Per model, its bundles by dataset: the default model's own, then each `<model>/<dataset>` group."""
    by_model: dict[str, dict[str, Path]] = {}
    for name, path in discover_bundles(model_dir).items():
        model, _, dataset = name.rpartition("/")
        by_model.setdefault(model or "FaceAudit default", {})[dataset] = path
    return by_model


def _cell(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if target > 1 else f"{100 * value:.1f}" if target >= 0.1 else f"{value:.3f}"


def print_targets(model_dir: Path) -> None:
    """The table of `TARGETS`: a row each, the target, then each model's value (✓ where it meets the target)."""
    columns = {}
    for model, bundles in models_beside(model_dir).items():
        try:
            columns[model] = model_targets(bundles)
        except BundleError as error:
            print(f"{model}: skipped ({error})")
    width = max(map(len, TARGETS)) + 2
    print(f"{'target (accuracies in %)':<{width}}{'goal':>8}" + "".join(f"{name[:22]:>24}" for name in columns))
    for row, (target, higher) in TARGETS.items():
        cells = []
        for values in columns.values():
            value = values[row]
            met = value is not None and (value >= target if higher else value <= target)
            cells.append(f"{_cell(value, target) + (' ✓' if met else '  '):>24}")
        goal = ("≥ " if higher else "≤ ") + _cell(target, target)
        print(f"{row:<{width}}{goal:>8}" + "".join(cells))
    print(f"FairFace test part: {FAIRFACE_SPLIT_FILE.name} (test); ECE: 15 equal-width bins, on the "
          "bundle's probabilities as the model gives them")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser, "model")
    args = parser.parse_args()
    with np.errstate(all="ignore"):
        print_targets(Settings.from_args(args).model_dir)


if __name__ == "__main__":
    main()
