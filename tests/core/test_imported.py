"""Auditing a model from its predictions alone (`core.imported`), on synthetic and on real outside outputs."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from core.bundle import read_bundle
from core.datasets import REJECT_COLUMNS, Dataset
from core.imported import UNMATCHED_FILE, LabelMap, PredictionsError, import_predictions, read_predictions
from tests.bundle_fixture import synthetic_predictions, vendor_predictions
from training import import_predictions as cli

VENDOR_MAP = {"columns": {"image": "file", "predicted_age": "age"}, "gender": {"Man": "Male", "Woman": "Female"}}


def _dataset(table: pd.DataFrame) -> Dataset:
    return Dataset(name="synthetic", table=table, rejects=pd.DataFrame(columns=list(REJECT_COLUMNS)))


def _vendor_files(tmp_path, outputs: pd.DataFrame, label_map: dict = VENDOR_MAP):
    outputs.to_csv(tmp_path / "vendor.csv", index=False)
    (tmp_path / "map.json").write_text(json.dumps(label_map))
    return tmp_path / "vendor.csv", LabelMap.read(tmp_path / "map.json")


def test_import_joins_maps_labels_and_accounts_for_every_row(tmp_path):
    table, outputs = vendor_predictions()
    path, label_map = _vendor_files(tmp_path, outputs)
    bundle, unmatched = import_predictions(_dataset(table), read_predictions(path, label_map), source="vendor.csv",
                                           label_map=label_map)
    frame, truth = bundle.predictions, synthetic_predictions().set_index("file")
    assert len(frame) == 238 and list(bundle.rejects["file"]) == ["img_0000.jpg", "img_0001.jpg"]
    assert set(bundle.rejects["reason"]) == {"no prediction for this image in vendor.csv"}
    assert list(unmatched["file"]) == ["not_in_the_dataset.jpg"] and bundle.metrics["unmatched_predictions"] == 1
    assert any("1 prediction(s) in vendor.csv name no image" in note for note in bundle.metrics["notes"])
    # the vendor's words became FaceAudit's classes, row by row
    assert (frame["pred_gender"].astype(str).to_numpy() == truth.loc[frame["file"], "pred_gender"].astype(str)).all()
    expected = (truth.loc[frame["file"], "pred_gender"] == truth.loc[frame["file"], "gender"]).mean()
    assert bundle.metrics["gender_accuracy"] == pytest.approx(expected)
    assert bundle.metrics["race_accuracy"] is None  # no race predicted: not counted as wrong
    assert frame["skin"].eq("lighter").all()  # the auditor's own columns travel with the rows
    assert bundle.metrics["model"]["imported_from"] == "vendor.csv"


def test_probabilities_of_several_labels_sum_onto_one_class():
    table = synthetic_predictions(10)[["file", "path", "source", "age", "age_bin", "gender", "race"]]
    outputs = pd.DataFrame({"file": table["file"], "p_race_East Asian": 0.3, "p_race_Southeast Asian": 0.3,
                            "p_race_White": 0.4})
    bundle, _ = import_predictions(_dataset(table), outputs, source="x.csv")
    assert (bundle.predictions["pred_race"] == "Asian").all()
    assert np.allclose(bundle.predictions["p_race_Asian"], 0.6)
    # FairFace's races: also kept as the seven, where White wins
    assert (bundle.predictions["pred_race7"] == "White").all()
    assert np.allclose(bundle.predictions["p_race7_East Asian"], 0.3) and (bundle.predictions["p_race7_Indian"] == 0).all()


def test_a_model_of_fairface_races_is_audited_on_the_seven():
    table = synthetic_predictions(4)[["file", "path", "source", "age", "age_bin", "gender", "race"]].assign(
        fairface_race=["White", "Latino_Hispanic", "East Asian", "Middle Eastern"])
    outputs = pd.DataFrame({"file": table["file"], "race": ["White", "Hispanic", "Southeast Asian", ""]})
    seven, _ = import_predictions(_dataset(table), outputs, source="x.csv",
                                  label_map=LabelMap(values={"race": {"Hispanic": "Latino_Hispanic"}}))
    frame = seven.predictions
    assert frame["pred_race7"].tolist() == ["White", "Latino_Hispanic", "Southeast Asian"]  # the 4th: no output
    assert frame["pred_race"].tolist() == ["White", "Others", "Asian"]
    assert seven.metrics["race7_accuracy"] == pytest.approx(2 / 3)
    five, _ = import_predictions(_dataset(table), outputs.assign(race=["White", "Others", "Asian", ""]), source="x.csv")
    assert "pred_race7" not in five.predictions and five.metrics.get("race7_accuracy") is None


@pytest.mark.parametrize("change, message", [
    (lambda o: o.assign(gender="Nonbinary-ish"), "gender label 'Nonbinary-ish' is not mapped"),
    (lambda o: o.assign(predicted_age="forty"), "age 'forty' is not a number"),
    (lambda o: pd.concat([o, o.iloc[:1]]), "have more than one prediction, e.g. 'img_0002.jpg'"),
    (lambda o: o.drop(columns="image"), "has no image column"),
    (lambda o: o[["image"]], "has no prediction column"),
    (lambda o: o.assign(p_race_White=2.5, p_race_Black=-1.0),  # the 28 that name an image of the dataset
     "race probabilities are negative in 28 rows (e.g. [2.5, -1.0] in p_race_White, p_race_Black): logits?"),
])
def test_a_malformed_predictions_file_is_refused_with_the_reason(tmp_path, change, message):
    table, outputs = vendor_predictions(30)
    path, label_map = _vendor_files(tmp_path, change(outputs))
    with pytest.raises(PredictionsError, match=re.escape(message)):
        import_predictions(_dataset(table), read_predictions(path, label_map), source="vendor.csv", label_map=label_map)


def test_cli_writes_a_bundle_that_reads_back_with_rejects_and_unmatched(tmp_path, capsys):
    table, outputs = vendor_predictions(len(set(synthetic_predictions()["path"])))  # one row per sample photo
    manifest = tmp_path / "manifest.csv"
    table.drop(columns=["file", "source"]).to_csv(manifest, index=False)
    outputs = outputs.assign(image=list(table["path"].iloc[2:]) + ["/nowhere/x.jpg"]).rename(columns={"image": "path"})
    path, _ = _vendor_files(tmp_path, outputs, {"gender": VENDOR_MAP["gender"], "columns": {"predicted_age": "age"}})
    assert cli.main(["--manifest", str(manifest), "--predictions", str(path), "--labels", str(tmp_path / "map.json"),
                     "--name", "Vendor API", "--out", str(tmp_path / "bundle")]) == 0
    bundle = read_bundle(tmp_path / "bundle")
    assert bundle.metrics["model"]["name"] == "Vendor API" and bundle.metrics["input_kind"] == "imported-predictions"
    assert (bundle.metrics["n"], bundle.metrics["n_rejected"]) == (len(table) - 2, 2)
    assert pd.read_csv(tmp_path / "bundle" / UNMATCHED_FILE)["path"].tolist() == ["/nowhere/x.jpg"]
    assert "2 images rejected (reasons in rejects.csv), 1 predictions unmatched" in capsys.readouterr().out


def test_our_own_fairface_predictions_imported_give_the_same_metrics(tmp_path, shared_data):
    """Round trip on real in-the-wild photos: the shipped bundle's outputs, written as an outside file, imported."""
    from core.config import REPO_ROOT, Settings
    from training.evaluate import load_named_dataset

    shipped = read_bundle(REPO_ROOT / "models" / "default" / "audits" / "fairface-sample")
    probabilities = [c for c in shipped.predictions.columns if c.startswith("p_")]
    shipped.predictions[["file", *probabilities]].to_parquet(tmp_path / "ours.parquet")
    dataset = load_named_dataset("fairface-sample", Settings.from_env())  # shared_data: skipped without it
    bundle, unmatched = import_predictions(dataset, read_predictions(tmp_path / "ours.parquet"), source="ours.parquet")
    assert unmatched.empty and bundle.metrics["n"] == shipped.metrics["n"]
    assert bundle.metrics["n_rejected"] == shipped.metrics["n_rejected"]  # the photo without a face has no row
    for name in ("gender_accuracy", "race_accuracy", "race7_accuracy"):
        assert bundle.metrics[name] == pytest.approx(shipped.metrics[name])


