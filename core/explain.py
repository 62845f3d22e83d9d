"""Explanations of one head and class on an aligned face chip: Grad-CAM, Integrated Gradients, LIME.

One interface: `explain(model, chip, method=..., head=..., target=...)` returns an `Explanation`
with an attribution map the size of the chip and an overlay image. Targets:

| head | target |
|---|---|
| gender | a gender name (its probability) |
| race | a race name (its probability) |
| age | an age-bin name (the bin's probability) or "expected" (the predicted age in years: the mean of the age distribution, or its median for a checkpoint whose `age_estimate` is "median") |

Like `core.trainer.predict`, the explained function averages the chip with its mirror image
(`core.model.mirror_average`; `mirror=False` explains the bare chip), so an explained value is the
probability or age the dashboard shows for that face.

LIME uses SLIC superpixels (compact, roughly equal regions that follow face parts and skin/hair
edges better than a grid, and deterministic unlike the default quickshift seeding) and a seeded
sampler: same chip + settings + seed -> the same explanation.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from unittest import mock

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import labels
from core.errors import FaceAuditError
from core.heatmap import overlay
from core.memory import release_freed_memory
from core.model import MultiTaskNet, age_estimate, mirror_average

if TYPE_CHECKING:
    from core.onnx_model import CallableModel, OnnxModel
    from core.peer import PeerModel

    OtherModel = OnnxModel | CallableModel | PeerModel

__all__ = ["METHODS", "BASELINES", "Explanation", "ExplanationCache", "ExplainError", "valid_targets", "explain", "explain_outputs",
           "grad_cam", "stability"]

METHODS = ("gradcam", "integrated_gradients", "lime")
BASELINES = ("black", "blurred", "mean")


class ExplainError(FaceAuditError, ValueError):
    """A head, target, method or setting that does not exist; the message lists the valid ones."""


@dataclass
class Explanation:
    """An attribution map on the chip, with the settings that produced it.

    Attributes:
        attribution: `(H, W)` float map; positive = evidence for the target.
        overlay: `(H, W, 3)` uint8 chip with the positive attributions as a heat map.
        value: The target's value on the chip (a probability, or years for the predicted age).
        delta: Integrated Gradients' convergence delta (sum of attributions minus the output
            difference to the baseline); None for other methods.
    """

    method: str
    head: str
    target: str
    attribution: np.ndarray
    overlay: np.ndarray
    value: float
    seconds: float
    delta: float | None = None
    settings: dict = field(default_factory=dict)


def valid_targets(head: str) -> tuple[str, ...]:
    """Targets one can explain for `head`."""
    options = {"gender": labels.GENDERS, "race": labels.RACES, "age": ("expected", *labels.AGE_BINS)}
    if head not in options:
        raise ExplainError(f"unknown head {head!r}; valid: gender, race, age")
    return options[head]


class _Target(nn.Module):
    """The scalar a head/target pair explains, as a function of the normalised input: `(b, 3, S, S) -> (b,)`."""

    def __init__(self, model: MultiTaskNet, head: str, target: str, mirror: bool = True) -> None:
        super().__init__()
        if target not in valid_targets(head):
            raise ExplainError(f"unknown target {target!r} for head {head!r}; valid: {', '.join(valid_targets(head))}")
        self.model, self.head, self.target, self.mirror = model, head, target, mirror
        if head == "age" and target != "expected":
            self.indices = [age for age in range(labels.AGE_MIN, labels.AGE_MAX + 1) if labels.age_to_bin(age) == target]
        elif head != "age":
            self.index = valid_targets(head).index(target)

    def score(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """The explained scalar from the model's logits: `(b,)`."""
        probs = logits[self.head].float().softmax(dim=1)
        if self.head != "age":
            return probs[:, self.index]
        if self.target == "expected":  # the age the model predicts: its distribution's mean, or its median
            return age_estimate(probs, self.model.age_estimate)
        return probs[:, self.indices].sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return self.score(mirror_average(logits, self.model(x.flip(3))) if self.mirror else logits)


