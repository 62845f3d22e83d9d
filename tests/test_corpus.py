"""The bad-input corpus (`tests/corpus.py`) driven through its paths: images through `load_image` and a batch
audit, manifests through `python -m training.evaluate`, model folders through `load_checkpoint` and the Inspect
page, bundles through `read_bundle` and the Overview page. Each kind must end as its declared outcome, and every
run must account for each row: rows in = predictions + rejects.
"""

import csv
import re
import shutil

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.bundle import BundleError, read_bundle
from core.config import REPO_ROOT
from core.images import ImageError, load_image
from core.model import CheckpointError, ModelConfig, create_model, load_checkpoint, save_checkpoint
from tests.conftest import LONDON_FIXTURES
from tests.corpus import GOOD, OUTCOMES, bundle_cases, image_cases, manifest_cases, model_cases
from training import evaluate

APP = str(REPO_ROOT / "app.py")
IMAGES, MANIFESTS, BUNDLES = image_cases(), manifest_cases(), bundle_cases()


def _ids(cases) -> list[str]:
    return [case.kind for case in cases]


def test_the_corpus_covers_at_least_40_kinds():
    kinds = [*_ids(IMAGES), *_ids(MANIFESTS), *_ids(BUNDLES), *MODEL_KINDS]
    assert len(kinds) >= 40 and {case.outcome for case in [*IMAGES, *MANIFESTS, *BUNDLES]} == set(OUTCOMES)


def _evaluate(manifest, out, model_dir, capsys) -> tuple[int, str]:
    code = evaluate.main(["--manifest", str(manifest), "--out", str(out), "--model", str(model_dir), "--threads", "1"])
    return code, capsys.readouterr().err.strip()


# --- images: the library, then one batch audit of all of them ---

@pytest.fixture(scope="module")
def image_audit(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("images")
    paths = {case.kind: case.make(folder) for case in IMAGES}
    with open(folder / "m.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "kind"])
        writer.writerows([[path.name, kind] for kind, path in paths.items()])
    code = evaluate.main(["--manifest", str(folder / "m.csv"), "--out", str(folder / "bundle"),
                          "--model", str(model_dir), "--threads", "1"])
    return code, paths, read_bundle(folder / "bundle"), folder


def test_image_batch_accounts_for_every_kind(image_audit):
    code, paths, bundle, folder = image_audit
    assert code == 0
    assert bundle.metrics["n_images"] == len(IMAGES) == bundle.metrics["n"] + len(bundle.rejects)
    written = pd.read_csv(folder / "bundle" / "rejects.csv", dtype=str, keep_default_na=False)
    assert not any(re.match(r"[=+\-@]", value) for value in written.to_numpy().ravel())  # formula-safe


@pytest.mark.parametrize("case", IMAGES, ids=_ids(IMAGES))
def test_image_kind(image_audit, case):
    _, paths, bundle, _ = image_audit
    path = paths[case.kind]
    if case.outcome == "accepted" or "no face" in case.expect:
        assert load_image(path).ndim == 3
    elif path.is_file():
        with pytest.raises(ImageError, match=case.expect):
            load_image(path)
    kept = bundle.predictions[bundle.predictions["kind"] == case.kind]
    rejected = bundle.rejects[bundle.rejects["file"] == path.name]
    if case.outcome == "accepted":
        assert len(kept) == 1 and rejected.empty
        flags = kept["face_flags"].iloc[0]
        assert (flags == "none") if case.expect == "none" else re.search(case.expect, flags), flags
    else:
        assert kept.empty and len(rejected) == 1
        assert re.search(case.expect, rejected["reason"].iloc[0]), rejected["reason"].iloc[0]


def test_five_faces_are_all_recorded(image_audit):
    _, _, bundle, _ = image_audit
    row = bundle.predictions[bundle.predictions["kind"] == "five faces"].iloc[0]
    assert row["n_faces"] == 5 and row["multi_face"]


# --- manifests: the CLI ---

@pytest.mark.parametrize("case", MANIFESTS, ids=_ids(MANIFESTS))
def test_manifest_kind(tmp_path, model_dir, capsys, case):
    for name in GOOD:
        shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / name)
    (tmp_path / "sub").mkdir()
    manifest = case.make(tmp_path)
    code, err = _evaluate(manifest, tmp_path / "bundle", model_dir, capsys)
    assert "Traceback" not in err
    if case.outcome == "error":
        assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert re.search(case.expect, err), err
        assert not (tmp_path / "bundle").exists()
        return
    bundle = read_bundle(tmp_path / "bundle")
    assert bundle.metrics["n_images"] == case.rows == bundle.metrics["n"] + len(bundle.rejects)
    assert len(bundle.rejects) == case.rejects
    said = " ".join([err, *bundle.metrics["notes"], *bundle.rejects["reason"]])
    assert re.search(case.expect, said), said
    assert code == (2 if case.rows == case.rejects else 0)  # exit 2 when nothing produced a prediction


def test_formula_in_a_manifest_path_is_escaped_in_rejects_csv(tmp_path, model_dir, capsys):
    case = next(case for case in MANIFESTS if case.kind == "formula injection in a path")
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "b.jpg")
    _evaluate(case.make(tmp_path), tmp_path / "bundle", model_dir, capsys)
    text = (tmp_path / "bundle" / "rejects.csv").read_text()
    assert "'=cmd" in text and "\n=cmd" not in text and ",=cmd" not in text


