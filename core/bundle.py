"""Audit bundles: a model's predictions on one dataset, with metrics and rejects, in one folder.

Reading and summarising bundles needs no torch (the dashboard's first page stays fast); making
them is `core.audit.run_audit`.

    <bundle>/predictions.parquet  one row per audited image: its labelled face's prediction; a large audit
                                  (`--engine ray`) writes the same rows as parts instead, in order:
    <bundle>/predictions/part-00000.parquet, part-00001.parquet, ...
    <bundle>/metrics.json         n, n_rejected, headline metrics (null where labels are absent), per group,
                                  and provenance: dataset, model card, mitigation, command, input kind, face rule
    <bundle>/rejects.csv          every image that produced no prediction, with the reason
    <bundle>/overview.json        what the dashboard's Overview shows of all faces (`core.overview`), so its first
                                  page needs no read of the predictions; optional, made again when stale

Prediction columns: `file`, `path`, `source`, true labels (`age`, `age_bin`, `gender`, `race`),
`pred_age`, `pred_age_std`, `pred_age_bin` (the bin holding the median age), `pred_gender`,
`pred_race`, probabilities `p_age_bin_<bin>`, `p_gender_<name>`, `p_race_<name>` (and from a seven-class race head
`pred_race7`, `p_race7_<FairFace race>`); detection:
`n_faces`, `multi_face`, `face_index`, `face_reason`, `face_score`, `face_box_x/y/w/h`, `face_px`,
`image_width`, `image_height`, `faces` (every detection as JSON); `dup_group`, `dup_group_size`,
`label_conflict`; then the dataset's extra columns.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core import labels
from core.config import REPO_ROOT
from core.errors import FaceAuditError
from core.fairness import HEADLINE_METRICS, grouping_columns, headline_metrics, row_values
from core.overview import CODE as OVERVIEW_CODE
from core.overview import Overview, overview

__all__ = ["Bundle", "BundleError", "PROVENANCE_KEYS", "REQUIRED_COLUMNS", "UNSHOWN_COLUMNS", "write_bundle",
           "read_bundle", "read_unshown", "read_bundle_metrics", "store_overview", "stored_overview", "OVERVIEW_FILE",
           "prediction_frame", "resolve_image", "discover_bundles", "audited_checkpoints", "compute_metrics",
           "bundle_title", "imported_from", "provenance", "bundle_model_dir", "checkpoint_id", "chosen_box", "csv_safe",
           "csv_bytes"]

PREDICTIONS_FILE, METRICS_FILE, REJECTS_FILE = "predictions.parquet", "metrics.json", "rejects.csv"
OVERVIEW_FILE = "overview.json"
PREDICTIONS_PARTS = "predictions"  # the folder of a partitioned bundle's prediction files
BUNDLE_FORMAT = "faceaudit-bundle/1"  # stamped into metrics.json by `write_bundle`, checked by `read_bundle`


class BundleError(FaceAuditError, RuntimeError):
    """A bundle folder that is missing files or was written by an incompatible version."""


@dataclass
class Bundle:
    """An audit bundle in memory."""

    predictions: pd.DataFrame
    metrics: dict[str, Any]
    rejects: pd.DataFrame
    path: Path | None = None


def prediction_frame(table: pd.DataFrame, outputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Attach model outputs (from `core.trainer.predict`, or a model with fewer heads) to the rows of `table`.

    A head the model does not predict is left empty (it counts for no metric); an age without bin
    probabilities gives the bin it falls in.
    """
    frame = table.reset_index(drop=True).copy()
    frame["pred_age"] = outputs["age"].round(2) if "age" in outputs else np.nan
    frame["pred_age_std"] = outputs["age_std"].round(2) if "age_std" in outputs else np.nan
    for head in ("age_bin", "gender", "race"):
        names = labels.CLASSES[head]
        if head not in outputs:
            years = frame["pred_age"].to_numpy(dtype=float) if head == "age_bin" else np.full(len(frame), np.nan)
            frame[f"pred_{head}"] = pd.Categorical(labels.bins_of_ages(years), categories=list(names), ordered=True)
            continue
        probs = outputs[head]
        codes = labels.median_bin_index(probs) if head == "age_bin" else probs.argmax(1)
        frame[f"pred_{head}"] = pd.Categorical.from_codes(codes, categories=list(names), ordered=True)
        for index, name in enumerate(names):
            frame[f"p_{head}_{name}"] = probs[:, index].astype(np.float32)
    if "race7" in outputs:  # a seven-class race head: FairFace's classes beside their five-class view
        frame["pred_race7"] = pd.Categorical.from_codes(outputs["race7"].argmax(1), categories=list(labels.FAIRFACE_RACES))
        for index, name in enumerate(labels.FAIRFACE_RACES):
            frame[f"p_race7_{name}"] = outputs["race7"][:, index].astype(np.float32)
    return frame


