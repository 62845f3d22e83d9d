"""Audit bundles: a model's predictions on one dataset, with metrics and rejects, in one folder.

Reading and summarising bundles needs no torch (the dashboard's first page stays fast); making
them is `core.audit.run_audit`.

    <bundle>/predictions.parquet  one row per audited face (the largest face of each image)
    <bundle>/metrics.json         n, n_rejected, headline metrics (null where labels are absent), per group
    <bundle>/rejects.csv          every image that produced no prediction, with the reason

Prediction columns: `file`, `path`, `source`, true labels (`age`, `age_bin`, `gender`, `race`),
`pred_age`, `pred_age_std`, `pred_age_bin`, `pred_gender`, `pred_race`, probabilities
`p_age_bin_<bin>`, `p_gender_<name>`, `p_race_<name>`, `n_faces`, then the dataset's extra columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import labels
from core.fairness import row_values

__all__ = ["Bundle", "BundleError", "GROUP_COLUMNS", "HEADLINE_METRICS", "write_bundle", "read_bundle", "prediction_frame",
           "resolve_image", "discover_bundles", "compute_metrics"]

PREDICTIONS_FILE, METRICS_FILE, REJECTS_FILE = "predictions.parquet", "metrics.json", "rejects.csv"
BUNDLE_FORMAT = "faceaudit-bundle/1"  # stamped into metrics.json by `write_bundle`, checked by `read_bundle`
GROUP_COLUMNS = tuple(labels.CLASSES)


class BundleError(RuntimeError):
    """A bundle folder that is missing files or was written by an incompatible version."""


@dataclass
class Bundle:
    """An audit bundle in memory."""

    predictions: pd.DataFrame
    metrics: dict[str, Any]
    rejects: pd.DataFrame
    path: Path | None = None


def prediction_frame(table: pd.DataFrame, outputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Attach model outputs (from `core.trainer.predict`) to the rows of `table`."""
    frame = table.reset_index(drop=True).copy()
    frame["pred_age"] = outputs["age"].round(2)
    frame["pred_age_std"] = outputs["age_std"].round(2)
    for head in ("age_bin", "gender", "race"):
        probs, names = outputs[head], labels.CLASSES[head]
        frame[f"pred_{head}"] = pd.Categorical.from_codes(probs.argmax(1), categories=list(names), ordered=True)
        for index, name in enumerate(names):
            frame[f"p_{head}_{name}"] = probs[:, index].astype(np.float32)
    return frame


# The metrics every bundle, page and report leads with.
HEADLINE_METRICS = ("age_mae", "cs5", "age_bin_accuracy", "gender_accuracy", "race_accuracy")


def _headline(frame: pd.DataFrame) -> dict[str, float | None]:
    """Headline metrics from the `pred_*` columns (so post-processed predictions count); None without labels."""
    values = row_values(frame)
    return {name: (float(np.nanmean(values[name])) if values[name].notna().any() else None) for name in HEADLINE_METRICS}


def compute_metrics(frame: pd.DataFrame, n_images: int, extra_columns: Iterable[str] = ()) -> dict[str, Any]:
    """Overall and per-group metrics of a predictions frame; `n_images` counts rejects too."""
    overall = _headline(frame) if len(frame) else dict.fromkeys(HEADLINE_METRICS)
    found = len(frame) / n_images if n_images else None
    # Counting every image: a rejected image (no face) counts as a wrong answer.
    counting_misses = {f"{name}_all_images": (value * found if value is not None and found is not None else None)
                       for name, value in overall.items() if name.endswith("accuracy")}
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for column in (*GROUP_COLUMNS, *extra_columns):
        if column not in frame.columns or frame[column].isna().all():
            continue
        groups[column] = {}
        for value, members in frame.groupby(column, observed=True, sort=True):
            groups[column][str(value)] = {"n": len(members), **_headline(members)}
    return {"n": len(frame), "n_images": n_images, "n_rejected": n_images - len(frame), "faces_found": found,
            **overall, **counting_misses, "groups": groups}


def resolve_image(row: pd.Series, bundle_metrics: dict[str, Any], data_dir: Path | None) -> Path | None:
    """Where the image of a prediction row is on this machine, or None.

    Tries the recorded path, then the bundle's image folder inside the current data folder
    (`image_root_in_data`), then the recorded image folder.
    """
    candidates = [Path(str(row["path"]))]
    if data_dir is not None and bundle_metrics.get("image_root_in_data") is not None:
        candidates.append(data_dir / bundle_metrics["image_root_in_data"] / str(row["file"]))
    if bundle_metrics.get("image_root"):
        candidates.append(Path(bundle_metrics["image_root"]) / str(row["file"]))
    return next((path for path in candidates if path.is_file()), None)


def discover_bundles(model_dir: Path) -> dict[str, Path]:
    """Bundles in `<model_dir>/audits/<name>/`, by name."""
    audits = model_dir / "audits"
    if not audits.is_dir():
        return {}
    return {path.name: path for path in sorted(audits.iterdir()) if (path / METRICS_FILE).is_file()}


def write_bundle(bundle: Bundle, folder: str | Path) -> Path:
    """Write a bundle's three files into `folder` (metrics.json gets the `format` stamp)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bundle.predictions.to_parquet(folder / PREDICTIONS_FILE, index=False)
    (folder / METRICS_FILE).write_text(json.dumps(bundle.metrics | {"format": BUNDLE_FORMAT}, indent=2, default=float))
    bundle.rejects.to_csv(folder / REJECTS_FILE, index=False)
    return folder


def read_bundle(folder: str | Path) -> Bundle:
    """Read a bundle folder.

    Raises:
        BundleError: a file is missing or the format is not `BUNDLE_FORMAT`.
    """
    folder = Path(folder)
    missing = [name for name in (PREDICTIONS_FILE, METRICS_FILE, REJECTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise BundleError(f"{folder} is not an audit bundle: missing {', '.join(missing)}")
    metrics_json = json.loads((folder / METRICS_FILE).read_text())
    if metrics_json.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{folder}: unknown bundle format {metrics_json.get('format')!r}; expected {BUNDLE_FORMAT!r}")
    predictions = pd.read_parquet(folder / PREDICTIONS_FILE)
    rejects = pd.read_csv(folder / REJECTS_FILE, dtype=str, keep_default_na=False)
    return Bundle(predictions=predictions, metrics=metrics_json, rejects=rejects, path=folder)
