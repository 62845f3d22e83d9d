"""Misclassified faces for the error gallery: filter, rank and describe."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core import labels
from core.images import load_image

__all__ = ["HEADS", "mistakes", "face_thumbnail"]

HEADS = ("gender", "race", "age_bin", "age")


def mistakes(frame: pd.DataFrame, head: Literal["gender", "race", "age_bin", "age"], *,
             true_values: list[str] | None = None, predicted_values: list[str] | None = None,
             min_age_error: float = 0.0, confidence: tuple[float, float] = (0.0, 1.0),
             sort: Literal["most confident", "largest age error", "file"] = "most confident") -> pd.DataFrame:
    """Rows the model got wrong for `head`, with `confidence` and `age_error` columns added.

    For `head="age"` a mistake is an absolute error of at least `min_age_error` years (default
    5 when left at 0); confidence is then the inverse of the predicted spread (1 / (1 + std)).
    High-confidence mistakes are often label noise worth a look.

    Raises:
        ValueError: `head` is not one of `HEADS`.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    frame = frame.assign(age_error=(frame["pred_age"] - frame["age"].astype("float64")).abs())
    if head == "age":
        threshold = min_age_error or 5.0
        wrong = frame[frame["age_error"] >= threshold].assign(confidence=1.0 / (1.0 + frame["pred_age_std"]))
    else:
        names = labels.CLASSES[head]
        known = frame[frame[head].notna()]
        wrong = known[known[head].astype("string") != known[f"pred_{head}"].astype("string")]
        probs = wrong[[f"p_{head}_{name}" for name in names]].to_numpy()
        wrong = wrong.assign(confidence=probs.max(axis=1) if len(wrong) else np.zeros(0))
        if min_age_error:
            wrong = wrong[wrong["age_error"] >= min_age_error]
        if true_values:
            wrong = wrong[wrong[head].astype("string").isin(true_values)]
        if predicted_values:
            wrong = wrong[wrong[f"pred_{head}"].astype("string").isin(predicted_values)]
    wrong = wrong[wrong["confidence"].between(*confidence)]
    key, ascending = {"most confident": ("confidence", False), "largest age error": ("age_error", False),
                      "file": ("file", True)}[sort]
    return wrong.sort_values(key, ascending=ascending, kind="stable")


def face_thumbnail(path: str | Path, box: tuple[float, float, float, float] | None, side: int = 320) -> np.ndarray:
    """An image shrunk to `side` px with the audited face's (x, y, w, h) box outlined, so a bystander is never mistaken for it.

    The box is drawn before shrinking, about 3 px wide at the shown size, so it stays visible in a gallery and a report.
    """
    image = Image.fromarray(load_image(path))
    if box is not None:
        x, y, w, h = box
        line = max(2, round(3 * max(image.size) / side))  # about 3 px once shrunk to `side`
        ImageDraw.Draw(image).rectangle((x, y, x + w, y + h), outline=(255, 196, 0), width=line)
    image.thumbnail((side, side))
    return np.asarray(image)
