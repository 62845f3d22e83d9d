"""Audit a model that does not run here: its per-image predictions, made anywhere, joined to a labelled dataset.

The predictions file (CSV or parquet) has one row per image: a key column that names the image as the
dataset does (its `file` as written in the manifest or label CSV, or its full `path`), and any of

    age            predicted age in years
    age_bin        a FairFace age bin ("20-29", "70+", ...)
    gender, race   a label
    p_gender_<label>, p_race_<label>, p_age_bin_<bin>   probabilities (several labels onto one class are summed)
    p_race7_<FairFace race>                            FairFace's seven races, as FaceAudit's bundles write them

Labels are read as FaceAudit's names (FairFace's seven race names are mapped onto its five, and kept as the
seven-class `pred_race7` when every race label is one of the seven) or through a declared label map (JSON),
which can also rename the file's columns:

    {"columns": {"predicted_age": "age", "image": "file"},
     "gender": {"Man": "Male", "Woman": "Female"},
     "race": {"Asian (East)": "Asian", "Hispanic": "Others"}}

A label found in neither is an error naming it. A file with FaceAudit's own output names (`pred_age`, `pred_gender`,
`pred_race`, `pred_age_bin`: a bundle's predictions) is read from those; its other label columns are the truth.
Each head's probabilities must sum to 1 per row (rounding and percentages are divided by their sum; one class left
out gets the rest); other sums and negative values (logits) are refused. Dataset images without a prediction
become rejects with the reason; predictions that name no dataset image are listed in the bundle
(`unmatched_predictions.csv`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import labels
from core.bundle import Bundle, compute_metrics
from core.datasets import REJECT_COLUMNS, Dataset, aliased, read_label_csv
from core.dedup import with_duplicate_groups
from core.errors import FaceAuditError
from core.faces import FACE_RECORD_COLUMNS

__all__ = ["PredictionsError", "LabelMap", "read_predictions", "import_predictions", "UNMATCHED_FILE", "KEYS"]

UNMATCHED_FILE = "unmatched_predictions.csv"
KEYS = ("file", "path")  # how a prediction names its image, tried in this order
OUTPUTS = ("age", "age_bin", "gender", "race")
BUNDLE_OUTPUTS = {f"pred_{name}": name for name in OUTPUTS}  # the same outputs as FaceAudit's bundles name them
_PARSERS = {"gender": labels.parse_gender, "race": labels.parse_race, "age_bin": labels.parse_age_bin}
_PROBABILITY = re.compile(r"^p_(gender|race7|race|age_bin)_(.+)$")
SUM_ROUNDING = 0.05  # row sums this far from 1 (or 100) are rounding: divided by their sum; further off, refused
NOT_DETECTED = "imported predictions: faces were found by the model's owner, not by FaceAudit"


class PredictionsError(FaceAuditError, ValueError):
    """A predictions file or label map that cannot be imported as a whole."""


@dataclass
class LabelMap:
    """The model's own column and label names, mapped onto FaceAudit's."""

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # head -> their label -> ours

    @classmethod
    def read(cls, path: str | Path | None) -> LabelMap:
        if path is None:
            return cls()
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise PredictionsError(f"cannot read the label map {path}: {error}") from None
        unknown = [key for key in raw if key not in ("columns", *_PARSERS)]
        if not isinstance(raw, dict) or unknown:
            raise PredictionsError(f"label map {path}: unknown key(s) {unknown}; valid: columns, {', '.join(_PARSERS)}")
        return cls(columns=dict(raw.get("columns", {})), values={head: dict(raw[head]) for head in _PARSERS if head in raw})

    def declared(self, head: str, value: object) -> object:
        """The model's label `value` of `head` as the map names it (itself where the map does not); a whole number
        read as a float (1.0: a column of codes with gaps, in parquet) is the map's "1"."""
        declared = {_label_text(key): ours for key, ours in self.values.get(head, {}).items()}
        return declared.get(_label_text(value), value)

    def race7(self, values: Iterable[object]) -> list[str] | None:
        """The model's race labels `values` as FairFace's seven races (`labels.race7_labels`), or None when they are
        not written in them."""
        return labels.race7_labels(self.declared("race", value) for value in values)

    def label(self, head: str, value: object) -> str:
        """FaceAudit's class for the model's label `value` of `head`.

        Raises:
            PredictionsError: a label neither FaceAudit's nor in the map.
        """
        try:
            return _PARSERS[head](self.declared(head, value))
        except labels.LabelError as error:
            raise PredictionsError(f"{head} label {str(value)!r} is not mapped: add it to the label map's "
                                   f"\"{head}\" table ({error})") from None


