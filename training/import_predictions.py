"""Audit a model from its predictions alone (an ONNX or cloud model, another tool): join them to a dataset.

    python -m training.import_predictions --dataset fairface-sample --predictions vendor.csv --out audits/vendor
    python -m training.import_predictions --manifest photos/manifest.csv --predictions api.parquet \\
        --labels label_map.json --name "Vendor API 2026-11" --out audits/vendor-api

The predictions file holds one row per image, named by `file` (as the manifest or label CSV writes it) or
`path`, and any of age, age_bin, gender, race and p_<head>_<label> probabilities; `--labels` maps the model's
own column and label names onto FaceAudit's (see core/imported.py). Images without a prediction go to the
bundle's rejects.csv; predictions naming no image of the dataset to its unmatched_predictions.csv. The bundle
opens in the dashboard like any other; explanations need the model itself and are not available for it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from core.bundle import write_bundle
from core.config import Settings, add_settings_arguments
from core.imported import UNMATCHED_FILE, LabelMap, import_predictions, read_predictions
from training._cli import command
from training.evaluate import add_dataset_arguments, dataset_from_args


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--predictions", required=True, help="CSV or parquet of per-image outputs")
    parser.add_argument("--labels", help="JSON label map: the model's column and label names onto FaceAudit's")
    parser.add_argument("--name", help="what the model is, in words (shown on every page and in reports)")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    add_settings_arguments(parser, "data")
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    dataset = dataset_from_args(args, settings)
    label_map = LabelMap.read(args.labels)
    predictions = read_predictions(args.predictions, label_map)
    command_line = shlex.join(["python", "-m", "training.import_predictions", *(sys.argv[1:] if argv is None else argv)])
    bundle, unmatched = import_predictions(dataset, predictions, source=Path(args.predictions).name, label_map=label_map,
                                           model_name=args.name, command=command_line)
    if dataset.root is not None and settings.data_dir is not None and dataset.root.is_relative_to(settings.data_dir):
        bundle.metrics["image_root_in_data"] = str(dataset.root.relative_to(settings.data_dir))
    folder = write_bundle(bundle, args.out)
    unmatched.to_csv(folder / UNMATCHED_FILE, index=False)
    print(json.dumps({k: v for k, v in bundle.metrics.items() if k != "groups"}, indent=2, default=str))
    for note in bundle.metrics["notes"]:
        print(f"note: {note}")
    print(f"wrote {folder}: {bundle.metrics['n']} faces, {bundle.metrics['n_rejected']} images rejected "
          f"(reasons in rejects.csv), {len(unmatched)} predictions unmatched ({UNMATCHED_FILE})")
    return 0 if bundle.metrics["n"] else 2


if __name__ == "__main__":
    sys.exit(main())
