"""Measure UTKFace's chip geometry: the mean 5-landmark positions over UTKFace train chips.

    python -m training.template [--n 3000]

Writes core/assets/utkface_template.json, which `core.faces.align_face` warps every face onto.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tqdm import tqdm

from core.config import SPLIT_FILE, Settings
from core.faces import CHIP_SIZE, TEMPLATE_FILE, FaceDetector
from core.images import load_image
from core.split import read_split
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data folder holding utkface/UTKFace")
    parser.add_argument("--n", type=int, default=3000, help="train chips to measure (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(TEMPLATE_FILE))
    args = parser.parse_args(argv)

    folder = Settings.from_env().with_overrides(data=args.data).dataset_dir("utkface", "UTKFace")
    split = read_split(SPLIT_FILE)
    files = split.loc[split["split"] == "train", "file"].sample(n=args.n, random_state=args.seed).sort_values()
    detector = FaceDetector()
    points, missed = [], 0
    for file in tqdm(files, desc="landmarks", unit="chip"):
        faces = detector.detect(load_image(folder / file))
        if faces and faces[0].score >= 0.8:
            points.append(faces[0].landmarks)
        else:
            missed += 1
    points = np.stack(points)  # (n, 5, 2)
    template = {
        "landmarks": points.mean(axis=0).astype(float).round(2).tolist(),
        "std_px": points.std(axis=0).astype(float).round(2).tolist(),
        "order": ["right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner"],
        "chip_size": CHIP_SIZE,
        "measured_on": f"{len(points)} UTKFace train chips (seed {args.seed}; {missed} without a confident face skipped)",
        "detector": "OpenCV YuNet 2023mar int8bq",
    }
    with open(args.out, "w") as handle:
        json.dump(template, handle, indent=2)
    print(json.dumps(template, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
