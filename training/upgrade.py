"""Bring a bundle written by an older FaceAudit up to today's fields, without the model that made it.

    python -m training.upgrade --bundle models/default/audits/utkface-only/utkface-test-balanced --input aligned-chips \\
        --trained-on "UTKFace train split, --balance group"

What can be re-derived is: the age bin (today's median rule, from the stored bin probabilities), the
metrics and the multi-face cohort. What cannot is said so: such bundles chose the largest face, and
their command was not recorded. Re-run `training.evaluate` instead whenever the model is at hand.
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from core import labels
from core.audit import INPUT_KINDS
from core.bundle import PROVENANCE_KEYS, Bundle, compute_metrics, read_bundle, write_bundle
from training._cli import command


def upgrade_bundle(bundle: Bundle, *, input_kind: str, trained_on: str | None = None) -> Bundle:
    """A copy of an older bundle with today's derived columns and its unknown provenance stated as unknown."""
    frame = bundle.predictions.copy()
    probs = frame[[f"p_age_bin_{name}" for name in labels.AGE_BINS]].to_numpy()
    frame["pred_age_bin"] = pd.Categorical.from_codes(labels.median_bin_index(probs), categories=list(labels.AGE_BINS),
                                                      ordered=True)
    frame["multi_face"] = frame["n_faces"] > 1
    old = bundle.metrics
    metrics = compute_metrics(frame, old["n_images"]) | {
        key: old[key] for key in (*PROVENANCE_KEYS, "mitigation", "fitted_on", "image_root_in_data") if key in old}
    metrics.setdefault("model", {"id": old.get("model_id"), "backbone": old.get("model_backbone"),
                                 "trained_on": trained_on})
    metrics.update({"input_kind": input_kind, "face_rule": old.get("face_rule") or "largest",
                    "multi_face_images": int(frame["multi_face"].sum()),
                    "command": old.get("command") or "not recorded (bundle made before FaceAudit recorded commands)",
                    "upgraded": f"{time.strftime('%Y-%m-%d')}: age bins re-derived by the median rule from the stored "
                                "probabilities; metrics recomputed; detection details were not recorded"})
    return Bundle(predictions=frame, metrics=metrics, rejects=bundle.rejects)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, upgraded in place")
    parser.add_argument("--input", required=True, choices=INPUT_KINDS, help="what the bundle's images were")
    parser.add_argument("--trained-on", default=None, help="the training data of the model that made it, if known")
    args = parser.parse_args(argv)
    bundle = read_bundle(args.bundle)
    write_bundle(upgrade_bundle(bundle, input_kind=args.input, trained_on=args.trained_on), args.bundle)
    print(f"upgraded {args.bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