# What metrics.json says about where a bundle came from; a derived bundle (post-processing) keeps it.
PROVENANCE_KEYS = ("dataset", "model_id", "model", "model_backbone", "image_root", "image_root_in_data", "notes",
                   "input_kind", "face_rule", "training_overlap", "training_overlap_note", "multi_face_images",
                   "command", "created")


def _plain(means: pd.Series) -> dict[str, float | None]:
    """Metric means as JSON values: None where no row counts."""
    return {name: (float(mean) if pd.notna(mean) else None) for name, mean in means.items()}


def compute_metrics(frame: pd.DataFrame, n_images: int) -> dict[str, Any]:
    """Overall and per-group metrics of a predictions frame (from its `pred_*` columns, so post-processed
    predictions count); `n_images` counts rejects too; None where labels are absent.

    Groups: every column of `grouping_columns` (labels, the dataset's own columns with few values, `n_faces`, ...).
    Each metric is a mean of per-row values (`row_values`), so a group's is its sum over its count: one pass over
    the rows, then per-group sums, whatever the number of rows.
    """
    names = headline_metrics(frame)
    values = row_values(frame)[names]
    overall = _plain(values.mean()) if len(frame) else dict.fromkeys(HEADLINE_METRICS)
    found = len(frame) / n_images if n_images else None
    # Counting every image: a rejected image (no face) counts as a wrong answer.
    counting_misses = {f"{name}_all_images": (value * found if value is not None and found is not None else None)
                       for name, value in overall.items() if name.endswith("accuracy")}
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for column in grouping_columns(frame):
        if frame[column].isna().all():
            continue
        grouped = values.groupby(frame[column], observed=True, sort=True)
        sizes, means = grouped.size(), grouped.mean()
        groups[column] = {str(value): {"n": int(sizes[value]), **_plain(means.loc[value])} for value in sizes.index}
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


def imported_from(metrics: dict[str, Any]) -> str | None:
    """'<model name>, predictions imported from <file>' for a bundle of imported predictions (`core.imported`), else
    None: such a model is not here, so nothing that needs it (explanations, saliency) can be made."""
    card = metrics.get("model") or {}
    if not card.get("imported_from"):
        return None
    source = f"predictions imported from {card['imported_from']}"
    name = card.get("name")  # `core.imported`'s default name says no more than `source`
    return source if not name or name == f"imported from {card['imported_from']}" else f"{name}, {source}"


def bundle_title(metrics: dict[str, Any]) -> str:
    """'fairface-sample · model 48096d53945d · mitigation: …': what the bundle's numbers are about."""
    mitigation, imported = metrics.get("mitigation"), imported_from(metrics)
    return (f"{metrics.get('dataset', 'unknown dataset')} · model {metrics.get('model_id') or 'unknown'}"
            + (f" ({imported})" if imported else "") + (f" · mitigation: {mitigation}" if mitigation else ""))


def export_name(bundle_name: str, filters: dict[str, list[str]], *parts: str) -> str:
    """A file name stem for an export: 'faceaudit-<bundle>[-<part>…][-<column>-<values>…]', safe on every OS."""
    pieces = [bundle_name, *parts] + [f"{column}-{'+'.join(values)}" for column, values in sorted(filters.items()) if values]
    stem = "-".join(["faceaudit", *pieces])
    stem = re.sub(r"[^A-Za-z0-9+._-]+", "_", stem).strip("._")
    return stem[:150]


