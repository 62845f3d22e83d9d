"""Aligned face chips for many images at once (training caches and evaluation runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from core.faces import FaceDetector, find_faces
from core.images import ImageError, load_image

__all__ = ["ChipBatch", "chips_from_utkface", "chips_from_photos"]

_local = threading.local()


def _detector() -> FaceDetector:
    """One detector per thread: OpenCV's detector keeps per-call state."""
    if not hasattr(_local, "detector"):
        _local.detector = FaceDetector()
    return _local.detector


@dataclass
class ChipBatch:
    """Chips for a list of images: `chips[i]` belongs to image `i` unless `errors[i]` says why not.

    Attributes:
        chips: `(n, size, size, 3)` uint8; rows of failed images are zeros.
        errors: "" for a usable chip, else the reason (no face, unreadable image).
        n_faces: Faces found per image (the chip is the largest face's).
        boxes: `(n, 4)` float box (x, y, w, h) of the chosen face in the upright image; NaN when none.
    """

    chips: np.ndarray
    errors: list[str]
    n_faces: np.ndarray
    boxes: np.ndarray


def _resize(chip: np.ndarray, size: int) -> np.ndarray:
    if chip.shape[0] == size and chip.shape[1] == size:
        return chip
    interpolation = cv2.INTER_AREA if chip.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(chip, (size, size), interpolation=interpolation)


def _run(function: Callable[[str], tuple[np.ndarray | None, str, int, tuple]], paths: Sequence[str], size: int,
         workers: int, progress: Callable[[Iterable], Iterable] | None) -> ChipBatch:
    chips = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    errors, n_faces, boxes = [""] * len(paths), np.zeros(len(paths), dtype=np.int32), np.full((len(paths), 4), np.nan)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(function, paths)
        for index, (chip, error, count, box) in enumerate(progress(results) if progress else results):
            errors[index], n_faces[index], boxes[index] = error, count, box
            if chip is not None:
                chips[index] = _resize(chip, size)
    return ChipBatch(chips=chips, errors=errors, n_faces=n_faces, boxes=boxes)


def chips_from_utkface(paths: Sequence[str], *, size: int, workers: int = 2,
                       progress: Callable[[Iterable], Iterable] | None = None) -> ChipBatch:
    """Re-align UTKFace chips onto the template; a chip with no detected face is used as cropped.

    UTKFace chips already have the template's geometry on average, so the fallback keeps every
    labelled image (its `errors` entry is "" and `n_faces` is 0).
    """
    def one(path: str) -> tuple[np.ndarray | None, str, int, tuple]:
        detector = _detector()
        image = load_image(path)
        result = find_faces(image, detector)
        if not result.faces:
            return image, "", 0, (np.nan,) * 4
        return result.chips[0], "", len(result.faces), result.faces[0].box

    return _run(one, paths, size, workers, progress)


def chips_from_photos(paths: Sequence[str], *, size: int, workers: int = 2,
                      progress: Callable[[Iterable], Iterable] | None = None) -> ChipBatch:
    """Detect and align the largest face of arbitrary photos; failures are recorded, never dropped."""
    def one(path: str) -> tuple[np.ndarray | None, str, int, tuple]:
        detector = _detector()
        try:
            result = find_faces(path, detector)
        except ImageError as error:
            return None, str(error), 0, (np.nan,) * 4
        if not result.faces:
            return None, "no face found", 0, (np.nan,) * 4
        return result.chips[0], "", len(result.faces), result.faces[0].box

    return _run(one, paths, size, workers, progress)
