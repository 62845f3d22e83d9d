"""Misclassified faces for the error gallery: filter, rank and describe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core import labels
from core.bundle import csv_bytes, read_unshown
from core.cohorts import OUTCOME_HEADS, exact_ages, true_labels, with_outcomes
from core.fairness import text_isin
from core.images import load_image

__all__ = ["HEADS", "available_heads", "Mistakes", "find_mistakes", "mistakes", "tile_caption", "mistakes_csv", "face_thumbnail"]

HEADS = (*OUTCOME_HEADS, "age")


def available_heads(frame: pd.DataFrame) -> list[str]:
    """The heads of `HEADS` with at least one face that has both a true label and the model's prediction (no "age"
    for bin-only data such as FairFace; no race from a vendor's model of age and gender; race-7 only from a model that
    predicts it, on data labelled with FairFace's seven races)."""
    def scored(true: str, predicted: str) -> bool:
        return true in frame and predicted in frame and bool((frame[true].notna() & frame[predicted].notna()).any())

    known = {head: scored(labels.true_column(head), f"pred_{head}") for head in OUTCOME_HEADS}
    known["age"] = "age" in frame and "pred_age" in frame and bool(
        (exact_ages(frame).notna() & frame["pred_age"].notna()).any())
    return [head for head in HEADS if known[head]]


