"""The shipped model through torch and through onnxruntime, on the same chips, in one run (CPU).

    python -m training.export --out runs/onnx/model.onnx      # once
    python -m benchmarks.onnx --onnx runs/onnx/model.onnx [--model models/default]

Prints batch inference (batch 64, with and without flip TTA; median of 5 passes over 512 chips), the largest
difference of any probability or age between the two, and LIME with 1,000 samples on one chip (median of 3,
mirror-averaged as the dashboard explains, and without mirroring). Chips: aligned UTKFace test chips when
the data is here, else random ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from core.chips import faces_for_model
from core.config import REPO_ROOT, SPLIT_FILE, Settings, add_settings_arguments
from core.explain import explain, explain_outputs
from core.model import load_checkpoint
from core.onnx_model import OnnxModel
from core.trainer import predict
from training.export import largest_difference


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _chips(settings: Settings, size: int, n: int) -> tuple[np.ndarray, str]:
    try:
        from training._data import load_chips, split_tables

        test = split_tables(settings, SPLIT_FILE)["test"].head(n)
        return load_chips(settings.dataset_dir("utkface", "UTKFace"), test["file"].tolist(), size).numpy(), "UTKFace test chips"
    except (OSError, SystemExit, ValueError):
        return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8), "random chips"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, help="the export of --model (python -m training.export)")
    add_settings_arguments(parser, "model", "data", "threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = Settings.from_args(args)
    checkpoint, onnx = load_checkpoint(settings.model_dir), OnnxModel(args.onnx, threads=args.threads)
    size = checkpoint.model.config.input_size
    chips, kind = _chips(settings, size, 512)
    print(f"{len(chips)} {kind} at {size} px; torch {torch.__version__} ({args.threads} threads), onnxruntime")
    difference = largest_difference(predict(checkpoint.model, chips), onnx.predict(chips))
    print(f"largest difference of any probability or age (years): {difference:.2e}")
    for tta in (False, True):
        torch_s = _median_seconds(lambda t=tta: predict(checkpoint.model, chips, tta=t), 5)
        onnx_s = _median_seconds(lambda t=tta: onnx.predict(chips, tta=t), 5)
        print(f"batch inference, {'flip TTA' if tta else 'no TTA'}: torch {len(chips) / torch_s:6.1f} img/s, "
              f"onnxruntime {len(chips) / onnx_s:6.1f} img/s ({torch_s / onnx_s:.2f}x)")
    chip = faces_for_model(str(REPO_ROOT / "samples" / "004_03.jpg"), size).chips[0]
    for mirror in (True, False):
        runs = {"torch": lambda m=mirror: explain(checkpoint.model, chip, method="lime", head="gender", target="Male",
                                                  samples=1000, mirror=m),
                "onnxruntime": lambda m=mirror: explain_outputs(onnx, chip, head="gender", target="Male", samples=1000,
                                                             mirror=m)}
        seconds = {name: _median_seconds(run, 3) for name, run in runs.items()}
        maps = {name: run().attribution.ravel() for name, run in runs.items()}
        agreement = np.corrcoef(maps["torch"], maps["onnxruntime"])[0, 1]
        print(f"LIME 1,000 samples{', mirror-averaged' if mirror else ', no mirror'}: torch {seconds['torch']:.2f} s, "
              f"onnxruntime {seconds['onnxruntime']:.2f} s; maps correlate {agreement:.4f}")
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
