import io
import shutil

import numpy as np
import pandas as pd
import pytest

from core import labels
from core.audit import run_audit
from core.bundle import UNSHOWN_COLUMNS, BundleError, read_bundle, read_unshown, resolve_image, write_bundle
from core.datasets import read_manifest
from core.gallery import Mistakes, mistakes_csv
from tests.conftest import LONDON_FIXTURES


def test_audit_predicts_faces_and_records_every_reject(tiny_checkpoint, photo_manifest, tmp_path):
    bundle = run_audit(tiny_checkpoint, read_manifest(photo_manifest))
    frame = bundle.predictions
    assert frame["file"].tolist() == ["004_03.jpg", "025_03.jpg", "030_08.jpg"]
    assert frame["identity"].tolist() == ["p004", "p025", "p030"]
    probability_columns = [f"p_race_{race}" for race in labels.RACES]
    assert frame[probability_columns].sum(axis=1).round(4).eq(1).all()
    assert list(frame["pred_gender"].cat.categories) == list(labels.GENDERS)
    reasons = dict(zip(bundle.rejects["file"], bundle.rejects["reason"]))
    assert reasons["blank.png"] == "no face found"
    assert "not an image file" in reasons["notes.jpg"]
    assert reasons["missing.jpg"].startswith("missing file")
    metrics = bundle.metrics
    assert (metrics["n"], metrics["n_images"], metrics["n_rejected"]) == (3, 6, 3)
    assert metrics["faces_found"] == 0.5
    assert metrics["gender_accuracy_all_images"] == pytest.approx(metrics["gender_accuracy"] * 0.5)
    assert set(metrics["groups"]["race"]) == {"White", "Black", "Asian"}
    assert metrics["groups"]["identity"]["p025"]["n"] == 1


def test_a_manifest_in_fairface_races_is_audited_on_the_seven(photo_manifest):
    import torch

    from core.model import Checkpoint, ModelConfig, create_model

    torch.manual_seed(0)
    seven = Checkpoint(model=create_model(ModelConfig(backbone="test_efficientnet", input_size=48, race7=True)).eval(),
                       meta={"weights_sha256": "0123456789abcdef"})
    bundle = run_audit(seven, read_manifest(photo_manifest))  # its races: White, Black, East Asian
    frame = bundle.predictions
    assert frame["fairface_race"].tolist() == ["White", "Black", "East Asian"]
    assert bundle.metrics["race7_accuracy"] == pytest.approx((frame["fairface_race"] == frame["pred_race7"]).mean())
    assert set(bundle.metrics["groups"]["fairface_race"]) == {"White", "Black", "East Asian"}


def test_an_export_reads_back_the_columns_the_dashboard_leaves_out(tiny_checkpoint, photo_manifest, tmp_path):
    bundle = run_audit(tiny_checkpoint, read_manifest(photo_manifest))
    for folder in (write_bundle(bundle, tmp_path / "one"), write_bundle(bundle, tmp_path / "parts", part_rows=2)):
        shown = read_bundle(folder, leave_out=UNSHOWN_COLUMNS).predictions.iloc[[2, 0]]  # rows of a filtered view
        assert read_unshown(folder, shown.index)["faces"].tolist() == bundle.predictions["faces"].iloc[[2, 0]].tolist()
        wrong = Mistakes(shown, rows=np.array([1, 0]), age_error=np.zeros(2), confidence=np.ones(2))
        back = pd.read_csv(io.BytesIO(mistakes_csv(wrong, folder)))
        assert back["file"].tolist() == ["004_03.jpg", "030_08.jpg"]
        assert back["faces"].tolist() == bundle.predictions["faces"].iloc[[0, 2]].tolist()
    assert read_unshown(folder, shown.index[:0]).empty
    everything = Mistakes(bundle.predictions, rows=np.array([0]), age_error=np.zeros(1), confidence=np.ones(1))
    assert pd.read_csv(io.BytesIO(mistakes_csv(everything, folder))).columns.tolist().count("faces") == 1