def test_a_bundles_own_predictions_are_read_from_its_pred_columns_never_from_its_labels():
    """A FaceAudit bundle's predictions.parquet holds the truth as `age`, `gender`, ... beside `pred_*`: imported as
    it is, the true ages were taken for the model's (age MAE 0.0 on the shipped UTKFace test bundle)."""
    frame = synthetic_predictions(40)
    table = frame[["file", "path", "source", "age", "age_bin", "gender", "race"]]
    outputs = frame.drop(columns=[c for c in frame.columns if c.startswith("p_")])  # labels only: pred_* and the truth
    bundle, _ = import_predictions(_dataset(table), outputs, source="predictions.parquet")
    assert bundle.metrics["age_mae"] == pytest.approx((frame["pred_age"] - frame["age"]).abs().mean(), rel=1e-6)
    assert bundle.metrics["age_mae"] > 0
    assert bundle.metrics["gender_accuracy"] == pytest.approx((frame["pred_gender"] == frame["gender"]).mean())
    assert any("taken as labels, not predictions" in note for note in bundle.metrics["notes"])


def _gender_table(n=6):
    return synthetic_predictions(n)[["file", "path", "source", "age", "age_bin", "gender", "race"]]


def test_a_probability_of_one_class_alone_gives_the_other_the_rest():
    """P(Female) alone, as a binary classifier gives it: it was divided by itself, and every face called a woman."""
    table = _gender_table()
    p_female = np.array([0.9, 0.1, 0.6, 0.2, 0.0004, 1.0])
    bundle, _ = import_predictions(_dataset(table), pd.DataFrame({"file": table["file"], "p_gender_Female": p_female}),
                                   source="binary.csv")
    assert bundle.predictions["pred_gender"].astype(str).tolist() == ["Female", "Male", "Female", "Male", "Male", "Female"]
    assert np.allclose(bundle.predictions["p_gender_Male"], 1 - p_female)
    assert any("no probability of Male given; taken as 1 minus the others" in note for note in bundle.metrics["notes"])


