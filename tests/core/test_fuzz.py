"""Property tests (hypothesis, seeded and bounded) of what reads untrusted input: manifests, UTKFace names, images.

The properties: every input ends as a result or as one of FaceAudit's own errors (never another
exception), and every row that goes in comes out as a row or a reject.
"""

import csv
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core import labels
from core.datasets import ManifestError, parse_utkface_name, read_manifest, read_utkface
from core.images import MAX_SIDE, ImageError, load_image
from tests.conftest import noise_image

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Cell text mixing valid labels with what spreadsheets and users really produce.
CELLS = st.one_of(
    st.sampled_from(["", " ", "NA", "30", "30.0", "-1", "1e3", "nan", "inf", "Male", "female", "F", "WHITE",
                     "East Asian", "20-29", "70+", "more than 70", "=1+1", "\u00b2", "a.png"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
HEADERS = ["path", "PATH", "age", "Age", "AGE", "age_bin", "gender", "Gender", "race", "skin", "file", "source",
           "pred_gender", "n_faces", "p_gender_Male", "identity", ""]


@FUZZ
@given(header=st.lists(st.sampled_from(HEADERS), min_size=1, max_size=6),
       rows=st.lists(st.lists(CELLS, min_size=0, max_size=8), max_size=8),
       delimiter=st.sampled_from([",", ";", "\t", "|"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]))
def test_manifest_rows_in_equal_rows_plus_rejects(tmp_path, header, rows, delimiter, encoding):
    (tmp_path / "a.png").write_bytes(b"")  # an existing path; its content is not read here
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows([header, *rows])
    text = buffer.getvalue()
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    (tmp_path / "m.csv").write_bytes(data)
    try:
        dataset = read_manifest(tmp_path / "m.csv")
    except ManifestError as error:
        assert "m.csv" in str(error)
        return
    # The records a spreadsheet would show (the delimiter is read off the header line; one column means ",").
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter if len(header) > 1 else ",", skipinitialspace=True))
    written = sum(any(cell.strip() for cell in record) for record in records[1:])
    assert len(dataset.table) + len(dataset.rejects) == written
    assert all(dataset.rejects["reason"].str.len() > 0)


@FUZZ
@given(data=st.binary(max_size=400))
def test_manifest_of_arbitrary_bytes_is_read_or_refused(tmp_path, data):
    path = tmp_path / "m.csv"
    path.write_bytes(b"path,age\n" + data)
    try:
        dataset = read_manifest(path)
    except ManifestError:
        return
    assert all(reason for reason in dataset.rejects["reason"])


NAME_PARTS = st.one_of(st.integers(min_value=-5, max_value=130).map(str),
                       st.text(alphabet="0123456789\u00b2\u0663 _.-aj", max_size=6))


@FUZZ
@given(parts=st.lists(NAME_PARTS, min_size=0, max_size=6),
       suffix=st.sampled_from([".jpg.chip.jpg", "jpg.chip.jpg", " .jpg.chip.jpg", ".jpg", ".chip.jpg", ""]))
def test_utkface_name_parses_or_says_why(parts, suffix):
    name = "_".join(parts) + suffix
    try:
        parsed = parse_utkface_name(name)
    except labels.LabelError as error:
        assert str(error)
        return
    assert parsed["gender"] in labels.GENDERS and parsed["race"] in labels.RACES
    assert labels.AGE_MIN <= parsed["age"] <= labels.AGE_MAX


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(alphabet="0123456789_.jpchi \u00b2", min_size=1, max_size=24), max_size=12, unique=True))
def test_utkface_folder_keeps_every_file(tmp_path_factory, names):
    folder = tmp_path_factory.mktemp("utk")
    for name in names:
        if name not in (".", ".."):
            (folder / name).write_bytes(b"")
    files = [path for path in folder.iterdir() if path.is_file()]
    dataset = read_utkface(folder)
    assert len(dataset.table) + len(dataset.rejects) == len(files)


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    noise_image(3, 48).save(buffer, format=fmt)
    return buffer.getvalue()


VALID = {fmt: _encoded(fmt) for fmt in ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"]}


def _check_image(data: bytes) -> None:
    try:
        array = load_image(data)
    except ImageError as error:
        assert str(error).startswith("uploaded file: ")
        return
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    assert 0 < max(array.shape[:2]) <= MAX_SIDE


@FUZZ
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_fail_clearly(data):
    _check_image(data)


@FUZZ
@given(fmt=st.sampled_from(sorted(VALID)),
       edits=st.lists(st.tuples(st.floats(min_value=0, max_value=1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.floats(min_value=0.05, max_value=1.0))
def test_damaged_images_decode_or_fail_clearly(fmt, edits, cut):
    data = bytearray(VALID[fmt])
    for where, value in edits:
        data[int(where * len(data))] = value
    _check_image(bytes(data[: max(1, int(cut * len(data)))]))


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_undamaged_fuzz_seeds_decode(fmt):
    assert load_image(VALID[fmt]).shape == (48, 48, 3)


def test_fuzz_seed_image_is_what_the_fuzzer_damages():
    assert Image.open(io.BytesIO(VALID["PNG"])).size == (48, 48)
