import io

import cv2
import numpy as np
import pytest
from PIL import Image

from core.faces import (
    CHIP_SIZE,
    FaceDetector,
    align_face,
    draw_faces,
    face_flags,
    find_faces,
    load_template,
    similarity_transform,
)
from core.images import ImageError
from tests.conftest import LONDON_FIXTURES

PHOTOS = sorted(LONDON_FIXTURES.glob("*.jpg"))


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _photo(index: int = 0) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS[index]).convert("RGB"))


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_one_face_per_london_photo_aligned_to_template(detector, path):
    result = find_faces(path, detector)
    assert len(result.faces) == 1 and result.faces[0].score > 0.8
    chip = result.chips[0]
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
    again = detector.detect(chip)
    error = np.linalg.norm(again[0].landmarks - load_template(), axis=1).mean()
    assert error < 8.0  # px in a 200 px chip; UTKFace's own chips sit 5.9 px from the template on average


def test_several_faces_largest_first(detector):
    canvas = np.full((400, 900, 3), 200, dtype=np.uint8)
    canvas[50:350, 0:300] = _photo(0)
    canvas[100:250, 400:550] = cv2.resize(_photo(1), (150, 150), interpolation=cv2.INTER_AREA)
    canvas[150:250, 700:800] = cv2.resize(_photo(2), (100, 100), interpolation=cv2.INTER_AREA)
    result = find_faces(_jpeg(canvas), detector, size=112)
    assert len(result.faces) == 3
    assert [face.box[0] < 300 for face in result.faces] == [True, False, False]
    assert result.faces[0].area > result.faces[1].area > result.faces[2].area
    assert all(chip.shape == (112, 112, 3) for chip in result.chips)


def test_no_face_is_a_result_not_an_exception(detector):
    gradient = np.tile(np.linspace(0, 255, 300, dtype=np.uint8)[None, :, None], (300, 1, 3))
    result = find_faces(gradient, detector)
    assert result.faces == [] and result.chips == []
    assert result.message.startswith("No face found in this 300 x 300 image")


def test_tiny_face_is_found(detector):
    tiny = cv2.resize(_photo(0), (40, 40), interpolation=cv2.INTER_AREA)  # face about 20 px wide
    result = find_faces(_jpeg(tiny), detector)
    assert len(result.faces) == 1 and result.faces[0].box[2] < 30


def test_huge_photo_is_found_and_boxes_are_in_original_pixels(detector):
    canvas = np.full((6000, 10_000, 3), 90, dtype=np.uint8)
    canvas[1000:4000, 2000:5000] = cv2.resize(_photo(0), (3000, 3000))
    result = find_faces(canvas, detector)
    assert len(result.faces) == 1
    x, y, w, h = result.faces[0].box
    assert 2000 < x + w / 2 < 5000 and 1000 < y + h / 2 < 4000


def test_rotated_exif_photo_is_uprighted_before_detection(detector):
    sideways = np.ascontiguousarray(np.rot90(_photo(0)))  # stored rotated ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with EXIF saying "rotate 90 clockwise to display"
    buffer = io.BytesIO()
    Image.fromarray(sideways).save(buffer, format="JPEG", exif=exif)
    assert len(find_faces(buffer.getvalue(), detector).faces) == 1


def test_grayscale_photo(detector):
    gray = Image.open(PHOTOS[0]).convert("L")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    result = find_faces(buffer.getvalue(), detector)
    assert len(result.faces) == 1 and result.chips[0].shape[2] == 3


def test_non_image_raises_image_error(detector):
    with pytest.raises(ImageError, match="not an image file"):
        find_faces(b"%PDF-1.4 not a photo", detector)


def test_similarity_transform_recovers_a_known_transform():
    template = load_template()
    angle, scale, shift = np.deg2rad(20), 1.3, np.array([40.0, 25.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ rotation.T + shift
    matrix = similarity_transform(landmarks, template)
    np.testing.assert_allclose(landmarks @ matrix[:, :2].T + matrix[:, 2], template, atol=1e-6)


def test_align_face_moves_landmark_pixels_onto_template():
    template = load_template()
    landmarks = template * 1.5 + [30.0, 60.0]
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    for x, y in landmarks.round().astype(int):
        image[y - 3 : y + 4, x - 3 : x + 4] = 255
    chip = align_face(image, landmarks)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)
    for u, v in template.round().astype(int):
        assert chip[v, u].min() > 200
    assert chip.mean() < 20


def test_draw_faces_marks_each_box(detector):
    photo = _photo(0)
    faces = detector.detect(photo)
    drawn = draw_faces(photo, faces)
    assert drawn.shape == photo.shape and not np.array_equal(drawn, photo)
    x, y, _, _ = (int(round(v)) for v in faces[0].box)
    assert drawn[y, x + 5].tolist() == [59, 91, 219]


@pytest.mark.parametrize("turns, flag", [(0, "none"), (1, "sideways"), (2, "upside down"), (3, "sideways")])
@pytest.mark.parametrize("index", range(len(PHOTOS)))
def test_turned_faces_are_flagged(detector, index, turns, flag):
    # YuNet finds turned faces but places their landmarks as if upright: the chip shows the face turned.
    result = find_faces(np.ascontiguousarray(np.rot90(_photo(index), turns)), detector)
    assert len(result.faces) == 1
    assert flag in face_flags(result.faces[0], result.chips[0], detector)


def test_tiny_face_is_flagged_small(detector):
    canvas = np.full((200, 200, 3), 128, dtype=np.uint8)
    canvas[80:112, 80:112] = cv2.resize(_photo(0), (32, 32), interpolation=cv2.INTER_AREA)
    result = find_faces(canvas, detector)
    assert len(result.faces) == 1 and result.faces[0].box[2] < 20
    assert face_flags(result.faces[0], result.chips[0], detector).startswith("small")


def test_low_detector_score_is_flagged(detector):
    result = find_faces(_photo(0), detector)
    face = result.faces[0]
    weak = type(face)(box=face.box, landmarks=face.landmarks, score=0.7)
    assert face_flags(weak, result.chips[0], detector) == "low score"