def test_percentages_are_read_as_shares_and_other_sums_are_refused():
    table = _gender_table(2)
    percent = pd.DataFrame({"file": table["file"], "p_gender_Male": [80.0, 30.0], "p_gender_Female": [20.0, 70.0]})
    bundle, _ = import_predictions(_dataset(table), percent, source="percent.csv")
    assert np.allclose(bundle.predictions["p_gender_Female"], [0.2, 0.7])
    assert any("percentages" in note for note in bundle.metrics["notes"])
    logits = percent.assign(p_gender_Male=[3.2, 1.5], p_gender_Female=[0.4, 2.5])  # not negative, not shares
    with pytest.raises(PredictionsError, match=re.escape("gender probabilities sum to 3.6–4 per row, not 1 (e.g. "
                                                         "[1.5, 2.5] in p_gender_Male, p_gender_Female)")):
        import_predictions(_dataset(table), logits, source="logits.csv")
    some = pd.DataFrame({"file": table["file"], "p_race_White": [0.5, 0.1], "p_race_Black": [0.2, 0.1]})  # top two
    with pytest.raises(PredictionsError, match="race probabilities sum to 0.2–0.7 per row, not 1"):
        import_predictions(_dataset(table), some, source="top2.csv")


def test_label_codes_read_as_floats_still_match_the_label_map(tmp_path):
    """0/1 codes with a gap are floats in parquet (1.0): the map's "1" was not found and the import stopped."""
    table = _gender_table(4)
    codes = pd.DataFrame({"file": table["file"], "gender": [1.0, 0.0, np.nan, 1.0]})
    codes.to_parquet(tmp_path / "codes.parquet")
    (tmp_path / "map.json").write_text(json.dumps({"gender": {"0": "Male", "1": "Female"}}))
    label_map = LabelMap.read(tmp_path / "map.json")
    bundle, _ = import_predictions(_dataset(table), read_predictions(tmp_path / "codes.parquet", label_map),
                                   source="codes.parquet", label_map=label_map)
    assert bundle.predictions["pred_gender"].astype(str).tolist() == ["Female", "Male", "Female"]
    assert bundle.rejects["reason"].str.contains("has no output").sum() == 1  # the gap: a reject, not a guess


