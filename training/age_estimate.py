"""Choose the age a checkpoint reports: the mean or the median of its predicted year distribution.

    python -m training.age_estimate --model models/default

Both are measured on UTKFace's validation split (exact ages; the test split is never used) and the one with the
lower mean absolute error is written into the checkpoint's config.json as `age_estimate`, with both errors. The
median is the estimate of least expected absolute error, and it always lies in the predicted age bin (the bin
holding the median); the mean does not. The weights do not change; the model id does, so audit again afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from core.bundle import checkpoint_id
from core.config import SPLIT_FILE, Settings, add_settings_arguments
from core.model import AGE_ESTIMATES, load_checkpoint
from core.trainer import predict
from training._cli import command
from training._data import CACHE_DIR, load_chips, split_tables


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser, "model", "data", "threads")
    parser.add_argument("--split-file", default=str(SPLIT_FILE), help="UTKFace split CSV (default: %(default)s)")
    parser.add_argument("--cache-dir", default=str(CACHE_DIR), help="aligned-chip cache (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings.from_args(args)
    checkpoint = load_checkpoint(settings.model_dir)
    val = split_tables(settings, Path(args.split_file))["val"]
    chips = load_chips(settings.dataset_dir("utkface", "UTKFace"), val["file"].tolist(),
                       checkpoint.model.config.input_size, Path(args.cache_dir))
    true_ages = val["age"].to_numpy(dtype=float)
    errors = {}
    for estimate in AGE_ESTIMATES:
        checkpoint.model.age_estimate = estimate
        errors[estimate] = float(np.abs(predict(checkpoint.model, chips)["age"] - true_ages).mean())
        print(f"{estimate}: age MAE {errors[estimate]:.4f} on {len(val):,} UTKFace validation faces")
    chosen = min(errors, key=errors.get)
    config_path = settings.model_dir / "config.json"
    meta = json.loads(config_path.read_text())
    old_id = checkpoint.model_id
    meta["age_estimate"] = chosen
    meta["age_estimate_chosen_on"] = {"split": "UTKFace val", "faces": len(val),
                                      "age_mae": {name: round(value, 4) for name, value in errors.items()}}
    config_path.write_text(json.dumps(meta, indent=2))
    print(f"age_estimate {chosen!r} written to {config_path}; model id {old_id} -> {checkpoint_id(meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
