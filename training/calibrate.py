"""Temperature scaling: fit one temperature per head on a bundle (validation), apply it to another, write the result.

    python -m training.calibrate --fit models/default/audits/utkface-val --apply models/default/audits/utkface-test \\
        --out models/default/audits/utkface-test-calibrated

The new bundle keeps every prediction's class (the age bin by the median rule on the rescaled bins) and rescales
its probabilities, so accuracy is unchanged and only confidence moves; it records the temperatures and where
they were fitted. Printed: per head, the temperature and the expected calibration error before and after, overall
and in the worst race × gender group (n ≥ 30).
"""

from __future__ import annotations

import argparse
import sys

from core.bundle import Bundle, read_bundle, write_bundle
from core.calibration import calibration_table, fit_temperatures, with_temperatures
from training._cli import command


def _worst(table):
    big = table[~table["small_n"]]
    return (big["ece"].idxmax(), big["ece"].max()) if len(big) else (None, float("nan"))


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", required=True, help="bundle to fit the temperatures on (a validation split)")
    parser.add_argument("--apply", required=True, help="bundle to rescale")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    args = parser.parse_args(argv)
    fitted, target = read_bundle(args.fit), read_bundle(args.apply)
    temperatures = fit_temperatures(fitted.predictions)
    frame = with_temperatures(target.predictions, temperatures)
    rounded = {head: round(value, 3) for head, value in temperatures.items()}
    metrics = target.metrics | {"mitigation": f"temperature scaling {rounded}", "fitted_on": fitted.metrics.get("dataset"),
                                "temperatures": temperatures}
    write_bundle(Bundle(predictions=frame, metrics=metrics, rejects=target.rejects), args.out)
    for head, temperature in temperatures.items():
        before, after = (calibration_table(f, head).iloc[0] for f in (target.predictions, frame))
        (worst_before, ece_before), (worst_after, ece_after) = (_worst(calibration_table(f, head, ["race", "gender"]))
                                                                for f in (target.predictions, frame))
        print(f"{head}: T = {temperature:.3f}; ECE {before['ece']:.3f} → {after['ece']:.3f} "
              f"(95 % CI after {after['ece_ci_low']:.3f}–{after['ece_ci_high']:.3f}); worst race × gender group "
              f"{worst_before} {ece_before:.3f} → {worst_after} {ece_after:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
