"""How often the ECE's 95 % intervals cover the true ECE: the plain bootstrap percentile interval against the one
`core.calibration` gives (shifted down by the bootstrap's estimate of the ECE's upward bias).

    python -m benchmarks.ece_intervals [--trials 150] [--rounds 200]

A simulated model: confidence ~ Beta(5, 1.5) (mostly sure, like the shipped heads), right with probability
confidence − `gap` (gap 0: perfectly calibrated). The true ECE is the plug-in ECE of 2,000,000 faces. Each trial
draws `n` faces and resamples them `--rounds` times, as `calibration_table` does. Also prints how often the plain
interval holds its own estimate.
"""

from __future__ import annotations

import argparse

import numpy as np

from core.calibration import BINS, expected_calibration_error, resampled_ece, shifted_interval

GAPS = (0.0, 0.02, 0.05, 0.15)
SIZES = (40, 200, 1000, 3000)


def draw(n: int, gap: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness (0/1) of `n` simulated faces."""
    confidence = rng.beta(5, 1.5, n)
    return confidence, (rng.random(n) < np.clip(confidence - gap, 0, 1)).astype(float)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'true ECE':>9} {'faces':>6} {'percentile':>11} {'shifted':>8} {'percentile holds its ECE':>25}")
    for gap in GAPS:
        truth = expected_calibration_error(*draw(2_000_000, gap, rng))
        for n in SIZES:
            plain = shifted = holds = 0
            for _ in range(args.trials):
                confidence, correct = draw(n, gap, rng)
                ece = expected_calibration_error(confidence, correct)
                resampled = resampled_ece(confidence, correct, None, BINS, args.rounds, rng)
                low, high = np.percentile(resampled, [2.5, 97.5])
                plain += low <= truth <= high
                holds += low <= ece <= high
                low, high = shifted_interval(resampled, ece)
                shifted += low <= truth <= high
            print(f"{truth:9.3f} {n:6,} {plain / args.trials:11.2f} {shifted / args.trials:8.2f} "
                  f"{holds / args.trials:25.2f}")
    print(f"coverage over {args.trials} trials each (nominal 0.95); {BINS} bins, {args.rounds} resamples")


if __name__ == "__main__":
    main()
