import numpy as np
import pandas as pd
import pytest

from core.fairness import subgroup_metrics
from core.mitigation import (
    MitigationError,
    apply_gender_threshold,
    apply_gender_thresholds,
    fit_equal_error_threshold,
    fit_gender_thresholds,
)
from tests.bundle_fixture import synthetic_bundle


def _biased_bundle(seed: int):
    """Black women get a lower P(Female) than others: a fixed threshold of 0.5 misgenders many of them."""
    bundle = synthetic_bundle(600)
    frame = bundle.predictions
    rng = np.random.default_rng(seed)
    female = (frame["gender"] == "Female").to_numpy()
    black = (frame["race"] == "Black").to_numpy()
    p = np.where(female, rng.uniform(0.55, 1.0, len(frame)), rng.uniform(0.0, 0.45, len(frame)))
    p = np.where(female & black, rng.uniform(0.3, 0.7, len(frame)), p)
    frame["p_gender_Female"], frame["p_gender_Male"] = p.astype(np.float32), (1 - p).astype(np.float32)
    frame["pred_gender"] = pd.Categorical(np.where(p >= 0.5, "Female", "Male"), categories=["Male", "Female"], ordered=True)
    return bundle


def test_threshold_optimizer_narrows_the_gender_gap_between_races():
    optimizer = fit_gender_thresholds(_biased_bundle(0).predictions)
    test = _biased_bundle(1)
    mitigated = apply_gender_thresholds(test, optimizer, fitted_on="synthetic-val", command="python -m training.mitigate …")
    before = subgroup_metrics(test.predictions, ["race"], ["false_male_rate"]).table["false_male_rate"]
    after = subgroup_metrics(mitigated.predictions, ["race"], ["false_male_rate"]).table["false_male_rate"]
    assert after.max() - after.min() < before.max() - before.min()
    # provenance: the dataset stays the audited one, the mitigation and its fit are recorded beside it
    assert mitigated.metrics["dataset"] == test.metrics["dataset"] and "ThresholdOptimizer" in mitigated.metrics["mitigation"]
    assert mitigated.metrics["model_id"] == test.metrics["model_id"] and mitigated.metrics["fitted_on"] == "synthetic-val"
    assert mitigated.metrics["command"].startswith("python -m training.mitigate")
    frame = mitigated.predictions  # headline metrics count the post-processed predictions
    assert mitigated.metrics["gender_accuracy"] == pytest.approx((frame["gender"] == frame["pred_gender"]).mean())



def test_one_threshold_for_everyone_equalises_women_and_men_errors_on_the_fit_bundle():
    fit = _biased_bundle(0).predictions  # women's P(Female) is lower than men's P(Male): more women called men
    threshold = fit_equal_error_threshold(fit)
    women, men = fit["gender"] == "Female", fit["gender"] == "Male"
    p = fit["p_gender_Female"]
    called_men, called_women = (p[women] < threshold).mean(), (p[men] >= threshold).mean()
    assert threshold < 0.5 and abs(called_men - called_women) <= 1 / men.sum() + 1 / women.sum()
    assert (p[women] < 0.5).mean() - (p[men] >= 0.5).mean() > 0.05  # at 0.5 they were apart

    test = _biased_bundle(1)
    test.predictions.loc[:9, "p_gender_Female"] = np.nan  # no probability: the prediction is kept
    mitigated = apply_gender_threshold(test, threshold, fitted_on="synthetic-val", command="python -m training.mitigate …")
    frame = mitigated.predictions
    expected = np.where(test.predictions["p_gender_Female"] >= threshold, "Female", "Male")
    assert (frame["pred_gender"].astype(str).to_numpy()[10:] == expected[10:]).all()
    assert frame["pred_gender"].iloc[:10].equals(test.predictions["pred_gender"].iloc[:10])
    assert f"{threshold:.3f}" in mitigated.metrics["mitigation"] and mitigated.metrics["fitted_on"] == "synthetic-val"
    assert mitigated.metrics["gender_accuracy"] == pytest.approx((frame["gender"] == frame["pred_gender"]).mean())


def test_an_equal_error_threshold_needs_both_genders_and_a_probability():
    frame = _biased_bundle(0).predictions
    with pytest.raises(MitigationError, match="0 women and 300 men"):
        fit_equal_error_threshold(frame[frame["gender"] == "Male"])
    with pytest.raises(MitigationError, match="no p_gender_Female column"):
        fit_equal_error_threshold(frame.drop(columns="p_gender_Female"))
