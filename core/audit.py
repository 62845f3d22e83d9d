"""Run a model over a dataset: detect, align, predict, and collect everything into an audit bundle."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from core.bundle import Bundle, compute_metrics, prediction_frame
from core.chips import ChipBatch, chips_from_photos, chips_from_utkface
from core.datasets import REJECT_COLUMNS, Dataset
from core.dedup import find_duplicate_groups, scan_images
from core.model import Checkpoint
from core.trainer import CPU, mitigation_note, predict

__all__ = ["run_audit"]


def run_audit(checkpoint: Checkpoint, dataset: Dataset, *, aligned_utkface: bool = False, batch_size: int = 64,
              device: torch.device = CPU,
              progress: Callable[[Iterable, str, int], Iterable] | None = None) -> Bundle:
    """Detect, align and predict every image of `dataset`; images without a usable face become rejects.

    Args:
        checkpoint: A loaded checkpoint.
        dataset: From a reader in `core.datasets` (its rejects are carried into the bundle).
        aligned_utkface: The images are UTKFace chips: re-align, and keep a chip without a detection as cropped.
        progress: Optional `(iterable, description, total) -> iterable` wrapper (e.g. tqdm).
    """
    size = checkpoint.model.config.input_size
    paths = dataset.table["path"].tolist()
    wrap = (lambda description: (lambda it: progress(it, description, len(paths)))) if progress else (lambda _: None)
    align = chips_from_utkface if aligned_utkface else chips_from_photos
    batch: ChipBatch = align(paths, size=size, progress=wrap("detecting faces"))
    ok = np.array([error == "" for error in batch.errors])
    table = dataset.table.loc[ok].reset_index(drop=True)
    outputs = predict(checkpoint.model, batch.chips[ok], batch_size=batch_size, device=device)
    frame = prediction_frame(table, outputs)
    frame["n_faces"] = batch.n_faces[ok]
    frame = _with_duplicate_groups(frame)
    failed = dataset.table.loc[~ok, ["file", "path", "source"]].assign(reason=[e for e in batch.errors if e])
    rejects = pd.concat([dataset.rejects, failed[list(REJECT_COLUMNS)]], ignore_index=True)
    metrics_json = compute_metrics(frame, len(dataset.table) + len(dataset.rejects), dataset.extra_columns)
    metrics_json.update({"dataset": dataset.name, "model_id": checkpoint.model_id,
                         "image_root": str(dataset.root) if dataset.root else None,
                         "model_backbone": checkpoint.model.config.backbone, "notes": dataset.notes,
                         "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    if note := mitigation_note(checkpoint.meta.get("training", {})):
        metrics_json["mitigation"] = note
    return Bundle(predictions=frame, metrics=metrics_json, rejects=rejects)


def _with_duplicate_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `dup_group`, `dup_group_size`, `label_conflict` (see `core.dedup`) to audited rows."""
    if frame.empty:
        return frame.assign(dup_group=pd.Series(dtype="int64"), dup_group_size=pd.Series(dtype="int64"),
                            label_conflict=pd.Series(dtype=bool))
    hashed = scan_images(Dataset(name="", table=frame, rejects=frame.iloc[0:0][list(REJECT_COLUMNS[:3])].assign(reason="")))
    groups = find_duplicate_groups(hashed.table).set_axis(hashed.table["file"])
    by_file = groups.reindex(frame["file"])
    return frame.assign(dup_group=by_file["group"].to_numpy(), dup_group_size=by_file["group_size"].to_numpy(),
                        label_conflict=by_file["label_conflict"].to_numpy())