_FEW = 100  # a gallery page: up to this many rows are cut out one by one (24 of a million: 5 ms instead of 30-600 ms)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: it holds a frame and arrays
class Mistakes:
    """The mistakes of a view, ranked, as positions into `source`: rows are copied only when asked for (a million-row
    bundle can have half a million mistakes, and the gallery shows 24 at a time)."""

    source: pd.DataFrame
    rows: np.ndarray  # positions in `source`, best first
    age_error: np.ndarray  # of each mistake, in the same order
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """Mistakes `start` to `stop` (all by default): their rows of `source` plus `age_error` and `confidence`."""
        part = slice(start, stop)
        rows = self.rows[part]
        if 0 < len(rows) <= _FEW:  # one-row slices: taking rows from a bundle read in parts joins its text columns first
            chosen = pd.concat([self.source.iloc[row : row + 1] for row in rows])
        else:
            chosen = self.source.iloc[rows]
        return chosen.assign(age_error=self.age_error[part], confidence=self.confidence[part])

    def pages(self, per_page: int) -> int:
        """How many pages of `per_page` they fill (at least one)."""
        return max(1, -(-len(self) // per_page))

    def page(self, page: int, per_page: int) -> pd.DataFrame:
        """The mistakes of the 1-based `page` (clamped to the pages there are)."""
        start = (min(max(page, 1), self.pages(per_page)) - 1) * per_page
        return self.take(start, start + per_page)


def find_mistakes(frame: pd.DataFrame, head: Literal["gender", "race", "age_bin", "race7", "age"], *,
                  true_values: list[str] | None = None, predicted_values: list[str] | None = None,
                  min_age_error: float = 0.0, confidence: tuple[float, float] = (0.0, 1.0),
                  sort: Literal["most confident", "largest age error", "file"] = "most confident") -> Mistakes:
    """The faces the model got wrong for `head`, ranked by `sort`.

    For `head="age"` a mistake is an absolute error of at least `min_age_error` years (default
    5 when left at 0) on a face with an exact true age; confidence is then the inverse of the
    predicted spread (1 / (1 + std)). Otherwise confidence is the probability of the predicted
    class. High-confidence mistakes are often label noise worth a look. Mistakes of unknown confidence
    (predictions imported without probabilities) are kept unless `confidence` narrows the range, and sort last.

    Raises:
        ValueError: `head` is not one of `HEADS`.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    needed = ["age_error"] if head == "age" else [f"{head}_error", f"{head}_confidence", "age_error"]
    outcomes = with_outcomes(frame, needed)  # the same right/wrong, confidence and age error as cohorts and error analysis
    age_error = outcomes["age_error"].to_numpy()
    if head == "age":
        keep = age_error >= (min_age_error or 5.0)  # NaN (no exact age) is never a mistake
        row_confidence = 1.0 / (1.0 + frame["pred_age_std"].astype("float64").to_numpy())
    else:
        keep = (outcomes[f"{head}_error"] == "wrong").fillna(False).to_numpy(dtype=bool)
        row_confidence = outcomes[f"{head}_confidence"].to_numpy()
        if min_age_error:
            keep &= age_error >= min_age_error
        if true_values:
            keep &= text_isin(true_labels(frame, head), set(true_values))
        if predicted_values:
            keep &= text_isin(frame[f"pred_{head}"], set(predicted_values))
    in_range = (row_confidence >= confidence[0]) & (row_confidence <= confidence[1])
    unknown = np.isnan(row_confidence) & (tuple(confidence) == (0.0, 1.0))  # no probabilities: shown unless narrowed
    keep &= in_range | unknown
    rows = np.flatnonzero(keep)
    column, ascending = {"most confident": ("confidence", False), "largest age error": ("age_error", False),
                         "file": ("file", True)}[sort]
    keys = {"confidence": row_confidence, "age_error": age_error}.get(column)
    keys = pd.Series(frame[column].to_numpy()[rows] if keys is None else keys[rows])
    rows = rows[keys.sort_values(ascending=ascending, kind="stable").index.to_numpy()]
    return Mistakes(frame, rows, age_error[rows], row_confidence[rows])


def mistakes(frame: pd.DataFrame, head: Literal["gender", "race", "age_bin", "race7", "age"], **options: Any
             ) -> pd.DataFrame:
    """`find_mistakes` as rows of `frame`, with `confidence` and `age_error` columns added."""
    return find_mistakes(frame, head, **options).take()


def _known(*values: object) -> str:
    """The values a label or a model gives, leaving out those it does not (a model of gender alone has no race)."""
    return " · ".join(str(value) for value in values if not pd.isna(value))


def tile_caption(row: pd.Series, head: str) -> str:
    """What a gallery tile says: truth → prediction, how sure the model was, which face, and any flags."""
    true_age = row["age_bin"] if pd.isna(row["age"]) else row["age"]
    predicted_age = None if pd.isna(row["pred_age"]) else f"{row['pred_age']:.0f}"
    race, predicted_race = ("fairface_race", "pred_race7") if head == "race7" else ("race", "pred_race")
    text = (f"true {_known(true_age, row['gender'], row[race])} → predicted "
            f"{_known(predicted_age, row['pred_gender'], row[predicted_race])}")
    if head == "age":
        text += f" · age error {row['age_error']:.0f} y, predicted spread ± {row['pred_age_std']:.0f} y"
    else:
        sure = "not given" if pd.isna(row["confidence"]) else f"{row['confidence']:.0%}"
        text += f" · confidence in {row[f'pred_{head}']}: {sure}"
    faces, flags = row.get("n_faces"), row.get("face_flags")  # neither in imported predictions
    if not pd.isna(faces) and faces > 1 and not pd.isna(row.get("face_index")):
        text += f" · face {int(row['face_index']) + 1} of {int(faces)} (outlined)"
    if not pd.isna(flags) and flags not in ("none", ""):
        text += f" · ⚠ {row['face_flags']}"
    return text


def mistakes_csv(wrong: Mistakes, bundle_folder: str | Path | None = None) -> bytes:
    """The faces of a gallery view as CSV: one row per face, every column, spreadsheet-formula safe. `bundle_folder`:
    where the columns the dashboard leaves out of its read (`UNSHOWN_COLUMNS`) are read back from."""
    chosen = wrong.take()
    if bundle_folder is not None:
        unshown = read_unshown(bundle_folder, chosen.index)
        chosen = chosen.join(unshown.drop(columns=chosen.columns.intersection(unshown.columns)))  # once, if read already
    return csv_bytes(chosen)


def face_thumbnail(path: str | Path, box: tuple[float, float, float, float] | None, side: int = 320) -> np.ndarray:
    """An image shrunk to `side` px with the audited face's (x, y, w, h) box outlined, so a bystander is never mistaken for it.

    Where the face is small in its photo (a crowd), the thumbnail is the square around it three faces wide (within
    the photo): the face stays readable and its neighbours in view. The box is drawn about 3 px wide at the shown size,
    so it stays visible in a gallery and a report.
    """
    image = Image.fromarray(load_image(path))
    if box is not None:
        x, y, w, h = box
        span = 3 * max(w, h)
        if span < max(image.size):
            left = min(max(x + w / 2 - span / 2, 0), max(image.width - span, 0))
            top = min(max(y + h / 2 - span / 2, 0), max(image.height - span, 0))
            image = image.crop((round(left), round(top), round(min(left + span, image.width)),
                                round(min(top + span, image.height))))
            x, y = x - round(left), y - round(top)
        line = max(2, round(3 * max(image.size) / side))  # about 3 px once shrunk to `side`
        ImageDraw.Draw(image).rectangle((x, y, x + w, y + h), outline=(255, 196, 0), width=line)
    image.thumbnail((side, side))
    return np.asarray(image)
