"""A synthetic audit bundle with known errors, for the fairness, chart and app tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import labels
from core.bundle import Bundle, compute_metrics
from tests.conftest import LONDON_FIXTURES


def synthetic_predictions(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Rows cycling over races x genders; Black women are misgendered 50 % of the time, others 0 %."""
    rng = np.random.default_rng(seed)
    photos = sorted(str(p) for p in LONDON_FIXTURES.glob("*.jpg"))
    race = [labels.RACES[i % 5] for i in range(n)]
    gender = [labels.GENDERS[(i // 5) % 2] for i in range(n)]
    age = rng.integers(1, 90, n)
    pred_gender = list(gender)
    for i in range(n):
        if race[i] == "Black" and gender[i] == "Female" and (i // 10) % 2 == 0:
            pred_gender[i] = "Male"
    pred_age = age + rng.normal(0, 4, n)
    frame = pd.DataFrame({
        "file": [f"img_{i:04d}.jpg" for i in range(n)], "path": [photos[i % len(photos)] for i in range(n)],
        "source": "synthetic", "age": pd.array(age, dtype="Int64"),
        "age_bin": pd.Categorical([labels.age_to_bin(int(a)) for a in age], categories=labels.AGE_BINS, ordered=True),
        "gender": pd.Categorical(gender, categories=labels.GENDERS, ordered=True),
        "race": pd.Categorical(race, categories=labels.RACES, ordered=True),
        "pred_age": pred_age, "pred_age_std": np.full(n, 3.0),
    })
    pred_bins = [labels.age_to_bin(int(np.clip(round(a), 0, 116))) for a in pred_age]
    for head, names, predicted in (("age_bin", labels.AGE_BINS, pred_bins), ("gender", labels.GENDERS, pred_gender),
                                   ("race", labels.RACES, race)):
        frame[f"pred_{head}"] = pd.Categorical(predicted, categories=names, ordered=True)
        onehot = np.eye(len(names))[[names.index(p) for p in predicted]] * 0.9 + 0.1 / len(names)
        for index, name in enumerate(names):
            frame[f"p_{head}_{name}"] = onehot[:, index].astype(np.float32)
    frame["n_faces"] = 1
    return frame


def seven_race_predictions(n: int = 700):
    """`synthetic_predictions` labelled with FairFace's seven races (50 faces per race × gender) by a seven-class
    model that calls every Middle Eastern woman White and is right on every other face."""
    frame = synthetic_predictions(n)
    seven = [labels.FAIRFACE_RACES[i % 7] for i in range(n)]
    five = pd.Categorical([labels.FAIRFACE_TO_RACE[name] for name in seven], categories=labels.RACES)
    frame["fairface_race"], frame["race"], frame["pred_race"] = seven, five, five
    called_white = (frame["fairface_race"] == "Middle Eastern") & (frame["gender"] == "Female")
    frame["pred_race7"] = pd.Categorical(np.where(called_white, "White", seven), categories=labels.FAIRFACE_RACES)
    return frame


def synthetic_bundle(n: int = 240) -> Bundle:
    """The synthetic predictions as a bundle with one reject."""
    frame = synthetic_predictions(n)
    metrics = compute_metrics(frame, n + 1) | {"dataset": "synthetic", "model_id": "test", "model_backbone": "test_efficientnet",
                                               "notes": [], "created": "2026-01-01 00:00:00"}
    rejects = pd.DataFrame([{"file": "broken.jpg", "path": "/nowhere/broken.jpg", "source": "synthetic", "reason": "no face found"}])
    return Bundle(predictions=frame, metrics=metrics, rejects=rejects)


def mitigated_bundle(n: int = 240) -> Bundle:
    """The synthetic bundle after a perfect 'mitigation': the misgendered Black women are predicted right."""
    bundle = synthetic_bundle(n)
    frame = bundle.predictions
    frame["pred_gender"] = frame["gender"].copy()
    bundle.metrics |= compute_metrics(frame, n + 1) | {"mitigation": "test fix of the Black women's gender predictions"}
    return bundle


# Gender Shades' finding, planted: gender error by skin type x gender (darker women worst by far).
GENDER_SHADES_ERRORS = {("lighter", "Male"): 0.0, ("lighter", "Female"): 0.05, ("darker", "Male"): 0.10,
                        ("darker", "Female"): 0.35}


def gender_shades_bundle(per_cell: int = 60) -> Bundle:
    """A bundle with an auditor's own `skin` column (text) and the planted error rates of GENDER_SHADES_ERRORS."""
    frame = synthetic_predictions(4 * per_cell, seed=1)
    cells = [cell for cell in GENDER_SHADES_ERRORS for _ in range(per_cell)]
    frame["skin"] = pd.array([skin for skin, _ in cells], dtype="str")
    frame["gender"] = pd.Categorical([gender for _, gender in cells], categories=labels.GENDERS, ordered=True)
    predicted = []
    for index, cell in enumerate(cells):
        wrong = index % per_cell < round(GENDER_SHADES_ERRORS[cell] * per_cell)
        predicted.append(("Female" if cell[1] == "Male" else "Male") if wrong else cell[1])
    frame["pred_gender"] = pd.Categorical(predicted, categories=labels.GENDERS, ordered=True)
    frame["p_gender_Male"] = np.where(frame["pred_gender"] == "Male", 0.9, 0.1).astype(np.float32)
    frame["p_gender_Female"] = 1 - frame["p_gender_Male"]
    metrics = compute_metrics(frame, len(frame)) | {"dataset": "gender-shades-fixture", "model_id": "test",
                                                    "model_backbone": "test_efficientnet", "notes": [],
                                                    "created": "2026-01-01 00:00:00"}
    return Bundle(predictions=frame, metrics=metrics, rejects=pd.DataFrame(columns=["file", "path", "source", "reason"]))


def vendor_predictions(n: int = 240) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The synthetic dataset's labels, and an outside model's outputs on it in its own words ("Woman", "Man";
    age and gender only, no race), for `core.imported`: the first two images have no prediction, and one
    prediction names an image the dataset lacks."""
    frame = synthetic_predictions(n)
    table = frame[["file", "path", "source", "age", "age_bin", "gender", "race"]].assign(skin="lighter")
    words = {"Male": "Man", "Female": "Woman"}
    outputs = pd.DataFrame({"image": frame["file"], "predicted_age": frame["pred_age"].round(1).astype(str),
                            "gender": frame["pred_gender"].map(words).astype(str)}).iloc[2:]
    stray = pd.DataFrame({"image": ["not_in_the_dataset.jpg"], "predicted_age": ["30"], "gender": ["Man"]})
    return table, pd.concat([outputs, stray], ignore_index=True)
