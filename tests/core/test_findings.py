import pytest

from core.fairness import wilson_interval
from core.findings import difference_interval, error_findings, largest_gaps
from tests.bundle_fixture import synthetic_predictions


def test_difference_interval_contains_the_difference_and_matches_newcombe():
    a, b = 0.9, 0.6
    a_ci, b_ci = wilson_interval(90, 100), wilson_interval(60, 100)
    low, high = difference_interval(a, a_ci, b, b_ci)
    assert low < a - b < high
    # Newcombe (1998) method 10, by hand: Wilson 0.8256–0.9448 and 0.5020–0.6906, so 0.3 ∓ hypot(…) = 0.1828, 0.4077
    assert (low, high) == pytest.approx((0.1828, 0.4077), abs=1e-3)
    assert difference_interval(0.5, (0.5, 0.5), 0.2, (0.2, 0.2)) == pytest.approx((0.3, 0.3))


def test_the_planted_gap_is_found_with_its_interval():
    frame = synthetic_predictions(600)  # 60 faces per race × gender; half the Black women are called men
    [gap] = [g for g in largest_gaps(frame) if g.metric == "gender_accuracy"]
    assert gap.by == ("race", "gender") and gap.worst["label"] == "Black / Female" and gap.worst["value"] == 0.5
    assert gap.best["value"] == 1.0 and gap.clear and gap.low < 0.5 < gap.high
    sentence = gap.sentence()
    assert sentence.startswith("Gender accuracy by race × gender: Black / Female 50.0 % (95 % CI")
    assert "a gap of 50.0 points" in sentence and sentence.endswith(").")


def test_no_gap_without_two_groups_large_enough():
    assert largest_gaps(synthetic_predictions(600).head(40)) == []


def test_errors_are_told_in_both_gender_directions():
    sentences = error_findings(synthetic_predictions(600))
    assert sentences[0] == "30 of 300 faces of true gender Female (10.0 %) are predicted Male."
    assert not [s for s in sentences if "true gender Male" in s]  # no man was called a woman: nothing to say
