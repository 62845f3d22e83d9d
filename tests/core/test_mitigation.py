import numpy as np
import pandas as pd
import pytest

from core.fairness import subgroup_metrics
from core.mitigation import apply_gender_thresholds, fit_gender_thresholds
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

