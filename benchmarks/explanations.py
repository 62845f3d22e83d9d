"""Explanation speed on this machine with the shipped model: Grad-CAM, IG (50 steps), LIME (1,000 samples).

    python -m benchmarks.explanations [--model models/default] [--repeats 5]

Median seconds per explanation of the gender head on the aligned chips of the sample photos,
plus IG's convergence delta and the stability scores of LIME (3 seeds) and IG (3 baselines).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import numpy as np
import torch
from PIL import Image

from core.chips import faces_for_model
from core.config import REPO_ROOT, Settings, add_settings_arguments
from core.explain import explain, stability
from core.faces import FaceDetector
from core.model import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    add_settings_arguments(parser, "model", "threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(Settings.from_args(args).model_dir)
    model, size = checkpoint.model, checkpoint.model.config.input_size
    detector = FaceDetector()
    chips = [faces_for_model(path, size, detector).chips[0] for path in sorted((REPO_ROOT / "samples").glob("*.jpg"))]
    mean_face = np.asarray(Image.open(REPO_ROOT / "core" / "assets" / "mean_face.png").convert("RGB"))
    settings = {"Grad-CAM": {"method": "gradcam"},
                "Integrated Gradients, 50 steps": {"method": "integrated_gradients", "steps": 50},
                "LIME, 1,000 samples": {"method": "lime", "samples": 1000}}
    print(f"model {model.config.backbone} at {size} px; {len(chips)} sample chips x {args.repeats} repeats")
    for name, kwargs in settings.items():
        explain(model, chips[0], head="gender", target="Female", **kwargs)  # warm-up
        runs = [explain(model, chip, head="gender", target="Female", **kwargs) for chip in chips for _ in range(args.repeats)]
        extra = f", IG delta median {statistics.median(r.delta for r in runs):.4f}" if runs[0].delta is not None else ""
        print(f"{name:<32} median {statistics.median(r.seconds for r in runs):6.3f} s (n={len(runs)}){extra}")
    for method in ("lime", "integrated_gradients"):
        scores = [stability(model, chip, method=method, head="gender", target="Female", mean_face=mean_face) for chip in chips]
        print(f"stability of {method}: " + ", ".join(f"{s:.2f}" for s in scores))
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, {torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main()
