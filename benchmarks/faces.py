"""Face detection and alignment on the real data: detection rates, alignment error, time per photo.

    python -m benchmarks.faces [--data DIR] [--limit N]

Prints one table. Detection rate = share of images with at least one face. Alignment error:
mean distance (px, in a 200 px chip) between each UTKFace chip's landmarks and the template
before alignment ("as cropped") and after re-aligning the chip and detecting again ("re-aligned").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np
from tqdm import tqdm

from core.config import SPLIT_FILE, Settings
from core.datasets import read_fairface, read_london_set
from core.faces import FaceDetector, align_face, find_faces, load_template
from core.images import load_image
from core.split import read_split


def _rate(paths: list[str], detector: FaceDetector, desc: str) -> tuple[float, list[float]]:
    found, seconds = 0, []
    for path in tqdm(paths, desc=desc, unit="img", mininterval=2):
        start = time.perf_counter()
        result = find_faces(path, detector)
        seconds.append(time.perf_counter() - start)
        found += bool(result.faces)
    return found / len(paths), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--limit", type=int, default=0, help="use at most N UTKFace test chips (0: all)")
    args = parser.parse_args()
    settings = Settings.from_env().with_overrides(data=args.data)
    detector, template = FaceDetector(), load_template()

    split = read_split(SPLIT_FILE)
    test_files = split.loc[split["split"] == "test", "file"].tolist()
    if args.limit:
        test_files = test_files[: args.limit]
    utk_dir = settings.dataset_dir("utkface", "UTKFace")
    before, after, utk_found = [], [], 0
    for file in tqdm(test_files, desc="utkface test", unit="img", mininterval=2):
        chip = load_image(utk_dir / file)
        faces = detector.detect(chip)
        if not faces:
            continue
        utk_found += 1
        before.append(np.linalg.norm(faces[0].landmarks - template, axis=1).mean())
        again = detector.detect(align_face(chip, faces[0].landmarks))
        if again:
            after.append(np.linalg.norm(again[0].landmarks - template, axis=1).mean())

    fairface = read_fairface(settings.dataset_dir("fairface_sample", "labels.csv"))
    london = read_london_set(settings.dataset_dir("london_set"))
    ff_rate, ff_seconds = _rate(fairface.table["path"].tolist(), detector, "fairface_sample")
    ld_rate, ld_seconds = _rate(london.table["path"].tolist(), detector, "london_set")

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {cv2.getNumThreads()} OpenCV threads")
    print(f"{'set':<34}{'images':>8}{'faces found':>13}{'median ms/photo':>17}")
    print(f"{'utkface test chips (200 px)':<34}{len(test_files):>8}{utk_found / len(test_files):>12.2%}{'':>17}")
    print(f"{'fairface_sample (448 px, pad 1.25)':<34}{len(ff_seconds):>8}{ff_rate:>12.2%}{statistics.median(ff_seconds) * 1e3:>17.1f}")
    print(f"{'london_set (600 px)':<34}{len(ld_seconds):>8}{ld_rate:>12.2%}{statistics.median(ld_seconds) * 1e3:>17.1f}")
    print(f"\nlandmark distance to template, px in a 200 px chip (mean / median over {len(after)} chips):")
    print(f"  as cropped by UTKFace : {np.mean(before):.2f} / {np.median(before):.2f}")
    print(f"  re-aligned by FaceAudit: {np.mean(after):.2f} / {np.median(after):.2f}")


if __name__ == "__main__":
    main()