def read_predictions(path: str | Path, label_map: LabelMap | None = None) -> pd.DataFrame:
    """A predictions file as a frame with FaceAudit's column names (`label_map.columns` applied).

    Raises:
        PredictionsError: unreadable, no key column, no output column, or a key listed twice.
    """
    path, label_map, notes = Path(path), label_map or LabelMap(), []
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:  # read as manifests are: any of , ; tab | as delimiter, UTF-8 or Latin-1, malformed rows set aside
            table = read_label_csv(path, path.name)
            frame, notes = table.frame, table.notes
            if table.rejects:
                notes.append(f"{len(table.rejects)} row(s) of {path.name} could not be read, e.g. "
                             f"{table.rejects[0]['reason']}: their images count as without a prediction")
    except (OSError, ValueError, ImportError) as error:
        raise PredictionsError(f"cannot read predictions {path}: {error}") from None
    frame = frame.rename(columns=label_map.columns)
    frame = frame.rename(columns=_canonical_column)  # header names are case-insensitive, as in manifests
    key = next((key for key in KEYS if key in frame.columns), None)
    if key is None and len(names := aliased(frame.columns, "path")) == 1:  # `Image`, `filename`: as in manifests
        frame, key = frame.rename(columns={names[0]: "file"}), "file"
        notes.append(f"{path.name}: read column {names[0]!r} as the image's name")
    if key is None:
        raise PredictionsError(f"{path.name} has no image column: name it one of {', '.join(KEYS)} "
                               f"(or map yours in the label map's \"columns\"); columns: {', '.join(map(str, frame.columns))}")
    if not any(column in OUTPUTS or column in BUNDLE_OUTPUTS or _PROBABILITY.match(str(column))
               for column in frame.columns):
        raise PredictionsError(f"{path.name} has no prediction column: expected any of {', '.join(OUTPUTS)} (or "
                               f"{', '.join(BUNDLE_OUTPUTS)}) or p_<head>_<label>; columns: "
                               f"{', '.join(map(str, frame.columns))}")
    keys = frame[key].astype(str).map(_normal)
    twice = keys[keys.duplicated()].unique()
    if len(twice):
        raise PredictionsError(f"{path.name}: {len(twice)} image(s) have more than one prediction, e.g. {twice[0]!r}")
    frame = frame.assign(**{key: keys})
    frame.attrs["notes"] = notes  # how the file was read: `import_predictions` records them in the bundle
    return frame


def _canonical_column(name: object) -> object:
    """FaceAudit's spelling of a column it reads (`File`, `Gender`, `P_Gender_Female`); other names as they are."""
    text = str(name).strip()
    if text.lower() in (*KEYS, *OUTPUTS, *BUNDLE_OUTPUTS):
        return text.lower()
    match = re.match(_PROBABILITY.pattern, text, flags=re.IGNORECASE)
    return f"p_{match.group(1).lower()}_{match.group(2)}" if match else name


def _outputs_as_named(predictions: pd.DataFrame, source: str, notes: list[str]) -> pd.DataFrame:
    """A file with FaceAudit's own `pred_*` columns (a bundle's predictions, or written like one) gives its outputs
    there: its `age`, `gender`, `race`, `age_bin` columns are the dataset's labels, never read as predictions."""
    named = [column for column in BUNDLE_OUTPUTS if column in predictions.columns]
    if not named:
        return predictions
    labels_there = [column for column in OUTPUTS if column in predictions.columns]
    if labels_there:
        notes.append(f"{source} names its outputs as FaceAudit's bundles do ({', '.join(named)}): they were read "
                     f"from those, and its {', '.join(labels_there)} column(s) taken as labels, not predictions")
    return predictions.drop(columns=labels_there).rename(columns=BUNDLE_OUTPUTS)