# --- model folders: the library and the Inspect page ---

@pytest.fixture(scope="module")
def model_corpus(tmp_path_factory, model_dir):
    torch.manual_seed(1)
    other = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48)),
                            tmp_path_factory.mktemp("other"))
    return {case.kind: case for case in model_cases(model_dir, other)}


MODEL_KINDS = ["good checkpoint", "pretrained: true (ignored, never fetched)",
               "pretrained_file pointing at a pickle (ignored)", "missing folder", "no config.json", "no weights",
               "config not json", "config a json list", "unknown backbone", "input_size 20000", "input_size text",
               "truncated weights", "weights of another model"]


def test_model_kinds_listed_here_are_the_corpus(model_corpus):
    assert list(model_corpus) == MODEL_KINDS


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_folder_kind(tmp_path, monkeypatch, model_corpus, kind):
    case = model_corpus[kind]
    folder = case.make(tmp_path)
    if case.outcome == "accepted":
        assert load_checkpoint(folder).model.config.input_size == 48
    else:
        with pytest.raises(CheckpointError, match=re.compile(case.expect, re.IGNORECASE)):
            load_checkpoint(folder)
    monkeypatch.setenv("FACEAUDIT_MODEL", str(folder))
    page = AppTest.from_file(APP, default_timeout=60)
    page.switch_page("pages/inspect_photo.py")
    page.run()
    assert not page.exception, page.exception
    errors = [error.value for error in page.error]
    if case.outcome == "accepted":
        assert not errors
    else:
        assert len(errors) == 1 and re.search(case.expect, errors[0], re.IGNORECASE), errors


# --- bundles: the library and the Overview page ---

@pytest.mark.parametrize("case", BUNDLES, ids=_ids(BUNDLES))
def test_bundle_kind(tmp_path, monkeypatch, model_dir, case):
    folder = case.make(tmp_path)
    if case.outcome == "accepted":
        bundle = read_bundle(folder)
        assert bundle.metrics["n_images"] == bundle.metrics["n"] + len(bundle.rejects)
    else:
        with pytest.raises(BundleError, match=case.expect):
            read_bundle(folder)
    monkeypatch.setenv("FACEAUDIT_MODEL", str(model_dir))
    page = AppTest.from_file(APP, default_timeout=60)
    page.session_state["bundle_extra"] = str(folder)
    page.run()
    assert not page.exception, page.exception
    errors = [error.value for error in page.error]
    if case.outcome == "accepted":
        assert not errors, errors
        shown = [element.value for element in [*page.subheader, *page.markdown, *page.caption]]
        hostile = [text for text in shown if "pixel" in text]
        assert bool(hostile) == (case.kind == "hostile markdown and formulas")
        assert not any("![x](" in text or "<script>" in text for text in hostile), hostile  # shown as text, not markup
    else:
        assert any(re.search(case.expect, error) for error in errors), errors