def test_an_imported_bundle_says_what_is_unknown_about_its_model_and_why():
    """Its provenance read "trained on: not recorded (bundle made before FaceAudit recorded it)", "face rule: not
    recorded (largest face)" and its title "imported from x.csv, predictions imported from x.csv"."""
    from core.bundle import bundle_title, provenance

    table = _gender_table(3)
    outputs = pd.DataFrame({"file": table["file"], "gender": ["Male", "Female", "Male"]})
    metrics = import_predictions(_dataset(table), outputs, source="x.csv")[0].metrics
    rows = provenance(metrics)
    assert rows["trained on"] == "not recorded by the model's maker"
    assert rows["face rule"] == "the model's owner chose the faces"
    assert bundle_title(metrics).endswith("(predictions imported from x.csv)")
    named = import_predictions(_dataset(table), outputs, source="x.csv", model_name="Vendor API")[0].metrics
    assert bundle_title(named).endswith("(Vendor API, predictions imported from x.csv)")
    assert provenance({"model": {}})["trained on"] == "not recorded (bundle made before FaceAudit recorded it)"


def test_a_predictions_csv_is_read_as_a_manifest_is(tmp_path):
    """Semicolons (a European spreadsheet), capitalised headers, Latin-1 and a malformed row: before, the file was
    refused for having no image column (`File`), or read as one column."""
    table = _gender_table(3)
    files = table["file"].tolist()
    text = (f"File;Gender;P_Gender_Female;Kommentar\n{files[0]};Male;0.2;Köln\n{files[1]};Female;0.9;ok\n"
            f"{files[2]};Male;0.1;zu;viele\n")
    (tmp_path / "vendor.csv").write_bytes(text.encode("latin-1"))
    predictions = read_predictions(tmp_path / "vendor.csv")
    bundle, _ = import_predictions(_dataset(table), predictions, source="vendor.csv")
    assert bundle.predictions["file"].tolist() == files[:2]
    assert np.allclose(bundle.predictions["p_gender_Female"], [0.2, 0.9])
    notes = " ".join(bundle.metrics["notes"])
    assert "read as Latin-1" in notes and "1 row(s) of vendor.csv could not be read" in notes
    assert bundle.rejects["file"].tolist() == [files[2]]


def test_a_vendors_file_names_its_images_as_it_likes_and_still_matches(tmp_path):
    table = synthetic_predictions(6)[["file", "path", "source", "age", "age_bin", "gender", "race"]]
    table["file"] = ["a/1.jpg", "a/2.jpg", "a/3.jpg", "b/3.jpg", "a/4.jpg", "a/5.jpg"]  # 3.jpg twice: ambiguous
    (tmp_path / "v.csv").write_text("Image,gender\n1.jpg,Male\nC:/run/2.jpg,Female\n3.jpg,Male\na/4.jpg,Male\n"
                                    "4.jpg,Female\n")
    predictions = read_predictions(tmp_path / "v.csv")  # `Image`: an image column as manifests name it
    bundle, unmatched = import_predictions(_dataset(table), predictions, source="v.csv")
    assert sorted(bundle.predictions["file"]) == ["a/1.jpg", "a/2.jpg", "a/4.jpg"]
    assert bundle.predictions.set_index("file").at["a/4.jpg", "pred_gender"] == "Male"  # its own name wins
    assert sorted(unmatched["file"]) == ["3.jpg", "4.jpg"]  # two images are 3.jpg; a/4.jpg is named already
    assert "v.csv: read column 'Image' as the image's name" in bundle.metrics["notes"]
    assert ("2 prediction(s) name their image by its file name alone, e.g. '1.jpg': each matched to the one image "
            "of the dataset with that file name") in bundle.metrics["notes"]