def provenance(metrics: dict[str, Any]) -> dict[str, str]:
    """What made a bundle, as label -> plain text, from its own metrics.json (never from the loaded model)."""
    card = metrics.get("model") or {}
    model = imported_from(metrics) or f"{card.get('backbone') or metrics.get('model_backbone') or '?'}"
    if card.get("input_size"):
        model += f" at {card['input_size']} px"
    rows = {
        "dataset": str(metrics.get("dataset")),
        "model id": str(metrics.get("model_id")),
        "model": model,
        "trained on": str(card.get("trained_on") or ("not recorded by the model's maker" if "trained_on" in card
                                                     else "not recorded (bundle made before FaceAudit recorded it)")),
        "mitigation": str(metrics.get("mitigation") or "none"),
        "input": {"photos": "photos: faces detected, the labelled face chosen, then aligned",
                  "aligned-chips": "aligned face chips (re-aligned where a face is found)",
                  "imported-predictions": "the model's own outputs, made elsewhere (its face detection, its crops)"}.get(
                      metrics.get("input_kind"), "not recorded"),
        "face rule": {"center": "center: in a multi-face photo, the most central face (weighted by size and score)",
                      "largest": "largest: in a multi-face photo, the largest face"}.get(
                          metrics.get("face_rule"), "the model's owner chose the faces" if metrics.get("input_kind") ==
                          "imported-predictions" else "not recorded (largest face)"),
        "training images audited": str(metrics.get("training_overlap_note") or "not checked"),
        "created": str(metrics.get("created")),
        "command": str(metrics.get("command") or "not recorded"),
    }
    if metrics.get("fitted_on"):
        rows["mitigation"] += f" (fitted on {metrics['fitted_on']})"
    if metrics.get("chip_geometry"):
        rows["input"] = rows["input"].replace("then aligned", metrics["chip_geometry"])
    for number, note in enumerate(metrics.get("notes") or [], start=1):
        rows[f"note {number}"] = str(note)
    return rows


def checkpoint_id(meta: dict[str, Any]) -> str:
    """The id bundles record for a checkpoint with this `config.json`: its weights' hash, and its calibration
    temperatures and age estimate where it has them (`core.model.Checkpoint.model_id`)."""
    weights = str(meta.get("weights_sha256", ""))
    estimate = meta.get("age_estimate", "mean")
    if not meta.get("temperatures") and estimate == "mean":
        return weights[:12]
    text = f"{weights} {json.dumps(meta.get('temperatures') or {}, sort_keys=True)}"
    return hashlib.sha256((text if estimate == "mean" else f"{text} age={estimate}").encode()).hexdigest()[:12]


def bundle_model_dir(metrics: dict[str, Any], *candidates: Path | None) -> Path | None:
    """The checkpoint folder that made the bundle (its weights' id matches `model_id`), or None if absent here.

    Tries the folder recorded in the bundle, then `candidates` (e.g. the dashboard's model folder), then the
    folders beside those: a checkpoint moved within its models folder (models/default -> models/utkface-only).
    """
    wanted = metrics.get("model_id")
    if not wanted:
        return None
    recorded = (metrics.get("model") or {}).get("dir")
    named = [Path(folder) for folder in (REPO_ROOT / recorded if recorded else None, *candidates) if folder is not None]
    beside = [path for folder in named if folder.parent.is_dir() for path in sorted(folder.parent.iterdir())]
    for folder in dict.fromkeys(named + beside):  # an absolute `recorded` stays absolute
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if checkpoint_id(config) == wanted:
            return folder
    return None


def chosen_box(row: pd.Series) -> tuple[float, float, float, float] | None:
    """The (x, y, w, h) box of the face a prediction row is about, or None (no detection recorded)."""
    try:
        box = tuple(float(row[f"face_box_{k}"]) for k in "xywh")
    except (KeyError, TypeError, ValueError):
        return None
    return None if any(np.isnan(box)) else box


def discover_bundles(model_dir: Path) -> dict[str, Path]:
    """Bundles in `<model_dir>/audits/<name>/` by name, then other models' audits of the same data,
    `<model_dir>/audits/<model>/<name>/`, as `<model>/<name>` (e.g. a peer's imported predictions)."""
    audits = model_dir / "audits"
    if not audits.is_dir():
        return {}
    folders = sorted(path for path in audits.iterdir() if path.is_dir())
    found = {path.name: path for path in folders if (path / METRICS_FILE).is_file()}
    for group in folders:
        if group.name not in found:
            found |= {f"{group.name}/{path.name}": path for path in sorted(group.iterdir()) if (path / METRICS_FILE).is_file()}
    return found


