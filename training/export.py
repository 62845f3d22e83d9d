"""Export a FaceAudit checkpoint to ONNX, with the spec `core.onnx_model` reads, and check the two agree.

    python -m training.export --model models/default --out runs/onnx/model.onnx
    python -m training.evaluate --onnx runs/onnx/model.onnx --dataset fairface-sample --out audits/ff-onnx

The graph takes uint8 chips `(n, S, S, 3)` (normalisation inside) and gives the three heads' logits (a seven-class
race head's seven FairFace classes, temperatures included; audits through it get their five-class sum); the spec
(`model.onnx.json`) records input, outputs, labels and the checkpoint's model id, so bundles made through
onnxruntime are tied to the same model. After export the ONNX model and the checkpoint predict 64 random
chips; the largest difference of any probability or age is printed and must stay under 1e-3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core import labels
from core.config import Settings, add_settings_arguments
from core.errors import FaceAuditError
from core.model import MultiTaskNet, load_checkpoint
from core.onnx_model import SPEC_FORMAT, OnnxModel, spec_path
from core.trainer import predict
from training._cli import command

TOLERANCE = 1e-3


class _Exported(nn.Module):
    """uint8 NHWC chips -> logits by head, normalisation inside (as `MultiTaskNet.normalize` at the input size)."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(model.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(model.std).view(1, 3, 1, 1))

    def forward(self, chips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (chips.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        out = self.model(x)
        return out["age"], out["gender"], out.get("race7", out["race"])  # a seven-class head's own classes


def largest_difference(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> float:
    """Largest absolute difference over the outputs both give (an ONNX model gives no `race7`: see the spec)."""
    return max(float(np.abs(first[name] - second[name]).max()) for name in first.keys() & second.keys())


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the .onnx file to write (its spec goes beside it)")
    add_settings_arguments(parser, "model")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(Settings.from_args(args).model_dir)
    model, size = checkpoint.model.eval(), checkpoint.model.config.input_size
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    torch.onnx.export(_Exported(model).eval(), (example,), str(out), input_names=["chips"], output_names=["age", "gender", "race"],
                      dynamic_shapes={"chips": {0: torch.export.Dim("n")}}, opset_version=18, dynamo=True,
                      external_data=False, verbose=False)
    spec = {"format": SPEC_FORMAT, "input": {"size": size, "dtype": "uint8", "layout": "NHWC"},
            "outputs": {"age": "years-logits", "gender": list(labels.GENDERS), "race": list(labels.FAIRFACE_RACES if model.config.race7 else labels.RACES)},
            "age_estimate": model.age_estimate, "geometry": "faceaudit-aligned", "model_id": checkpoint.model_id,
            "name": f"FaceAudit {model.config.backbone} {size} px (ONNX export of {checkpoint.model_id})",
            "checkpoint": checkpoint.meta}
    spec_path(out).write_text(json.dumps(spec, indent=2))
    chips = np.random.default_rng(0).integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    difference = largest_difference(predict(model, chips), OnnxModel(out).predict(chips))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {spec_path(out).name}; largest difference from the "
          f"checkpoint over 64 chips: {difference:.2e}")
    if difference > TOLERANCE:
        raise FaceAuditError(f"the ONNX model differs from the checkpoint by {difference:.2e} (> {TOLERANCE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
