import numpy as np
import pytest

from core.fairness import SMALL_N, confusion, filter_frame, overall_metrics, row_values, subgroup_metrics
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
