import numpy as np
import pandas as pd
import pytest

from core import fairness, labels
from core.bundle import compute_metrics, prediction_frame
from core.fairness import (
    SMALL_N,
    available_metrics,
    confusion,
    confusion_heads,
    filter_frame,
    overall_metrics,
    row_values,
    subgroup_metrics,
)
from tests.bundle_fixture import synthetic_predictions


@pytest.fixture(scope="module")
def frame():
    return synthetic_predictions()


def test_subgroup_gender_accuracy_matches_hand_computed_masks(frame):
    result = subgroup_metrics(frame, ["race", "gender"], ["gender_accuracy", "false_male_rate", "age_mae"])
    table = result.table
    black_women = frame[(frame["race"] == "Black") & (frame["gender"] == "Female")]
    expected = (black_women["gender"] == black_women["pred_gender"]).mean()
    assert table.loc[("Black", "Female"), "gender_accuracy"] == pytest.approx(expected)
    assert table.loc[("Black", "Female"), "false_male_rate"] == pytest.approx(1 - expected)
    assert table.loc[("White", "Male"), "gender_accuracy"] == 1.0
    assert table.loc[("Black", "Female"), "n"] == len(black_women)
    low, high = table.loc[("Black", "Female"), ["gender_accuracy_ci_low", "gender_accuracy_ci_high"]]
    assert low < expected < high
    assert table.loc[("White", "Male"), "gender_accuracy_diff"] == pytest.approx(1.0 - result.overall["gender_accuracy"])


def test_reference_group_and_small_n_flag(frame):
    table = subgroup_metrics(frame, ["race"], ["gender_accuracy"], reference="White").table
    assert table.loc["White", "gender_accuracy_diff"] == 0 and table.loc["White", "gender_accuracy_ratio"] == 1
    assert table.loc["Black", "gender_accuracy_ratio"] < 1
    small = subgroup_metrics(frame.head(40), ["race", "gender"], ["gender_accuracy"]).table
    assert small["small_n"].all() and (small["n"] < SMALL_N).all()


def test_signed_age_error_is_prediction_minus_truth(frame):
    values = row_values(frame)
    np.testing.assert_allclose(values["signed_age_error"], frame["pred_age"] - frame["age"].astype(float))


def test_overall_metrics_have_intervals(frame):
    overall = overall_metrics(frame, ["gender_accuracy", "age_mae"])
    assert overall.loc["gender_accuracy", "ci_low"] <= overall.loc["gender_accuracy", "value"] <= overall.loc["gender_accuracy", "ci_high"]
    assert overall.loc["age_mae", "n"] == len(frame)


def test_unknown_metric_lists_valid_ones(frame):
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['f1'\]; valid: gender_accuracy, race_accuracy"):
        subgroup_metrics(frame, ["race"], ["f1"])


def test_confusion_counts_and_normalisation(frame):
    counts = confusion(frame, "gender")
    assert counts.loc["Male", "Male"] == (frame["gender"] == "Male").sum()
    assert counts.to_numpy().sum() == len(frame)
    rates = confusion(frame, "gender", normalize=True)
    np.testing.assert_allclose(rates.sum(axis=1), 1.0)


def test_filter_frame(frame):
    assert set(filter_frame(frame, {"race": ["Asian"], "gender": []})["race"]) == {"Asian"}
    assert len(filter_frame(frame, {})) == len(frame)


def test_empty_intersections_are_left_out():
    frame = synthetic_predictions(240)
    frame = frame[~((frame["race"] == "Black") & (frame["gender"] == "Female"))]
    table = subgroup_metrics(frame, ["race", "gender"], ["gender_accuracy"], rounds=10).table
    assert ("Black", "Female") not in table.index and len(table) == 9 and (table["n"] > 0).all()