def test_bundle_round_trip_and_errors(tiny_checkpoint, photo_manifest, tmp_path):
    bundle = run_audit(tiny_checkpoint, read_manifest(photo_manifest))
    folder = write_bundle(bundle, tmp_path / "bundle")
    loaded = read_bundle(folder)
    pd.testing.assert_frame_equal(loaded.predictions, bundle.predictions, check_dtype=False, check_categorical=False)
    assert loaded.predictions["race"].cat.ordered
    assert loaded.metrics["n"] == 3 and loaded.metrics["groups"] == bundle.metrics["groups"]
    assert len(loaded.rejects) == 3
    shown = read_bundle(folder, leave_out=(*UNSHOWN_COLUMNS, "file")).predictions  # a required column is read anyway
    assert "faces" in loaded.predictions and list(shown.columns) == [c for c in loaded.predictions if c != "faces"]
    parts = read_bundle(write_bundle(bundle, tmp_path / "parts", part_rows=2), leave_out=UNSHOWN_COLUMNS).predictions
    pd.testing.assert_frame_equal(parts, shown)
    metrics_file = folder / "metrics.json"
    metrics_file.write_text(metrics_file.read_text().replace("faceaudit-bundle/1", "faceaudit-bundle/99"))
    with pytest.raises(BundleError, match="unknown bundle format 'faceaudit-bundle/99'"):
        read_bundle(folder)
    (folder / "rejects.csv").unlink()
    with pytest.raises(BundleError, match="is not an audit bundle: missing rejects.csv"):
        read_bundle(folder)


def test_audit_without_labels_reports_null_metrics(tiny_checkpoint, tmp_path):
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a.jpg")
    (tmp_path / "m.csv").write_text("path\na.jpg\n")
    metrics = run_audit(tiny_checkpoint, read_manifest(tmp_path / "m.csv")).metrics
    assert metrics["n"] == 1
    assert metrics["age_mae"] is None and metrics["gender_accuracy"] is None and metrics["race_accuracy"] is None
    assert set(metrics["groups"]) == {"n_faces", "multi_face", "face_flags", "label_conflict"}  # no label columns to group by


def test_audit_marks_duplicates(tiny_checkpoint, tmp_path):
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a.jpg")
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a_copy.jpg")
    shutil.copy(LONDON_FIXTURES / "025_03.jpg", tmp_path / "b.jpg")
    (tmp_path / "m.csv").write_text("path,age\na.jpg,30\na_copy.jpg,31\nb.jpg,21\n")
    frame = run_audit(tiny_checkpoint, read_manifest(tmp_path / "m.csv")).predictions.set_index("file")
    assert frame.loc["a.jpg", "dup_group"] == frame.loc["a_copy.jpg", "dup_group"] != frame.loc["b.jpg", "dup_group"]
    assert frame.loc["a.jpg", "label_conflict"] and not frame.loc["b.jpg", "label_conflict"]


def test_resolve_image_looks_in_the_current_data_folder(tmp_path):
    (tmp_path / "data" / "faces").mkdir(parents=True)
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "data" / "faces" / "x.jpg")
    row = pd.Series({"path": "/elsewhere/faces/x.jpg", "file": "x.jpg"})
    metrics = {"image_root": "/elsewhere/faces", "image_root_in_data": "faces"}
    assert resolve_image(row, metrics, tmp_path / "data") == tmp_path / "data" / "faces" / "x.jpg"
    assert resolve_image(row, metrics, None) is None


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda f: (f / "predictions.parquet").write_bytes(b"PAR1 not parquet"), "a file of the bundle is damaged"),
    (lambda f: (f / "metrics.json").write_text("{not json"), "metrics.json is not valid JSON"),
    (lambda f: (f / "metrics.json").write_text("[1, 2]"), "metrics.json must hold a JSON object"),
    (lambda f: pd.read_parquet(f / "predictions.parquet").drop(columns=["pred_gender"]).to_parquet(
        f / "predictions.parquet"), r"lacks column\(s\) \['pred_gender'\]; rebuild it with: python -m training.evaluate"),
    (lambda f: pd.read_parquet(f / "predictions.parquet").head(2).to_parquet(f / "predictions.parquet"),
     "metrics.json describes 3 faces but predictions.parquet holds 2: the two files come from different audits"),
])
def test_a_damaged_bundle_is_refused_when_opened(tiny_checkpoint, photo_manifest, tmp_path, tamper, message):
    bundle = run_audit(tiny_checkpoint, read_manifest(photo_manifest), command="python -m training.evaluate --manifest m")
    folder = write_bundle(bundle, tmp_path / "bundle")
    tamper(folder)
    with pytest.raises(BundleError, match=message):
        read_bundle(folder)
