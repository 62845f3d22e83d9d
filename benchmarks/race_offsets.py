"""Can a decision rule lift the worst race-7 class? Per-class logit offsets, fitted on one bundle, applied to others.

    python -m benchmarks.race_offsets [--fit models/default/audits/fairface-tune] [--apply BUNDLE ...]

Issue 11 asks that no race-7 class be recalled below 50 %. This asks whether post-processing could get there
without retraining: each class's log-probability gets an offset (the first class's stays 0) and the class with
the highest sum is predicted. Three fits on `--fit` (FairFace's tuning photos by default; the test bundles are
never fitted on): the prior correction (offsets that undo how often the model predicts each class on average),
the offsets of highest balanced accuracy and those of the highest lowest recall (coordinate ascent over a
grid). Prints, per bundle, accuracy, balanced accuracy, the lowest recall and every class's recall.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from core import labels
from core.bundle import read_bundle
from core.config import REPO_ROOT

AUDITS = REPO_ROOT / "models" / "default" / "audits"
GRID = np.arange(-3, 3.001, 0.05)


def log_probabilities(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Race-7 log-probabilities and true classes of a bundle's faces with a FairFace race label."""
    frame = read_bundle(folder).predictions
    frame = frame[frame["fairface_race"].notna()]
    probs = frame[[f"p_race7_{name}" for name in labels.FAIRFACE_RACES]].to_numpy(float)
    truth = frame["fairface_race"].map(labels.parse_race7).map(labels.FAIRFACE_RACES.index).to_numpy()
    return np.log(np.clip(probs, 1e-12, 1)), truth


def recalls(log_probs: np.ndarray, truth: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, float]:
    """Each class's recall and the accuracy when `offsets` are added before the argmax."""
    predicted = (log_probs + offsets).argmax(1)
    per_class = np.array([(predicted[truth == c] == c).mean() for c in range(len(offsets))])
    return per_class, float((predicted == truth).mean())


def fit_offsets(log_probs: np.ndarray, truth: np.ndarray, score: Callable[[np.ndarray, float], float]) -> np.ndarray:
    """Offsets maximising `score(recalls, accuracy)`: coordinate ascent over `GRID`, the first class fixed at 0."""
    offsets = np.zeros(log_probs.shape[1])
    best = score(*recalls(log_probs, truth, offsets))
    for _ in range(6):
        improved = False
        for c in range(1, len(offsets)):
            for value in GRID:
                trial = offsets.copy()
                trial[c] = value
                if (trial_score := score(*recalls(log_probs, truth, trial))) > best + 1e-12:
                    best, offsets, improved = trial_score, trial, True
        if not improved:
            break
    return offsets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", default=str(AUDITS / "fairface-tune"))
    parser.add_argument("--apply", action="append", default=None)
    args = parser.parse_args(argv)
    fit = log_probabilities(args.fit)
    prior = -np.log(np.exp(fit[0]).mean(0))
    rules = {"none": np.zeros(len(labels.FAIRFACE_RACES)), "prior correction": prior - prior[0],
             "highest balanced accuracy": fit_offsets(*fit, lambda r, a: r.mean()),
             "highest lowest recall": fit_offsets(*fit, lambda r, a: r.min() + 1e-3 * r.mean())}
    folders = [args.fit, *(args.apply or [str(AUDITS / "fairface-test"), str(AUDITS / "fairface-sample")])]
    data = {folder: log_probabilities(folder) for folder in folders}
    print("classes:", ", ".join(labels.FAIRFACE_RACES))
    for name, offsets in rules.items():
        print(f"\n{name}: offsets {np.round(offsets, 2).tolist()}")
        for folder, (log_probs, truth) in data.items():
            per_class, accuracy = recalls(log_probs, truth, offsets)
            worst = labels.FAIRFACE_RACES[int(per_class.argmin())]
            print(f"  {folder} ({len(truth):,} faces): accuracy {accuracy:.3f}, balanced {per_class.mean():.3f}, "
                  f"lowest {per_class.min():.3f} ({worst}); recalls {' '.join(f'{r:.2f}' for r in per_class)}")


if __name__ == "__main__":
    main()
