"""Post-processing mitigation: per-race thresholds on the gender head, fitted on val, applied to test.

    python -m training.mitigate --fit models/default/audits/utkface-val \\
        --apply models/default/audits/utkface-test --out models/default/audits/utkface-test-thresholdopt

Writes a new bundle; the dashboard's Compare page shows what it bought and what it cost.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from core.bundle import read_bundle, write_bundle
from core.mitigation import apply_gender_thresholds, fit_gender_thresholds
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", required=True, help="bundle to fit thresholds on (validation split)")
    parser.add_argument("--apply", required=True, help="bundle to apply them to (test split)")
    parser.add_argument("--out", required=True, help="folder of the new bundle")
    parser.add_argument("--constraints", default="equalized_odds",
                        choices=["equalized_odds", "demographic_parity", "true_positive_rate_parity"])
    args = parser.parse_args(argv)
    fit = read_bundle(args.fit)
    optimizer = fit_gender_thresholds(fit.predictions, constraints=args.constraints)
    target = read_bundle(args.apply)
    command = shlex.join(["python", "-m", "training.mitigate", *(sys.argv[1:] if argv is None else argv)])
    mitigated = apply_gender_thresholds(target, optimizer, fitted_on=str(fit.metrics["dataset"]), command=command)
    write_bundle(mitigated, args.out)
    print(json.dumps({k: mitigated.metrics[k] for k in ("gender_accuracy", "race_accuracy", "age_mae")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