def grad_cam(model: MultiTaskNet, x: torch.Tensor, score: Callable[[dict[str, torch.Tensor]], torch.Tensor],
             mirror: bool = False) -> torch.Tensor:
    """Grad-CAM maps `(b, S, S)` of `score(logits) -> (b,)` on the backbone's last feature map.

    With `mirror`, the score is that of the mirror-averaged logits and the map is the mean of the
    chip's map and the mirror image's map flipped back.

    No hook is registered and nothing is left on the model: the feature map comes from timm's
    `forward_features`, the logits from `MultiTaskNet.from_features`, the gradient from
    `torch.autograd.grad`. One model can so serve every session and thread of the dashboard at once.

    Raises:
        ExplainError: the backbone has no spatial feature map (e.g. a vision transformer).
    """
    n = len(x)
    with torch.enable_grad():
        features = model.backbone.forward_features(torch.cat([x, x.flip(3)]) if mirror else x)
        if features.ndim != 4:
            raise ExplainError(f"Grad-CAM needs a convolutional backbone; {model.config.backbone}'s features have "
                               f"shape {tuple(features.shape)}")
        logits = model.from_features(features)
        if mirror:
            logits = mirror_average({k: v[:n] for k, v in logits.items()}, {k: v[n:] for k, v in logits.items()})
        (gradients,) = torch.autograd.grad(score(logits).sum(), features)
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # (b, C, 1, 1)
    cam = torch.relu((weights * features).sum(dim=1, keepdim=True)).detach()  # (b, 1, h, w), or (2b, …) mirrored
    if mirror:
        cam = (cam[:n] + cam[n:].flip(3)) / 2
    return F.interpolate(cam.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _normalized(model: MultiTaskNet, chip: np.ndarray) -> torch.Tensor:
    return model.normalize(torch.from_numpy(np.array(chip, dtype=np.uint8))[None])  # (1, 3, S, S)


def _baseline(model: MultiTaskNet, chip: np.ndarray, kind: str, mean_face: np.ndarray | None) -> torch.Tensor:
    if kind == "black":
        image = np.zeros_like(chip)
    elif kind == "blurred":
        image = cv2.GaussianBlur(chip, (0, 0), sigmaX=chip.shape[0] / 16)
    elif kind == "mean":
        if mean_face is None:
            raise ExplainError("baseline 'mean' needs a mean face image (core/assets/mean_face.png)")
        image = cv2.resize(mean_face, chip.shape[1::-1], interpolation=cv2.INTER_AREA)
    else:
        raise ExplainError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")
    return _normalized(model, image)


Progress = Callable[[float], None]  # called with the share done, 0-1, after each batch


def _gradcam(target: _Target, x: torch.Tensor) -> np.ndarray:
    return grad_cam(target.model, x, target.score, mirror=target.mirror)[0].numpy()


def _integrated_gradients(target: _Target, x: torch.Tensor, baseline: torch.Tensor, steps: int,
                          progress: Progress | None) -> tuple[np.ndarray, float]:
    from captum.attr import IntegratedGradients

    done = 0

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        nonlocal done
        values = target(inputs)
        done += len(inputs)
        if progress:
            progress(min(done / (steps + 2), 1.0))  # the steps, then the two end points for the delta
        return values

    attributions, delta = IntegratedGradients(forward).attribute(
        x, baselines=baseline, n_steps=steps, internal_batch_size=max(steps // 5, 1), return_convergence_delta=True)
    return attributions[0].sum(dim=0).detach().numpy(), float(delta.abs().max())  # (S, S)


def _data_labels(self, image: np.ndarray, fudged_image: np.ndarray, segments: np.ndarray,
                 classifier_fn: Callable[[np.ndarray], np.ndarray], num_samples: int, batch_size: int = 10):
    """lime 0.2.0.1's `LimeImageExplainer.data_labels` with the same random draws and images, built a batch at a time
    with array indexing instead of a Python loop over samples and superpixels (and without its progress bar):
    about 0.5 s less per 1,000 samples here."""
    n_features = np.unique(segments).shape[0]
    data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
    data[0, :] = 1
    labels = []
    for start in range(0, num_samples, batch_size):
        rows = data[start : start + batch_size]
        keep = np.ones((len(rows), int(segments.max()) + 1), dtype=bool)  # a superpixel switched off shows fudged
        keep[:, :n_features] = rows == 1
        images = np.where(keep[:, segments][..., None], image, fudged_image)
        labels.extend(classifier_fn(images))
    return data, np.array(labels)


def _lime(scores: Callable[[np.ndarray], np.ndarray], chip: np.ndarray, samples: int, segments: int, seed: int,
          progress: Progress | None) -> np.ndarray:
    """LIME's superpixel weights for `scores`: uint8 images `(b, S, S, 3)` -> the explained value `(b,)`."""
    from lime.lime_image import LimeImageExplainer
    from skimage.segmentation import slic

    done = 0

    def classifier(images: np.ndarray) -> np.ndarray:
        nonlocal done
        values = scores(images.astype(np.uint8))
        done += len(images)
        if progress:
            progress(min(done / samples, 1.0))
        return values[:, None]  # (b, 1): LIME regresses this one column

    explainer = LimeImageExplainer(random_state=seed)  # seeds the perturbation sampler, not only segmentation
    with mock.patch.object(LimeImageExplainer, "data_labels", _data_labels):
        explanation = explainer.explain_instance(
            chip, classifier, labels=(0,), top_labels=None, hide_color=None, num_samples=samples, batch_size=100,
            segmentation_fn=lambda image: slic(image, n_segments=segments, compactness=10, start_label=0),
            random_seed=seed)
    attribution = np.zeros(chip.shape[:2], dtype=np.float32)
    for segment, weight in explanation.local_exp[0]:
        attribution[explanation.segments == segment] = weight
    return attribution


def explain(model: MultiTaskNet, chip: np.ndarray, *, method: Literal["gradcam", "integrated_gradients", "lime"],
            head: str, target: str, baseline: str = "black", steps: int = 50, samples: int = 1000,
            segments: int = 50, seed: int = 0, mean_face: np.ndarray | None = None, mirror: bool = True,
            progress: Progress | None = None) -> Explanation:
    """Explain one head/target of `model` on an aligned uint8 `(S, S, 3)` chip.

    Args:
        model: A `MultiTaskNet` in eval mode (it is not modified).
        chip: Aligned face chip at the model's input size (other sizes are resized).
        method: "gradcam", "integrated_gradients" or "lime".
        head: "gender", "race" or "age".
        target: See the module table; `valid_targets(head)` lists them.
        baseline: IG baseline: "black", "blurred" or "mean" (needs `mean_face`).
        steps: IG integration steps.
        samples: LIME perturbations.
        segments: LIME superpixels (SLIC).
        seed: LIME seed.
        mirror: Explain the mirror-averaged prediction, as `core.trainer.predict` makes it (default).
        progress: Called with the share done after each batch of LIME samples or IG steps (it may
            raise to stop the work, e.g. Streamlit interrupting a rerun).

    Raises:
        ExplainError: an unknown method, head, target or baseline, naming the valid ones.
    """
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    size = model.config.input_size
    if chip.shape[:2] != (size, size):
        chip = cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)
    scalar = _Target(model, head, target, mirror).eval()
    started = time.perf_counter()
    x = _normalized(model, chip)
    with torch.inference_mode():
        value = float(scalar(x)[0])
    delta, settings = None, {}
    if method == "gradcam":
        attribution = _gradcam(scalar, x)
    elif method == "integrated_gradients":
        attribution, delta = _integrated_gradients(scalar, x, _baseline(model, chip, baseline, mean_face), steps, progress)
        settings = {"baseline": baseline, "steps": steps}
    else:
        def scores(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return scalar(model.normalize(torch.as_tensor(images))).float().numpy()
        attribution = _lime(scores, chip, samples, segments, seed, progress)
        settings = {"samples": samples, "segments": segments, "seed": seed}
    release_freed_memory()  # LIME and IG batches would otherwise stay in this thread's heap
    return Explanation(method=method, head=head, target=target, attribution=attribution.astype(np.float32),
                       overlay=overlay(chip, attribution), value=value, seconds=time.perf_counter() - started,
                       delta=delta, settings=settings)


def explain_outputs(model: OtherModel, chip: np.ndarray, *, head: str, target: str, samples: int = 1000,
                    segments: int = 50, seed: int = 0, mirror: bool = True, progress: Progress | None = None) -> Explanation:
    """LIME for any model that gives outputs (`model.predict(chips, tta=...)` as `core.trainer.predict`): an ONNX
    model, a user's function, the peer. Gradient methods need FaceAudit's own model (`explain`).

    The explained value is the probability of `target` (gender, race; an age bin from `age_bin`), or the predicted
    age for the age head's "expected".

    Raises:
        ExplainError: a head or target the model's outputs do not give.
    """
    if target not in valid_targets(head):
        raise ExplainError(f"unknown target {target!r} for head {head!r}; valid: {', '.join(valid_targets(head))}")
    needed = "age" if target == "expected" else "age_bin" if head == "age" else head
    probe = model.predict(np.zeros((1, model.size, model.size, 3), np.uint8), tta=False)
    if needed not in probe:
        raise ExplainError(f"{model.spec.get('name') or model.model_id} does not predict {head} "
                           f"({'an age' if needed == 'age' else needed + ' probabilities'}): nothing to explain")
    index = None if target == "expected" else labels.CLASSES[needed].index(target)  # age bins: in `age_bin`
    size = model.size
    if chip.shape[:2] != (size, size):
        chip = cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)
    started = time.perf_counter()

    def scores(images: np.ndarray) -> np.ndarray:
        outputs = model.predict(images, tta=mirror, batch_size=len(images))[needed]
        return outputs if index is None else outputs[:, index]

    value = float(scores(chip[None])[0])
    attribution = _lime(scores, chip, samples, segments, seed, progress)
    return Explanation(method="lime", head=head, target=target, attribution=attribution.astype(np.float32),
                       overlay=overlay(chip, attribution), value=value, seconds=time.perf_counter() - started,
                       delta=None, settings={"samples": samples, "segments": segments, "seed": seed})


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def stability(model: MultiTaskNet, chip: np.ndarray, *, method: Literal["integrated_gradients", "lime"], head: str,
              target: str, samples: int = 500, steps: int = 32, mean_face: np.ndarray | None = None,
              seeds: tuple[int, ...] = (0, 1, 2)) -> float:
    """Agreement of an explanation with itself under other seeds (LIME) or baselines (IG).

    Returns:
        Mean pairwise Pearson correlation of the maps, in [-1, 1]; below ~0.5 the map says more
        about the method's randomness or baseline than about the model.
    """
    if method == "lime":
        maps = [explain(model, chip, method="lime", head=head, target=target, samples=samples, seed=s).attribution
                for s in seeds]
    elif method == "integrated_gradients":
        kinds = [k for k in BASELINES if k != "mean" or mean_face is not None]
        maps = [explain(model, chip, method=method, head=head, target=target, baseline=k, steps=steps,
                        mean_face=mean_face).attribution for k in kinds]
    else:
        raise ExplainError(f"stability is defined for lime and integrated_gradients, not {method!r}")
    pairs = [_correlation(maps[i], maps[j]) for i in range(len(maps)) for j in range(i + 1, len(maps))]
    return float(np.mean(pairs))


def _explain_any(model: MultiTaskNet | OtherModel, chip: np.ndarray, **kwargs) -> Explanation:
    """`explain` for a FaceAudit model, `explain_outputs` (LIME only) for any other."""
    if isinstance(model, MultiTaskNet):
        return explain(model, chip, **kwargs)
    if kwargs.get("method") != "lime":
        raise ExplainError(f"{kwargs.get('method')} is not available for {model.model_id}: it needs the model's gradients")
    return explain_outputs(model, chip, **{k: v for k, v in kwargs.items()
                                           if k in ("head", "target", "samples", "segments", "seed", "mirror", "progress")})


class ExplanationCache:
    """Explanations by (chip hash, model id, method, head, target, settings); least recently used dropped.

    Safe to share between threads (the dashboard's sessions): the table is locked, the computing is not,
    so two sessions may compute the same explanation once each, never corrupt the table.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[tuple, Explanation] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    @staticmethod
    def _key(model_id: str, chip: np.ndarray, kwargs: dict) -> tuple:
        return (hashlib.sha1(np.ascontiguousarray(chip).tobytes()).hexdigest(), model_id,
                tuple(sorted((k, v) for k, v in kwargs.items() if k not in ("mean_face", "progress"))))

    def _stored(self, key: tuple) -> Explanation | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
            return self._entries.get(key)

    def peek(self, model_id: str, chip: np.ndarray, **kwargs) -> Explanation | None:
        """The stored explanation for these arguments, or None; never computes."""
        return self._stored(self._key(model_id, chip, kwargs))

    def get(self, model: MultiTaskNet | OtherModel, model_id: str, chip: np.ndarray, **kwargs) -> Explanation:
        """`explain(model, chip, **kwargs)` (LIME via `explain_outputs` for another model), computed once per key
        (`progress` is not part of the key)."""
        key = self._key(model_id, chip, kwargs)
        found = self._stored(key)
        if found is not None:
            return found
        result = _explain_any(model, chip, **kwargs)
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return result
