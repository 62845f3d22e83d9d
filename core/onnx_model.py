"""Other people's face-attribute models: ONNX files run with onnxruntime (FaceAudit's own exports too), and a
user's own Python function (`CallableModel`).

An ONNX model comes with a spec, `<file>.json` beside it, saying what it takes and what it gives:

    {"format": "faceaudit-onnx/1",
     "input": {"size": 128, "dtype": "uint8", "layout": "NHWC"},      # or "float32", "NCHW" with "mean" and "std"
     "outputs": {"age": "years-logits", "gender": ["Male", "Female"], "race": ["White", "Black", "Asian", "Indian", "Others"]},
     "geometry": "faceaudit-aligned", "model_id": "...", "name": "..."}       # or "crop", with "margin": 0.25

`outputs` says what each head's graph output is (the output of the same name, or the one `output_names`
gives): `age` as logits over whole years 0-116 ("years-logits", whose mean is the age, or their median with
`"age_estimate": "median"`) or one value in years ("years"); `gender`
and `race` as logits in the listed label order (any names that `core.labels` parses, FairFace's seven
races included: their probabilities are summed onto FaceAudit's five and, when the list is FairFace's races,
also kept as the seven-class `race7` head). A gender list of one label, `["Female"]`, is one sigmoid logit of
that gender. A head the spec leaves out is not predicted. `OnnxModel.predict` returns what
`core.trainer.predict` returns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from core import labels
from core.errors import FaceAuditError
from core.model import AGE_ESTIMATES, age_summary, file_sha256, mirror_average, race7_to_race

__all__ = ["SPEC_FORMAT", "OnnxModelError", "OnnxModel", "CallableModel", "spec_path"]

SPEC_FORMAT = "faceaudit-onnx/1"
AGE_KINDS = ("years-logits", "years")
# what the model was trained on: FaceAudit's aligned chips, or a plain square crop around the detected face box
# with "margin" x its side added on every side (`core.faces.crop_face`)
GEOMETRIES = ("faceaudit-aligned", "crop")


class OnnxModelError(FaceAuditError, RuntimeError):
    """An ONNX model or its spec that cannot be used (missing, unreadable, or not matching each other)."""


def spec_path(model_path: str | Path) -> Path:
    return Path(f"{model_path}.json")


class OnnxModel:
    """An ONNX face-attribute model and its spec, run on the CPU by onnxruntime on `threads` threads (by default
    torch's, the process's one thread setting: a Ray actor's share of the cores, `--threads` elsewhere)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise OnnxModelError("ONNX models need onnxruntime: pip install onnxruntime") from None
        self.path = Path(path)
        for file in (self.path, spec_path(self.path)):
            if not file.is_file():
                raise OnnxModelError(f"{file} is missing (an ONNX model needs its spec, <model>.onnx.json, beside it)")
        try:
            self.spec = json.loads(spec_path(self.path).read_text())
        except (OSError, ValueError) as error:
            raise OnnxModelError(f"cannot read {spec_path(self.path)}: {error}") from None
        if not isinstance(self.spec, dict) or self.spec.get("format") != SPEC_FORMAT:
            raise OnnxModelError(f"{spec_path(self.path)}: expected a JSON object with \"format\": \"{SPEC_FORMAT}\"")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
            raise OnnxModelError(f"{self.path} is not a usable ONNX model: {error}") from None
        self._check()

    def __reduce__(self) -> tuple:  # an onnxruntime session cannot be pickled: a Ray worker opens the file again,
        return OnnxModel, (self.path,)  # on its own thread setting (its share of the cores)

    def _check(self) -> None:
        given = self.spec.get("input", {})
        self.size = int(given.get("size", 0))
        self.dtype, self.layout = given.get("dtype", "float32"), given.get("layout", "NCHW")
        if self.size <= 0 or self.dtype not in ("uint8", "float32") or self.layout not in ("NHWC", "NCHW"):
            raise OnnxModelError(f"{spec_path(self.path)}: input needs size > 0, dtype uint8|float32, layout NHWC|NCHW")
        geometry = self.spec.get("geometry", "faceaudit-aligned")
        if geometry not in GEOMETRIES:
            raise OnnxModelError(f"{spec_path(self.path)}: geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
        self.margin = float(self.spec.get("margin", 0.25)) if geometry == "crop" else None
        self.mean = self.std = None  # a float32 input's normalisation, read from the spec once
        if self.dtype == "float32":
            if not ({"mean", "std"} <= set(given)):
                raise OnnxModelError(f"{spec_path(self.path)}: a float32 input needs its \"mean\" and \"std\"")
            mean, std = _channel_values(given["mean"]), _channel_values(given["std"])
            if not (mean and std and min(std) > 0):
                raise OnnxModelError(f"{spec_path(self.path)}: input \"mean\" and \"std\" need one number per "
                                     f"channel (3, or 1 for all), std above 0; got mean {given['mean']!r}, std "
                                     f"{given['std']!r}")
            self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        outputs = {output.name for output in self.session.get_outputs()}
        self.heads: dict[str, object] = dict(self.spec.get("outputs", {}))
        unknown = [name for name in self.heads if name not in ("age", "gender", "race")]
        absent = [name for name in self.heads if self.spec.get("output_names", {}).get(name, name) not in outputs]
        if unknown or absent or not self.heads:
            raise OnnxModelError(f"{spec_path(self.path)}: outputs must map age, gender or race onto the graph's outputs "
                                 f"({', '.join(sorted(outputs))}); unknown {unknown}, not in the graph {absent}")
        if "age" in self.heads and self.heads["age"] not in AGE_KINDS:
            raise OnnxModelError(f"{spec_path(self.path)}: age must be one of {', '.join(AGE_KINDS)}")
        self.age_estimate = self.spec.get("age_estimate", "mean")  # of "years-logits": their mean, or their median
        if self.age_estimate not in AGE_ESTIMATES:
            raise OnnxModelError(f"{spec_path(self.path)}: age_estimate must be one of {', '.join(AGE_ESTIMATES)}")
        self.maps = {}  # head -> (their classes, ours) matrix summing their logits' probabilities onto our classes
        self.sigmoid = "gender" in self.heads and len(self.heads["gender"]) == 1  # one logit: the listed gender's
        for head, parse in (("gender", labels.parse_gender), ("race", labels.parse_race)):
            if head in self.heads:
                try:
                    ours = [labels.CLASSES[head].index(parse(name)) for name in self.heads[head]]
                except labels.LabelError as error:
                    raise OnnxModelError(f"{spec_path(self.path)}: {error}") from None
                if head == "gender" and self.sigmoid:  # as the logits [0, x] of [the other gender, the listed one]
                    ours = [1 - ours[0], ours[0]]
                if len(set(ours)) < 2:
                    raise OnnxModelError(f"{spec_path(self.path)}: {head} lists {self.heads[head]}, which name one "
                                         f"{head} class: a class head needs at least two (gender: one label names a "
                                         "single sigmoid logit of that gender)")
                self.maps[head] = np.eye(len(labels.CLASSES[head]), dtype=np.float32)[ours]
        seven = labels.race7_labels(self.heads["race"]) if "race" in self.heads else None
        if seven is not None:  # FairFace's seven races: kept as the `race7` head beside their five-class sum
            self.maps["race7"] = np.eye(len(labels.FAIRFACE_RACES), dtype=np.float32)[
                [labels.FAIRFACE_RACES.index(name) for name in seven]]

    @property
    def model_id(self) -> str:
        return self.spec.get("model_id") or f"onnx-{file_sha256(self.path)[:12]}"

    def _inputs(self, chips: np.ndarray) -> np.ndarray:
        if chips.shape[1:3] != (self.size, self.size):
            raise OnnxModelError(f"{self.path.name} takes {self.size} px chips, got {chips.shape[1]}×{chips.shape[2]}")
        x = chips if self.mean is None else (chips.astype(np.float32) / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x)

    def logits(self, chips: np.ndarray) -> dict[str, torch.Tensor]:
        """The graph's outputs for uint8 `(n, S, S, 3)` chips by head: age as the spec says, gender and race as
        log-probabilities over FaceAudit's classes, and `race7` over FairFace's seven where the spec's races are them."""
        names = {head: self.spec.get("output_names", {}).get(head, head) for head in self.heads}
        values = self.session.run(list(names.values()), {self.session.get_inputs()[0].name: self._inputs(chips)})
        out = {}
        for head, value in zip(names, values):
            value = torch.from_numpy(np.asarray(value, np.float32))
            _refuse_nonfinite(f"{self.path.name}: output {names[head]!r}", value.numpy())
            if head == "gender" and self.sigmoid and value.numel() == len(chips):  # P = sigmoid(x) = softmax([0, x])
                value = torch.cat([torch.zeros(len(chips), 1), value.reshape(len(chips), 1)], dim=1)
            if head in self.maps:  # their classes' probabilities summed onto ours
                if value.ndim != 2 or value.shape[1] != len(self.maps[head]):
                    raise OnnxModelError(f"{self.path.name}: output {names[head]!r} has shape {tuple(value.shape)}, but the "
                                         f"spec lists {len(self.maps[head])} {head} labels")
                onto = [head, "race7"] if head == "race" and "race7" in self.maps else [head]
                out |= {ours: (value.softmax(1) @ torch.from_numpy(self.maps[ours])).clamp_min(1e-12).log() for ours in onto}
            else:
                out[head] = value.reshape(len(chips)) if head == "age" and self.heads["age"] == "years" else value
        return out

    def predict(self, chips: np.ndarray, *, batch_size: int = 64, tta: bool = True,
                progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, np.ndarray]:
        """What `core.trainer.predict` returns, for the heads the spec names (others are left out); with `tta`, each
        chip and its mirror image are averaged as `core.model.mirror_average` does."""
        chips = np.asarray(chips, np.uint8)
        parts: dict[str, list[np.ndarray]] = {}
        starts = range(0, len(chips), batch_size)
        for start in progress(starts) if progress else starts:
            batch = chips[start : start + batch_size]
            n = len(batch)
            both = self.logits(np.concatenate([batch, batch[:, :, ::-1]]) if tta else batch)
            years = both.pop("age") if self.heads.get("age") == "years" else None
            outputs = mirror_average({h: v[:n] for h, v in both.items()}, {h: v[n:] for h, v in both.items()}) if tta else both
            result = {head: outputs[head].softmax(1) for head in ("gender", "race", "race7") if head in outputs}
            if "age" in outputs:
                result |= age_summary(outputs["age"], self.age_estimate)
            elif years is not None:
                result["age"] = (years[:n] + years[n:]) / 2 if tta else years
            for name, value in result.items():
                parts.setdefault(name, []).append(value.float().numpy())
        return {name: np.concatenate(values) for name, values in parts.items()}


def _channel_values(given: object) -> list[float]:
    """A spec's per-channel numbers (3, or 1 for all channels), or [] when they are not that."""
    values = given if isinstance(given, list) else [given]
    ok = len(values) in (1, 3) and all(isinstance(v, int | float) and np.isfinite(v) for v in values)
    return [float(v) for v in values] if ok else []


def _refuse_nonfinite(what: str, value: np.ndarray) -> None:
    if bad := int((~np.isfinite(value)).sum()):
        raise OnnxModelError(f"{what} with {bad} of {value.size} values NaN or infinite; FaceAudit audits a value "
                             "for every face")


class CallableModel:
    """A user's own Python function as a model: `function(chips) -> outputs`, uint8 `(n, S, S, 3)` FaceAudit-aligned
    chips in, any of `core.trainer.predict`'s outputs out (`age`, `age_std` (n,); `gender` (n, 2), `race` (n, 5),
    `age_bin` (n, 9), `race7` (n, 7) probabilities in FaceAudit's class order; without `race`, the five are summed
    from `race7`). Importing it runs the user's code."""

    def __init__(self, target: str, size: int) -> None:
        import importlib

        module_name, _, function_name = target.partition(":")
        if not module_name or not function_name:
            raise OnnxModelError(f"--predictor takes module:function (e.g. my_models.vendor:predict), got {target!r}")
        try:
            self.function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            raise OnnxModelError(f"cannot load {target}: {error}") from None
        self.size, self.target = size, target
        self.spec = {"name": target, "model_id": f"python-{target}"}

    def __reduce__(self) -> tuple:  # a Ray worker imports the function again
        return CallableModel, (self.target, self.size)

    @property
    def top_module(self) -> ModuleType:
        """The top-level module or package the function was imported from (what a Ray worker must import)."""
        return sys.modules[self.target.partition(":")[0].partition(".")[0]]

    @property
    def model_id(self) -> str:
        return self.spec["model_id"]

    def predict(self, chips: np.ndarray, *, batch_size: int = 64, tta: bool = True,
                progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, np.ndarray]:
        """The function's outputs, batch by batch, checked for shape (`tta` is the function's business)."""
        expected = {"age": (), "age_std": (), **{head: (len(names),) for head, names in labels.HEAD_CLASSES.items()}}
        parts: dict[str, list[np.ndarray]] = {}
        starts = range(0, len(chips), batch_size)
        for start in progress(starts) if progress else starts:
            batch = np.asarray(chips[start : start + batch_size], np.uint8)
            outputs = self.function(batch)
            for name, value in dict(outputs).items():
                value = np.asarray(value, np.float32)
                if name not in expected or value.shape != (len(batch), *expected[name]):
                    raise OnnxModelError(f"{self.target} returned {name!r} with shape {value.shape}; expected one of "
                                         f"{', '.join(f'{k} {(len(batch), *v)}' for k, v in expected.items())}")
                self._check_values(name, value)
                parts.setdefault(name, []).append(value)
        result = {name: np.concatenate(values) for name, values in parts.items()}
        if "race7" in result and "race" not in result:
            result["race"] = race7_to_race(torch.from_numpy(result["race7"]).log()).exp().numpy()
        return result

    def _check_values(self, name: str, value: np.ndarray) -> None:
        """Refuse what would be audited as something else: NaN or infinite values, and class scores that are not
        probabilities (logits, say, whose negative values would be written as probabilities)."""
        _refuse_nonfinite(f"{self.target} returned {name!r}", value)
        if name in labels.HEAD_CLASSES and len(value):
            sums = value.sum(1)
            if value.min() < -1e-6 or np.abs(sums - 1).max() > 1e-3:
                raise OnnxModelError(f"{self.target} returned {name!r} scores that are not probabilities (values "
                                     f"{value.min():.3g} to {value.max():.3g}, rows summing to {sums.min():.3g} to "
                                     f"{sums.max():.3g}); give softmax probabilities in FaceAudit's class order")
