"""Aligned face chips for many images at once (training caches and evaluation runs)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.faces import (
    FaceDetector,
    FaceResult,
    choose_face,
    crop_face,
    face_record,
    find_faces,
    labelled_face,
    thread_detector,
    to_model_size,
)
from core.images import ImageError, load_image

__all__ = ["ChipBatch", "chips_from_utkface", "chips_from_photos", "faces_for_model", "to_model_size"]


@dataclass
class ChipBatch:
    """Chips for a list of images: `chips[i]` belongs to image `i` unless `errors[i]` says why not.

    Attributes:
        chips: `(n, size, size, 3)` uint8; rows of failed images are zeros.
        errors: "" for a usable chip, else the reason (no face, unreadable image).
        records: Per image, what detection found (`core.faces.face_record`: every face, the chosen
            one and why); an empty dict for an unreadable image.
    """

    chips: np.ndarray
    errors: list[str]
    records: list[dict]

    @property
    def n_faces(self) -> np.ndarray:
        """Faces found per image."""
        return np.array([record.get("n_faces", 0) for record in self.records], dtype=np.int32)


def faces_for_model(source: str | bytes | np.ndarray, size: int, detector: FaceDetector | None = None) -> FaceResult:
    """Every face of a photo as the model sees it: aligned on UTKFace's 200 px geometry, then `to_model_size`.

    The one preprocessing path of FaceAudit: batch audits, training chips, the Inspect page and the
    report's explanations all use it, so the same photo gets the same answer everywhere.

    Raises:
        core.images.ImageError: `source` is not a readable image.
    """
    return find_faces(source, detector or thread_detector(), size=size)


_Result = tuple[np.ndarray | None, str, dict]
Box = tuple[float, float, float, float]  # x, y, w, h in pixels of the photo as shown


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """Threads kept for the process's life, so that each keeps its face detector (`thread_detector`) between calls."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceaudit-chips")


def _run(function: Callable[[Any], _Result], paths: Sequence[Any], size: int, workers: int,
         progress: Callable[[Iterable], Iterable] | None) -> ChipBatch:
    chips = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    errors, records = [""] * len(paths), [{} for _ in paths]
    results = _pool(workers).map(function, paths)
    for index, (chip, error, record) in enumerate(progress(results) if progress else results):
        errors[index], records[index] = error, record
        if chip is not None:
            chips[index] = to_model_size(chip, size)
    return ChipBatch(chips=chips, errors=errors, records=records)


def _chosen(image: np.ndarray, face_rule: str, size: int, margin: float | None = None,
            box: Box | None = None) -> tuple[np.ndarray | None, dict]:
    """Detect, choose the labelled face (the one at `box`, else by `face_rule`), align it (or, with `margin`, crop
    it plainly: `core.faces.crop_face`); (None, record) when there is no such face, the record saying why."""
    result = faces_for_model(image, size)
    height, width = image.shape[:2]
    if box is not None:
        index, reason = labelled_face(result.faces, box)
        if index is None:
            return None, face_record(result.faces, -1, reason, width, height)
    elif not result.faces:
        return None, face_record([], -1, "no face found", width, height)
    else:
        index, reason = choose_face(result.faces, width, height, face_rule)
    chip = result.chips[index] if margin is None else crop_face(result.image, result.faces[index].box, margin, size)
    return chip, face_record(result.faces, index, reason, width, height, result.flags[index])


def chips_from_utkface(paths: Sequence[str], *, size: int, face_rule: str = "center", workers: int = 2,
                       progress: Callable[[Iterable], Iterable] | None = None, margin: float | None = None) -> ChipBatch:
    """Re-align UTKFace chips onto the template; a chip with no detected face is used as cropped.

    UTKFace chips already have the template's geometry on average, so the fallback keeps every
    labelled image (its `errors` entry is "" and its record says so).
    """
    def one(path: str) -> _Result:
        try:
            image = load_image(path)
        except ImageError as error:  # a broken file is one reject, never the end of the run
            return None, str(error), {}
        chip, record = _chosen(image, face_rule, size, margin)
        if chip is None:
            return image, "", record | {"face_reason": "no face found: the chip is used as cropped",
                                        "face_flags": "not detected"}
        return chip, "", record

    return _run(one, paths, size, workers, progress)


def chips_from_photos(paths: Sequence[str], *, size: int, face_rule: str = "center", workers: int = 2,
                      progress: Callable[[Iterable], Iterable] | None = None, margin: float | None = None,
                      boxes: Sequence[Box | None] | None = None) -> ChipBatch:
    """Detect every face of arbitrary photos and align the labelled one (the one at its labelled box in `boxes`,
    else `core.faces.choose_face`), or with `margin` crop it plainly (for models trained on face crops).

    Failures are recorded, never dropped.
    """
    def one(item: tuple[str, Box | None]) -> _Result:
        path, box = item
        try:
            image = load_image(path)
        except ImageError as error:
            return None, str(error), {}
        chip, record = _chosen(image, face_rule, size, margin, box)
        return chip, ("" if chip is not None else record["face_reason"]), record

    return _run(one, list(zip(paths, boxes or [None] * len(paths), strict=True)), size, workers, progress)
