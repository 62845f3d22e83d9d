"""Batch audits account for every row: rows in = predictions + rejects, whatever fails, and a bundle is always written."""

import io
import shutil
import zipfile

import pandas as pd
import pytest
import torch
from PIL import Image

from core.bundle import read_bundle
from core.config import SPLIT_FILE, Settings
from core.datasets import read_utkface
from core.model import ModelConfig, create_model
from core.split import read_split
from tests.conftest import LONDON_FIXTURES
from training import evaluate


def _audit(model_dir, folder, manifest: str, *extra: str) -> tuple[int, dict, pd.DataFrame]:
    (folder / "m.csv").write_text(manifest)
    code = evaluate.main(["--manifest", str(folder / "m.csv"), "--out", str(folder / "bundle"), "--model", str(model_dir),
                          "--threads", "1", *extra])
    bundle = read_bundle(folder / "bundle")
    assert bundle.metrics["n_images"] == bundle.metrics["n"] + len(bundle.rejects)  # nothing lost, nothing invented
    return code, bundle.metrics, bundle.rejects


@pytest.mark.parametrize(("manifest", "rejected"), [
    ("path,age,gender\n", 0),  # header only
    ("path,age,gender\na.jpg,300,male\na.jpg,30,robot\n", 2),  # every label bad
    ("path,gender\nblank.png,male\n", 1),  # no face anywhere
])
def test_a_run_where_nothing_survives_still_writes_its_bundle(model_dir, tmp_path, capsys, manifest, rejected):
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a.jpg")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(tmp_path / "blank.png")
    code, metrics, rejects = _audit(model_dir, tmp_path, manifest)
    assert code == 2 and metrics["n"] == 0 and len(rejects) == rejected
    assert "no image of m produced a prediction" in capsys.readouterr().err


def test_one_empty_file_is_one_reject_not_the_end_of_the_run(model_dir, tmp_path):
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    code, metrics, rejects = _audit(model_dir, tmp_path, "path,gender\nempty.jpg,male\na.jpg,male\n",
                                    "--input", "aligned-chips")
    assert code == 0 and metrics["n"] == 1
    assert rejects["file"].tolist() == ["empty.jpg"] and "not an image file" in rejects["reason"].iloc[0]


def test_dataset_columns_named_like_outputs_are_kept_not_overwritten(model_dir, tmp_path):
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a.jpg")
    code, metrics, _ = _audit(model_dir, tmp_path, "path,gender,pred_gender,n_faces,p_gender_Male\na.jpg,male,Female,7,0.1\n")
    frame = read_bundle(tmp_path / "bundle").predictions
    assert frame.loc[0, "manifest_pred_gender"] == "Female" and str(frame.loc[0, "manifest_n_faces"]) == "7"
    assert frame.loc[0, "n_faces"] == 1 and frame.loc[0, "p_gender_Male"] != pytest.approx(0.1)
    assert any("'pred_gender' is kept as 'manifest_pred_gender'" in note for note in metrics["notes"])


def test_a_malformed_utkface_name_is_one_reject(tmp_path):
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "30_0_0_20170101000000000.jpg.chip.jpg")
    shutil.copy(LONDON_FIXTURES / "025_03.jpg", tmp_path / "2¹_1_1_20170101000000001.jpg.chip.jpg")  # a superscript one
    dataset = read_utkface(tmp_path)
    assert dataset.table["file"].tolist() == ["30_0_0_20170101000000000.jpg.chip.jpg"]
    assert "['2¹'] are not whole numbers" in dataset.rejects["reason"].iloc[0]


def test_split_files_missing_from_the_folder_are_rejects(tmp_path):
    test_files = read_split(SPLIT_FILE).query("split == 'test'")["file"].tolist()
    folder = tmp_path / "utkface" / "UTKFace"
    folder.mkdir(parents=True)
    for name in test_files[:2]:
        shutil.copy(LONDON_FIXTURES / "004_03.jpg", folder / name)
    dataset = evaluate.load_named_dataset("utkface-test", Settings(data_dir=tmp_path, model_dir=tmp_path))
    assert len(dataset.table) == 2 and len(dataset.rejects) == len(test_files) - 2
    assert dataset.rejects["reason"].str.startswith("missing file: in utkface.csv (test)").all()
    assert sorted(dataset.rejects["file"]) == sorted(test_files[2:])  # each missing file named once


def test_a_photo_gets_the_same_chip_and_answer_in_a_batch_and_on_the_inspect_page():
    from core.chips import chips_from_photos, faces_for_model
    from core.faces import choose_face
    from core.trainer import predict

    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="test_efficientnet", input_size=48)).eval()
    path = str(LONDON_FIXTURES / "025_03.jpg")
    batch = chips_from_photos([path], size=48).chips[0]
    found = faces_for_model(path, 48)  # what the Inspect page and the report's explanations use
    inspected = found.chips[choose_face(found.faces, found.image.shape[1], found.image.shape[0])[0]]
    assert (batch == inspected).all()
    assert predict(model, batch[None])["gender"].tolist() == predict(model, inspected[None])["gender"].tolist()


def test_csv_cells_a_spreadsheet_would_run_are_escaped(tmp_path):
    from core.bundle import write_bundle
    from core.report import report_csv_zip
    from tests.bundle_fixture import gender_shades_bundle

    bundle = gender_shades_bundle(per_cell=30)
    hostile = '=HYPERLINK("http://x","y").jpg'
    bundle.rejects = pd.DataFrame([{"file": hostile, "path": "/x", "source": "m", "reason": "no face found"}])
    folder = write_bundle(bundle, tmp_path / "b")
    assert "'=HYPERLINK" in (folder / "rejects.csv").read_text()
    assert read_bundle(folder).rejects["file"].iloc[0] == hostile  # read back as written
    frame = bundle.predictions.assign(skin=bundle.predictions["skin"].replace("darker", "@darker"))
    archive = zipfile.ZipFile(io.BytesIO(report_csv_zip(frame, group_by=["skin"])))
    text = archive.read("subgroups_skin.csv").decode()
    assert "'@darker" in text and "\n@darker" not in text