def audited_checkpoints(model_dir: Path) -> dict[str, Path]:
    """Other FaceAudit checkpoints audited beside this model (`audits/<model>/<name>`), by folder name: the ones
    those bundles record that are on this machine and match the bundles' model id."""
    found: dict[str, Path] = {}
    for name, path in discover_bundles(model_dir).items():
        if "/" not in name:  # the model's own audits
            continue
        try:
            metrics = json.loads((path / METRICS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        folder = bundle_model_dir(metrics)
        if folder is not None and folder.resolve() != Path(model_dir).resolve():
            found.setdefault(folder.name, folder)
    return found


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that a spreadsheet would run as formulas (=, +, -, @ first) start with a quote."""
    safe = frame.copy()
    for column in safe.columns:
        if pd.api.types.is_string_dtype(safe[column]) or safe[column].dtype == object:
            text = safe[column].astype("string")
            safe[column] = text.where(~text.str.startswith(_FORMULA_START).fillna(False), "'" + text)
    return safe


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as a UTF-8 CSV download, spreadsheet-formula safe (`csv_safe`), without the index."""
    return csv_safe(frame).to_csv(index=False).encode("utf-8")


def _csv_unsafe(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo `csv_safe` on text read back."""
    for column in frame.columns:
        text = frame[column]
        escaped = text.str.startswith(tuple(f"'{start}" for start in _FORMULA_START))
        frame[column] = text.where(~escaped, text.str[1:])
    return frame


def write_bundle(bundle: Bundle, folder: str | Path, *, part_rows: int | None = None) -> Path:
    """Write a bundle's three files into `folder` (metrics.json gets the `format` stamp); with `part_rows`, the
    predictions as parts of that many rows in `predictions/`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    single, parts = folder / PREDICTIONS_FILE, folder / PREDICTIONS_PARTS
    single.unlink(missing_ok=True)  # a bundle written again, in the other layout, must not keep the old rows
    shutil.rmtree(parts, ignore_errors=True)
    if part_rows:
        parts.mkdir()
        for number, start in enumerate(range(0, max(len(bundle.predictions), 1), part_rows)):
            bundle.predictions.iloc[start : start + part_rows].to_parquet(parts / f"part-{number:05d}.parquet", index=False)
    else:
        bundle.predictions.to_parquet(single, index=False)
    (folder / METRICS_FILE).write_text(json.dumps(bundle.metrics | {"format": BUNDLE_FORMAT}, indent=2, default=float))
    csv_safe(bundle.rejects).to_csv(folder / REJECTS_FILE, index=False)
    store_overview(folder, bundle.predictions)
    return folder


def store_overview(folder: str | Path, predictions: pd.DataFrame) -> None:
    """Store the Overview of all the faces of the bundle in `folder` (`predictions`, as its files hold them)."""
    folder = Path(folder)
    stored = {"made_from": _overview_stamp(folder), **overview(predictions).to_dict()}
    (folder / OVERVIEW_FILE).write_text(json.dumps(stored, indent=1))


def _overview_stamp(folder: Path) -> dict[str, Any]:
    """What a stored Overview was made from: the code (`core.overview.CODE`), and the sizes of the files that
    `read_bundle` checks beside metrics.json (prediction files, rejects)."""
    files = [*_prediction_files(folder), folder / REJECTS_FILE]
    return {"code": OVERVIEW_CODE, "files": {path.name: path.stat().st_size for path in files}}


def stored_overview(folder: str | Path) -> Overview | None:
    """The Overview of all the bundle's faces as `write_bundle` stored it; None when the bundle has none, or one made
    from other files, by other code, or of another number of faces than metrics.json states (then `read_bundle`
    says what is wrong, or the Overview is computed again: `core.overview.overview`)."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / OVERVIEW_FILE).read_text())
        if stored.get("made_from") != _overview_stamp(folder) or stored.get("faces") != read_bundle_metrics(folder).get("n"):
            return None
        return Overview.from_dict(stored)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, BundleError):
        return None


def _prediction_files(folder: Path) -> list[Path]:
    """`predictions.parquet`, or else the parts in `predictions/`, in order."""
    single = folder / PREDICTIONS_FILE
    return [single] if single.is_file() else sorted((folder / PREDICTIONS_PARTS).glob("part-*.parquet"))


def _column_names(files: list[Path]) -> list[str]:
    """The prediction columns, from the first file's schema (the parts share it); none without files."""
    return pq.read_schema(files[0]).names if files else []


def _read_predictions(folder: Path, leave_out: tuple[str, ...] = ()) -> pd.DataFrame:
    """`predictions.parquet`, or the parts in `predictions/` joined in order; every column but `leave_out`."""
    files = _prediction_files(folder)
    columns = [name for name in _column_names(files) if name not in leave_out] if leave_out and files else None
    if files and files[0].name == PREDICTIONS_FILE:
        return pd.read_parquet(files[0], columns=columns)
    # One read of the list: Arrow reads the parts in parallel and keeps the order of the list
    return pq.read_table([str(part) for part in files], columns=columns).to_pandas()


# Every detection of every image as JSON (`core.faces.face_record`): kept for whoever audits the detector, shown by no
# page. At a million rows it is a third of the read and 257 MB, so the dashboard leaves it out.
UNSHOWN_COLUMNS = ("faces",)


def read_unshown(folder: str | Path, rows: pd.Index) -> pd.DataFrame:
    """The `UNSHOWN_COLUMNS` of the predictions at `rows` (row labels of the predictions as `read_bundle` gives them),
    for an export that promises every column; an empty frame on `rows` for a bundle without them."""
    files = _prediction_files(Path(folder))
    present = _column_names(files)
    names = [name for name in UNSHOWN_COLUMNS if name in present]
    if not names:
        return pd.DataFrame(index=rows)
    table = pq.read_table([str(part) for part in files], columns=names)
    return table.take(np.asarray(rows, dtype=np.int64)).to_pandas().set_axis(rows)


# Columns every page and report reads; a bundle without them is refused when opened.
REQUIRED_COLUMNS = ("file", "path", *labels.CLASSES, "age", "pred_age", "pred_age_std", "pred_age_bin", "pred_gender",
                    "pred_race")


def read_bundle_metrics(folder: str | Path) -> dict[str, Any]:
    """A bundle's metrics.json, checked: the bundle's files present, valid JSON, an object, this format.

    Raises:
        BundleError: what is wrong.
    """
    folder = Path(folder)
    missing = [name for name in (PREDICTIONS_FILE, METRICS_FILE, REJECTS_FILE) if not (folder / name).is_file()]
    if PREDICTIONS_FILE in missing and any((folder / PREDICTIONS_PARTS).glob("part-*.parquet")):
        missing.remove(PREDICTIONS_FILE)
    if missing:
        raise BundleError(f"{folder} is not an audit bundle: missing {', '.join(missing)}")
    try:
        metrics_json = json.loads((folder / METRICS_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{folder / METRICS_FILE} is not valid JSON ({error}); rebuild the bundle with "
                          "python -m training.evaluate") from error
    if not isinstance(metrics_json, dict):
        raise BundleError(f"{folder / METRICS_FILE} must hold a JSON object; rebuild the bundle with python -m training.evaluate")
    if metrics_json.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{folder}: unknown bundle format {metrics_json.get('format')!r}; expected {BUNDLE_FORMAT!r}")
    return metrics_json


def read_bundle(folder: str | Path, leave_out: tuple[str, ...] = ()) -> Bundle:
    """Read a bundle folder, checked once: files present, format, JSON object (`read_bundle_metrics`), readable
    parquet, the columns pages need, and metrics that describe these predictions. `leave_out`: prediction columns
    not to read (not `REQUIRED_COLUMNS`), e.g. `UNSHOWN_COLUMNS`.

    Raises:
        BundleError: what is wrong, and the command that rebuilds the bundle when it recorded one.
    """
    folder = Path(folder)
    metrics_json = read_bundle_metrics(folder)
    stored = PREDICTIONS_FILE if (folder / PREDICTIONS_FILE).is_file() else f"{PREDICTIONS_PARTS}/"
    rebuild = f"rebuild it with: {metrics_json['command']}" if metrics_json.get("command") else \
        "rebuild it with python -m training.evaluate"
    try:
        predictions = _read_predictions(folder, tuple(set(leave_out) - set(REQUIRED_COLUMNS)))
        rejects = _csv_unsafe(pd.read_csv(folder / REJECTS_FILE, dtype=str, keep_default_na=False))
    except Exception as error:  # noqa: BLE001 - pyarrow and pandas raise many types for damaged files
        raise BundleError(f"{folder}: a file of the bundle is damaged ({type(error).__name__}: {error}); {rebuild}") from error
    absent = [column for column in REQUIRED_COLUMNS if column not in predictions.columns]
    if absent:
        raise BundleError(f"{folder / stored} lacks column(s) {absent}; {rebuild}")
    if metrics_json.get("n") != len(predictions):
        raise BundleError(f"{folder}: metrics.json describes {metrics_json.get('n')} faces but {stored} holds "
                          f"{len(predictions)}: the two files come from different audits; {rebuild}")
    return Bundle(predictions=predictions, metrics=metrics_json, rejects=rejects, path=folder)
