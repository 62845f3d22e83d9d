"""One error contract for every command: a FaceAuditError is one line naming the file and the fix, exit status 2."""

import importlib
import shutil

import pytest

from core.bundle import read_bundle
from core.errors import FaceAuditError
from tests.conftest import LONDON_FIXTURES
from training import evaluate


def _evaluate(model_dir, folder, manifest_bytes: bytes | None, capsys, *extra: str):
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(LONDON_FIXTURES / "004_03.jpg", folder / name)
    manifest = folder / "m.csv"
    if manifest_bytes is None:
        manifest.mkdir()
    else:
        manifest.write_bytes(manifest_bytes)
    code = evaluate.main(["--manifest", str(manifest), "--out", str(folder / "bundle"), "--model", str(model_dir),
                          "--threads", "1", *extra])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(("manifest", "message"), [
    (b"id,age\na.jpg,30\n", "missing column(s) ['path']; found ['id', 'age']"),
    (b"", "is empty: it needs a header line with path"),
    (None, "is a folder; give the CSV file inside it"),
    (b"path,age\na.jpg,3\x000\n", "contains NUL bytes: not a text CSV"),
])
def test_unreadable_manifests_are_one_line_and_exit_2(model_dir, tmp_path, capsys, manifest, message):
    code, err = _evaluate(model_dir, tmp_path, manifest, capsys)
    assert code == 2 and err.startswith("error: ") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("manifest", [
    b"path;age;gender\na.jpg;30;male\n",  # semicolons, as a European spreadsheet exports
    b"PATH,AGE,Gender\na.jpg,30,male\n",  # upper-case headers are the label columns, not extras
])
def test_manifest_dialects_are_read(model_dir, tmp_path, capsys, manifest):
    code, _ = _evaluate(model_dir, tmp_path, manifest, capsys)
    frame = read_bundle(tmp_path / "bundle").predictions
    assert code == 0 and frame["age"].tolist() == [30] and frame["gender"].astype(str).tolist() == ["Male"]


def test_latin1_is_read_and_said(model_dir, tmp_path, capsys):
    _evaluate(model_dir, tmp_path, "path,région\na.jpg,Île-de-France\n".encode("latin-1"), capsys)
    bundle = read_bundle(tmp_path / "bundle")
    assert bundle.predictions["région"].tolist() == ["Île-de-France"]
    assert any("read as Latin-1" in note for note in bundle.metrics["notes"])


def test_a_row_with_too_many_fields_is_one_reject_and_shifts_nothing(model_dir, tmp_path, capsys):
    code, _ = _evaluate(model_dir, tmp_path, b"path,age,gender\na.jpg,30,male\nb.jpg,40,female,extra\n", capsys)
    bundle = read_bundle(tmp_path / "bundle")
    assert code == 0 and bundle.predictions[["file", "age"]].values.tolist() == [["a.jpg", 30]]
    assert bundle.rejects["file"].tolist() == ["b.jpg"]
    assert bundle.rejects["reason"].iloc[0] == "m.csv line 3: 4 fields where the header has 3; quote values that contain ','"


def test_debug_shows_the_traceback(model_dir, tmp_path, capsys):
    with pytest.raises(FaceAuditError, match="is empty"):
        _evaluate(model_dir, tmp_path, b"", capsys, "--debug")


@pytest.mark.parametrize(("module", "args"), [
    ("evaluate", ["--manifest", "{tmp}/none.csv", "--out", "{tmp}/b"]),
    ("report", ["--bundle", "{tmp}/none", "--format", "json", "--out", "{tmp}/r.json"]),
    ("mitigate", ["--fit", "{tmp}/none", "--apply", "{tmp}/none", "--out", "{tmp}/b"]),
    ("saliency", ["--bundle", "{tmp}/none"]),
    ("upgrade", ["--bundle", "{tmp}/none", "--input", "photos"]),
    ("data", ["--data", "{tmp}/none"]),
    ("train", ["--data", "{tmp}/none", "--out", "{tmp}/run"]),
    ("baseline", ["--data", "{tmp}/none"]),
    ("template", ["--data", "{tmp}/none"]),
])
def test_every_command_keeps_the_contract(tmp_path, capsys, module, args):
    main = importlib.import_module(f"training.{module}").main
    assert main([arg.format(tmp=tmp_path) for arg in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and str(tmp_path) in err