def _label_text(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    return str(value).strip().lower()


def _normal(name: str) -> str:
    name = name.strip().replace("\\", "/")
    return name[2:] if name.startswith("./") else name


def _by_file_name(predictions: pd.DataFrame, key: str, names: pd.Series, notes: list[str]) -> pd.DataFrame:
    """`predictions` with those that name no image but name one by its file name alone (a vendor's `3269.jpg` or
    `C:/run/3269.jpg` for the dataset's `val/3269.jpg`) keyed as the dataset names it, where that file name is
    its image's alone and no other prediction names the image; a note counts them."""
    loose = ~predictions[key].isin(set(names))
    if not loose.any():
        return predictions
    own = names.str.rsplit("/", n=1).str[-1]
    alone = ~own.duplicated(keep=False)
    target = predictions.loc[loose, key].str.rsplit("/", n=1).str[-1].map(dict(zip(own[alone], names[alone])))
    usable = target.notna() & ~target.isin(set(predictions.loc[~loose, key])) & ~target.duplicated(keep=False)
    if not usable.any():
        return predictions
    example = predictions.loc[usable[usable].index[0], key]
    notes.append(f"{int(usable.sum())} prediction(s) name their image by its file name alone, e.g. {example!r}: each "
                 "matched to the one image of the dataset with that file name")
    return predictions.assign(**{key: predictions[key].mask(usable.reindex(predictions.index, fill_value=False),
                                                            target.reindex(predictions.index))})


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def _given(head: str) -> str:
    """The label column `head` is read from: FairFace's seven races come from the model's race labels."""
    return "race" if head == "race7" else head


def _probabilities(frame: pd.DataFrame, head: str, label_map: LabelMap, notes: list[str]) -> np.ndarray | None:
    """`(n, classes)` probabilities of `head` from its p_ columns (mapped and summed), or None without any; `race7`'s
    are its own columns, else the race columns where they name FairFace's seven races."""
    def columns_of(name: str) -> list[str]:
        return [c for c in frame.columns if (m := _PROBABILITY.match(str(c))) and m.group(1) == name]

    columns = columns_of(head) or columns_of(_given(head))
    theirs = [_PROBABILITY.match(column).group(2) for column in columns]
    ours = label_map.race7(theirs) if head == "race7" else [label_map.label(head, name) for name in theirs]
    if not columns or ours is None:
        return None
    names = labels.HEAD_CLASSES[head]
    probs = np.zeros((len(frame), len(names)))
    for column, name in zip(columns, ours):
        probs[:, names.index(name)] += pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    if (negative := (probs < 0).any(axis=1)).any():
        example = _example(frame, int(np.flatnonzero(negative)[0]), columns)
        raise PredictionsError(f"{head} probabilities are negative in {int(negative.sum())} rows (e.g. {example} in "
                               f"{', '.join(columns)}): logits? give each class's probability (softmax)")
    sums = probs.sum(axis=1)
    given = sums[~np.isnan(sums)]
    if not given.size or np.abs(given - 1).max() <= 1e-3:
        return probs
    low, high = given.min(), given.max()
    said = head != "race7"  # the race columns' notes say it
    missing = [name for name in names if name not in ours]
    if len(missing) == 1 and high <= 1 + SUM_ROUNDING:  # e.g. P(Female) alone: the one class left out has the rest
        probs[:, names.index(missing[0])] = np.clip(1 - sums, 0, None)
        sums = probs.sum(axis=1)
        if said:
            notes.append(f"{head}: no probability of {missing[0]} given; taken as 1 minus the others "
                         f"({', '.join(columns)})")
    elif max(abs(low - 100), abs(high - 100)) <= 100 * SUM_ROUNDING:
        if said:
            notes.append(f"{head} probabilities are percentages (row sums {low:.1f}–{high:.1f}); divided by their sum")
    elif max(abs(low - 1), abs(high - 1)) <= SUM_ROUNDING:
        if said:
            notes.append(f"{head} probabilities did not sum to 1 (row sums {low:.3f}–{high:.3f}, rounding); "
                         "they were divided by their sum")
    else:
        row = int(np.nanargmax(np.abs(sums - 1)))
        raise PredictionsError(f"{head} probabilities sum to {low:.3g}–{high:.3g} per row, not 1 (e.g. "
                               f"{_example(frame, row, columns)} in {', '.join(columns)}): give every class's "
                               "probability (a softmax; logits are not probabilities), or only the labels")
    with np.errstate(invalid="ignore", divide="ignore"):
        return probs / sums[:, None]


def _example(frame: pd.DataFrame, row: int, columns: list[str]) -> list[float]:
    """One row's values of `columns`, to 4 significant digits, for an error message."""
    return [float(f"{value:.4g}") for value in pd.to_numeric(frame.loc[frame.index[row], columns])]


def _labels(values: pd.Series, head: str, label_map: LabelMap) -> list[str | None] | None:
    """The model's labels of `head` as FaceAudit's classes (None where empty); for `race7`, None unless its race
    labels are FairFace's seven races."""
    given = [value for value in values if not _empty(value)]
    if head != "race7":
        ours = [label_map.label(head, value) for value in given]
    elif (ours := label_map.race7(given)) is None:
        return None
    by_label = dict(zip(given, ours))
    return [None if _empty(value) else by_label[value] for value in values]


def _outputs(frame: pd.DataFrame, label_map: LabelMap, notes: list[str]) -> pd.DataFrame:
    """The `pred_*` and `p_*` columns of an audit bundle from the file's outputs."""
    out = pd.DataFrame(index=frame.index)
    age = pd.to_numeric(frame["age"].replace("", np.nan), errors="coerce") if "age" in frame else None
    if age is not None and (bad := frame["age"][age.isna() & ~frame["age"].map(_empty)]).size:
        raise PredictionsError(f"age {bad.iloc[0]!r} is not a number ({len(bad)} such rows)")
    out["pred_age"] = age.astype(float) if age is not None else np.nan
    out["pred_age_std"] = np.nan  # a spread only FaceAudit's own models give
    for head in ("gender", "race", "age_bin", "race7"):
        names, ordered = labels.HEAD_CLASSES[head], head != "race7"  # as `core.bundle.prediction_frame` writes them
        probs = _probabilities(frame, head, label_map, notes)
        if probs is not None:
            for index, name in enumerate(names):
                out[f"p_{head}_{name}"] = probs[:, index].astype(np.float32)
            known = ~np.isnan(probs).any(axis=1)
            codes = np.where(known, np.nan_to_num(probs).argmax(1) if head != "age_bin"
                             else labels.median_bin_index(np.nan_to_num(probs)), -1)
            predicted = pd.Categorical.from_codes(codes, categories=list(names), ordered=ordered)
        elif _given(head) in frame and (given := _labels(frame[_given(head)], head, label_map)) is not None:
            predicted = pd.Categorical(given, categories=list(names), ordered=ordered)
        elif head == "race7":  # a model of five races, or none: no seven-class column
            continue
        elif head == "age_bin" and age is not None:  # a bin from the predicted age
            predicted = pd.Categorical(labels.bins_of_ages(out["pred_age"].to_numpy(dtype=float)), categories=list(names),
                                       ordered=True)
        else:
            predicted = pd.Categorical([None] * len(frame), categories=list(names), ordered=True)
        out[f"pred_{head}"] = predicted
    return out


def import_predictions(dataset: Dataset, predictions: pd.DataFrame, *, source: str, label_map: LabelMap | None = None,
                       model_name: str | None = None, command: str | None = None) -> tuple[Bundle, pd.DataFrame]:
    """A bundle of `dataset` audited on imported `predictions` (from `read_predictions`), and the unmatched rows.

    Args:
        dataset: From a reader in `core.datasets`.
        predictions: One row per image, keyed by `file` or `path`.
        source: Where the predictions came from (a file name), recorded as the model's identity.
        model_name: What the model is, in words (default: "imported from <source>").
    """
    label_map, notes = label_map or LabelMap(), list(dataset.notes) + list(predictions.attrs.get("notes", []))
    predictions = _outputs_as_named(predictions, source, notes)
    key = next(key for key in KEYS if key in predictions.columns)
    table = dataset.table.reset_index(drop=True)
    names = table[key].astype(str).map(_normal)
    as_given, predictions = predictions, _by_file_name(predictions, key, names, notes)
    by_key = predictions.set_index(key)
    matched = names.isin(by_key.index).to_numpy()
    rows = by_key.reindex(names[matched]).reset_index(drop=True)
    outputs = _outputs(rows, label_map, notes)
    predicted = outputs.filter(regex="^pred_(age|gender|race|age_bin)$").notna().any(axis=1).to_numpy()
    kept = np.flatnonzero(matched)[predicted]
    frame = pd.concat([table.loc[kept].reset_index(drop=True), outputs[predicted].reset_index(drop=True)], axis=1)
    frame = frame.assign(**{column: pd.NA for column in FACE_RECORD_COLUMNS}).assign(face_reason=NOT_DETECTED)
    frame = with_duplicate_groups(frame)
    missing = table.loc[~matched, ["file", "path", "source"]].assign(reason=f"no prediction for this image in {source}")
    empty = table.loc[np.flatnonzero(matched)[~predicted], ["file", "path", "source"]].assign(
        reason=f"its row in {source} has no output (age, gender, race and age bin all empty)")
    rejects = pd.concat([dataset.rejects, missing, empty], ignore_index=True)[list(REJECT_COLUMNS)]
    unmatched = predictions[~predictions[key].isin(set(names))]
    if len(unmatched):
        notes.append(f"{len(unmatched)} prediction(s) in {source} name no image of {dataset.name}, e.g. "
                     f"{unmatched[key].iloc[0]!r} (listed in {UNMATCHED_FILE})")
    digest = hashlib.sha256(pd.util.hash_pandas_object(as_given, index=False).to_numpy().tobytes()).hexdigest()
    model_id = f"imported-{digest[:12]}"
    metrics = compute_metrics(frame, len(table) + len(dataset.rejects))
    metrics.update({"dataset": dataset.name, "model_id": model_id,
                    "model": {"id": model_id, "backbone": None, "trained_on": None, "dir": None,
                              "imported_from": source, "name": model_name or f"imported from {source}"},
                    "image_root": str(dataset.root) if dataset.root else None, "model_backbone": None,
                    "notes": notes, "input_kind": "imported-predictions", "face_rule": None, "command": command,
                    "training_overlap": None, "training_overlap_note": "unknown: the model's training data are not recorded",
                    "multi_face_images": None, "unmatched_predictions": len(unmatched),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    return Bundle(predictions=frame, metrics=metrics, rejects=rejects), unmatched
