"""The Overview a bundle stores: the same as computing it, and never used once it is stale."""

import json
import math

import pytest

import core.bundle
from core.bundle import OVERVIEW_FILE, read_bundle, stored_overview, write_bundle
from core.overview import Overview, overview
from tests.bundle_fixture import seven_race_predictions, synthetic_bundle
from training import overview as overview_cli


@pytest.fixture
def folder(tmp_path):
    return write_bundle(synthetic_bundle(600), tmp_path / "bundle")  # race × gender groups of 60 faces


def test_the_stored_overview_is_the_one_computed_from_the_rows(folder):
    stored = stored_overview(folder)
    assert stored is not None
    assert stored.to_dict() == overview(read_bundle(folder).predictions).to_dict()
    assert stored.faces == 600 and stored.worst["gender_accuracy"][0]["group"] == "Black / Female"
    assert stored.gaps[0].sentence().startswith("Gender accuracy by race × gender: Black / Female 50.0 %")


def test_partitioned_bundles_store_theirs_too(tmp_path):
    folder = write_bundle(synthetic_bundle(), tmp_path / "parts", part_rows=100)
    assert stored_overview(folder).to_dict() == overview(read_bundle(folder).predictions).to_dict()


def test_an_overview_survives_json_with_its_nan_values():
    empty = overview(synthetic_bundle().predictions.iloc[0:0])
    assert empty.faces == 0 and empty.worst is None and empty.gaps == [] and empty.errors == []
    back = Overview.from_dict(json.loads(json.dumps(empty.to_dict())))
    assert math.isnan(back.overall["gender_accuracy"]["value"]) and back.overall["gender_accuracy"]["n"] == 0
    frame = synthetic_bundle(600).predictions  # ages of White faces only: groups without an age error among the worst
    frame["age"] = frame["age"].mask(frame["race"] != "White")
    stored = Overview.from_dict(json.loads(json.dumps(overview(frame).to_dict())))
    assert [math.isnan(group["value"]) for group in stored.worst["age_mae"]] == [False, False, True]


def test_a_stale_or_broken_stored_overview_is_not_used(folder, monkeypatch):
    other = synthetic_bundle(120).predictions  # other rows under the same name
    other.to_parquet(folder / "predictions.parquet", index=False)
    assert stored_overview(folder) is None
    write_bundle(synthetic_bundle(600), folder)
    assert stored_overview(folder) is not None
    monkeypatch.setattr(core.bundle, "OVERVIEW_CODE", "other code")
    assert stored_overview(folder) is None
    monkeypatch.undo()
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(metrics | {"n": 599}))  # metrics of other faces
    assert stored_overview(folder) is None
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert stored_overview(folder) is not None
    (folder / "rejects.csv").write_text("file,reason\n")  # other rejects
    assert stored_overview(folder) is None
    (folder / OVERVIEW_FILE).write_text("{not json")
    assert stored_overview(folder) is None
    (folder / OVERVIEW_FILE).unlink()
    assert stored_overview(folder) is None


def test_the_command_stores_missing_overviews_and_leaves_current_ones(folder, capsys):
    (folder / OVERVIEW_FILE).unlink()
    assert overview_cli.main([str(folder)]) == 0
    assert stored_overview(folder) is not None
    assert overview_cli.main([str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{folder}: current"


def test_the_command_refuses_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    assert overview_cli.main([str(tmp_path)]) == 2
    assert f"{tmp_path} is not an audit bundle: missing" in capsys.readouterr().err


def test_data_labelled_with_the_seven_races_is_summed_up_by_them():
    frame = seven_race_predictions()
    summary = overview(frame)
    assert summary.worst_by == ["fairface_race", "gender"]
    assert list(summary.worst) == ["gender_accuracy", "race_accuracy", "race7_accuracy", "age_mae"]
    assert summary.worst["race7_accuracy"][0] | {"ci_low": 0, "ci_high": 0} == {
        "group": "Middle Eastern / Female", "value": 0.0, "ci_low": 0, "ci_high": 0, "n": 50}
    [gap] = [gap for gap in summary.gaps if gap.metric == "race7_accuracy"]
    assert "fairface_race" in gap.by and gap.worst["label"].startswith("Middle Eastern")
    assert "50 of 100 faces of true FairFace race Middle Eastern (50.0 %) are predicted White." in summary.errors
    assert all("fairface_race" in gap.by or "race" not in gap.by for gap in summary.gaps)  # the seven, not the five
    assert Overview.from_dict(json.loads(json.dumps(summary.to_dict()))).worst_by == ["fairface_race", "gender"]


def test_a_five_class_model_on_seven_race_data_is_grouped_by_the_seven_and_judged_on_the_five():
    frame = seven_race_predictions().drop(columns="pred_race7")
    middle_eastern_women = (frame["fairface_race"] == "Middle Eastern") & (frame["gender"] == "Female")
    frame["pred_race"] = frame["pred_race"].mask(middle_eastern_women, "White")  # "Others" is their right answer
    summary = overview(frame)
    assert summary.worst_by == ["fairface_race", "gender"] and "race7_accuracy" not in summary.worst
    assert summary.worst["race_accuracy"][0]["group"] == "Middle Eastern / Female"
    [gap] = [gap for gap in summary.gaps if gap.metric == "race_accuracy"]
    assert "fairface_race" in gap.by and gap.worst["label"].startswith("Middle Eastern")
    seven = [sentence for sentence in summary.errors if "FairFace race" in sentence]
    assert seven == ["50 of 100 faces of true FairFace race Middle Eastern (50.0 %) are predicted White."]  # not Others


def test_without_seven_race_labels_the_five_races_sum_it_up():
    frame = seven_race_predictions().assign(fairface_race=None)
    summary = overview(frame)
    assert summary.worst_by == ["race", "gender"] and "race7_accuracy" not in summary.worst
    assert not [gap for gap in summary.gaps if gap.metric == "race7_accuracy" or "fairface_race" in gap.by]
    assert not [sentence for sentence in summary.errors if "FairFace race" in sentence]
