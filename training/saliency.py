"""Per-group saliency for an audit bundle: mean Grad-CAM maps per cohort, saved into the bundle.

    python -m training.saliency --bundle models/default/audits/utkface-test

Cohorts: every race x gender cell and every age bin; heads: gender and race (each face explains
its true class). Writes <bundle>/saliency.npz, which the dashboard's Saliency page shows. The maps
are computed with the model that made the bundle (found by its weights id), on the faces it chose,
read as the bundle says its images are (photos or aligned chips).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.bundle import bundle_model_dir, read_bundle, resolve_image
from core.chips import chips_from_photos, chips_from_utkface
from core.config import Settings, add_settings_arguments
from core.model import load_checkpoint
from core.saliency import SALIENCY_FILE, cohort_saliency, save_saliency
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="audit bundle folder")
    parser.add_argument("--max-per-cohort", type=int, default=150)
    add_settings_arguments(parser, "model", "data", "threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings.from_args(args)
    bundle = read_bundle(args.bundle)
    model_dir = bundle_model_dir(bundle.metrics, settings.model_dir)
    if model_dir is None:
        print(f"error: the model that made this bundle ({bundle.metrics.get('model_id')}) is not on this machine; "
              "pass its folder with --model", file=sys.stderr)
        return 2
    checkpoint = load_checkpoint(model_dir)
    frame, size = bundle.predictions, checkpoint.model.config.input_size
    paths = [resolve_image(row, bundle.metrics, settings.data_dir) for _, row in frame.iterrows()]
    missing = sum(path is None for path in paths)
    if missing:
        print(f"error: {missing} images of the bundle are not on this machine (set FACEAUDIT_DATA)", file=sys.stderr)
        return 2
    align = chips_from_utkface if bundle.metrics.get("input_kind") == "aligned-chips" else chips_from_photos
    batch = align([str(p) for p in paths], size=size, face_rule=bundle.metrics.get("face_rule") or "largest",
                  progress=lambda it: tqdm(it, total=len(paths), desc="aligning", unit="img"))
    ok = np.array([error == "" for error in batch.errors], dtype=bool)
    chips, frame = batch.chips[ok], frame[ok].reset_index(drop=True)
    if (~ok).any():
        print(f"{int((~ok).sum())} of {len(paths)} images gave no face this time and are left out of the maps")
    maps = cohort_saliency(checkpoint.model, np.asarray(chips), frame, max_per_cohort=args.max_per_cohort,
                           progress=lambda jobs: tqdm(jobs, desc="cohorts", unit="cohort"))
    save_saliency(maps, Path(args.bundle) / SALIENCY_FILE)
    print(f"wrote {Path(args.bundle) / SALIENCY_FILE}: {len(maps) // 2} maps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
