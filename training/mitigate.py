"""Post-processing mitigation of the gender head, fitted on val, applied to test.

    python -m training.mitigate --fit models/default/audits/utkface-val \\
        --apply models/default/audits/utkface-test --out models/default/audits/utkface-test-thresholdopt
    python -m training.mitigate --method equal-error --fit models/default/audits/fairface-tune \\
        --apply models/default/audits/fairface-test --out models/default/audits/fairface-test-equalerror

--method thresholdopt (default): fairlearn's ThresholdOptimizer, per-race thresholds (--constraints).
--method equal-error: one threshold for everyone, where women's and men's error rates are equal on --fit.
Writes a new bundle; the dashboard's Compare page shows what it bought and what it cost.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from core.bundle import read_bundle, write_bundle
from core.mitigation import (
    apply_gender_threshold,
    apply_gender_thresholds,
    fit_equal_error_threshold,
    fit_gender_thresholds,
)
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", required=True, help="bundle to fit thresholds on (validation split)")
    parser.add_argument("--apply", required=True, help="bundle to apply them to (test split)")
    parser.add_argument("--out", required=True, help="folder of the new bundle")
    parser.add_argument("--method", default="thresholdopt", choices=["thresholdopt", "equal-error"])
    parser.add_argument("--constraints", default="equalized_odds",
                        choices=["equalized_odds", "demographic_parity", "true_positive_rate_parity"],
                        help="ThresholdOptimizer's constraint (--method thresholdopt)")
    args = parser.parse_args(argv)
    fit = read_bundle(args.fit)
    target = read_bundle(args.apply)
    command = shlex.join(["python", "-m", "training.mitigate", *(sys.argv[1:] if argv is None else argv)])
    fitted_on = str(fit.metrics["dataset"])
    if args.method == "equal-error":
        threshold = fit_equal_error_threshold(fit.predictions)
        mitigated = apply_gender_threshold(target, threshold, fitted_on=fitted_on, command=command)
    else:
        optimizer = fit_gender_thresholds(fit.predictions, constraints=args.constraints)
        mitigated = apply_gender_thresholds(target, optimizer, fitted_on=fitted_on, command=command)
    write_bundle(mitigated, args.out)
    print(json.dumps({k: mitigated.metrics[k] for k in ("gender_accuracy", "race_accuracy", "age_mae")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
