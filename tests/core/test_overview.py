"""The Overview a bundle stores: the same as computing it, and never used once it is stale."""

import json
import math

import pytest

import core.bundle
from core.bundle import OVERVIEW_FILE, read_bundle, stored_overview, write_bundle
from core.overview import Overview, overview
from tests.bundle_fixture import synthetic_bundle
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