def test_race7_metrics_and_confusion_only_where_a_seven_class_head_meets_fairface_labels():
    """A seven-class head's `pred_race7` scored against `fairface_race`; a five-class model on FairFace data still
    shows where each of the seven races goes among the five."""
    races7 = np.resize(np.array(labels.FAIRFACE_RACES), 140)
    outputs = {"age": np.full(140, 30.0), "gender": np.tile([[0.9, 0.1]], (140, 1)),
               "race": np.zeros((140, 5)), "race7": np.zeros((140, 7))}
    predicted = [name if index % 2 else "White" for index, name in enumerate(races7)]  # every other face: White
    outputs["race7"][np.arange(140), [labels.FAIRFACE_RACES.index(name) for name in predicted]] = 1.0
    outputs["race"][np.arange(140), [labels.RACE7_TO_RACE[labels.FAIRFACE_RACES.index(n)] for n in predicted]] = 1.0
    table = pd.DataFrame({"file": [f"{i}.jpg" for i in range(140)], "path": "x", "age": pd.array([None] * 140, "Int64"),
                          "age_bin": "30-39", "gender": "Male", "race": [labels.FAIRFACE_TO_RACE[n] for n in races7],
                          "fairface_race": races7})
    frame = prediction_frame(table, outputs)
    assert frame["pred_race7"].tolist() == predicted and frame["p_race7_Black"].dtype == np.float32
    values = row_values(frame)
    white_truth = races7 == "White"
    assert values["race7_accuracy"].mean() == pytest.approx(np.mean([p == t for p, t in zip(predicted, races7)]))
    assert values["race7_recall_White"].mean() == 1.0 and values["race7_recall_Black"].mean() == 0.5
    assert compute_metrics(frame, 140)["race7_accuracy"] == pytest.approx(values["race7_accuracy"].mean())
    assert "race7_accuracy" in available_metrics(frame) and confusion_heads(frame) == [
        "gender", "race", "age_bin", "race7", "fairface_race"]
    seven = confusion(frame, "race7")
    assert seven.loc["White", "White"] == white_truth.sum() and seven.loc["Black", "White"] == 10
    assert (seven.index.name, seven.columns.name) == ("true FairFace race", "predicted race (FairFace's 7)")  # no code names
    five_model = frame.drop(columns=[c for c in frame if "race7" in c])
    assert "race7_accuracy" not in available_metrics(five_model) and row_values(five_model)["race7_accuracy"].isna().all()
    where = confusion(five_model, "fairface_race")
    assert where.shape == (7, 5) and where.loc["Latino_Hispanic"].sum() == 20
    assert "race7" not in confusion_heads(five_model) and "race7_accuracy" not in compute_metrics(five_model, 140)


def test_group_metrics_in_metrics_json_are_each_groups_own_means(frame):
    metrics = compute_metrics(frame, len(frame) + 5)
    values = row_values(frame)
    for column in ("race", "gender"):
        for value, members in frame.groupby(column, observed=True):
            group = metrics["groups"][column][str(value)]
            assert group["n"] == len(members)
            assert group["gender_accuracy"] == pytest.approx(values.loc[members.index, "gender_accuracy"].mean())
            assert group["age_mae"] == pytest.approx(values.loc[members.index, "age_mae"].mean())
    assert metrics["n_rejected"] == 5


@pytest.mark.parametrize("clustered", [False, True])
def test_bucketed_bootstrap_keeps_the_interval_of_resampling_every_unit(monkeypatch, clustered):
    rng = np.random.default_rng(1)
    errors = rng.gamma(2.0, 2.5, 40_000)  # skewed, like absolute age errors
    clusters = np.repeat(np.arange(20_000), 2) if clustered else None
    exact = fairness.bootstrap_means([errors], clusters, np.random.default_rng(0), 400)[0]
    monkeypatch.setattr(fairness, "MAX_BOOTSTRAP_UNITS", 1_000)  # 20,000 or 40,000 units into 1,000 buckets
    assert len(np.unique(fairness.bootstrap_units(len(errors), clusters, np.random.default_rng(0)))) == 1_000
    bucketed = fairness.bootstrap_means([errors], clusters, np.random.default_rng(0), 400)[0]
    assert np.std(bucketed) == pytest.approx(np.std(exact), rel=0.15)
    assert abs(np.mean(bucketed) - errors.mean()) < 0.25 * np.std(exact)  # centred on the estimate


def test_per_group_sums_give_what_fairlearns_metric_frame_gives(frame):
    result = subgroup_metrics(frame, ["race", "gender"], ["gender_accuracy", "age_mae", "false_male_rate"])
    by_group = result.metric_frame.by_group.dropna(subset=["n"])
    for key, row in result.table.iterrows():
        assert row["n"] == by_group.loc[key, "n"]
        for name in ("gender_accuracy", "age_mae", "false_male_rate"):
            assert row[name] == pytest.approx(by_group.loc[key, name], nan_ok=True)
    assert result.overall["gender_accuracy"] == pytest.approx(result.metric_frame.overall["gender_accuracy"])
