"""Calibration (`core.calibration`): ECE, reliability, temperature scaling, on synthetic data with known answers."""

import numpy as np
import pandas as pd
import pytest
import torch

from core import calibration, fairness, labels
from core.bundle import bundle_model_dir, read_bundle, write_bundle
from core.calibration import (
    calibration_table,
    expected_calibration_error,
    fit_temperatures,
    has_probabilities,
    reliability,
    reliability_curves,
    with_temperatures,
)
from core.fairness import group_members
from core.model import CheckpointError, ModelConfig, create_model, load_checkpoint, save_checkpoint
from tests.bundle_fixture import synthetic_bundle, synthetic_predictions
from training import calibrate


def _gender_frame(logits: np.ndarray, stored_sharpness: float, seed: int = 0) -> pd.DataFrame:
    """True genders drawn from softmax(logits); stored probabilities softmax(logits × sharpness): a model that is
    overconfident by that factor (its best temperature is `stored_sharpness`)."""
    rng = np.random.default_rng(seed)
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = (rng.random(len(logits)) < true_probs[:, 1]).astype(int)
    stored = np.exp(logits * stored_sharpness)
    stored /= stored.sum(1, keepdims=True)
    frame = synthetic_predictions(len(logits))
    frame["gender"] = pd.Categorical(np.array(labels.GENDERS)[truth], categories=labels.GENDERS, ordered=True)
    frame["pred_gender"] = pd.Categorical(np.array(labels.GENDERS)[stored.argmax(1)], categories=labels.GENDERS, ordered=True)
    frame["p_gender_Male"], frame["p_gender_Female"] = stored[:, 0], stored[:, 1]
    return frame


@pytest.fixture(scope="module")
def logits():
    score = np.random.default_rng(3).normal(0, 2, 20_000)
    return np.stack([-score / 2, score / 2], axis=1)


def test_ece_is_small_when_calibrated_and_the_gap_when_overconfident():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1, 50_000)
    assert expected_calibration_error(confidence, (rng.random(50_000) < confidence).astype(float)) < 0.01
    overconfident = (rng.random(50_000) < confidence - 0.2).astype(float)
    assert expected_calibration_error(confidence, overconfident) == pytest.approx(0.2, abs=0.01)


def test_temperature_fitted_on_one_set_recovers_the_overconfidence_and_calibrates_another(logits):
    validation, test = _gender_frame(logits, 2.0, seed=1), _gender_frame(logits, 2.0, seed=2)
    temperatures = fit_temperatures(validation)
    assert temperatures["gender"] == pytest.approx(2.0, rel=0.08)
    before, after = calibration_table(test, "gender").iloc[0], calibration_table(with_temperatures(test, temperatures), "gender").iloc[0]
    assert before["ece"] > 0.05 and after["ece"] < 0.015 and before["overconfidence"] > 0.05
    assert after["accuracy"] == before["accuracy"]  # classes never change


def test_reliability_bins_and_group_table():
    frame = synthetic_bundle().predictions
    curve = reliability(frame, "gender")
    assert curve["n"].sum() == frame["gender"].notna().sum()
    assert ((curve["ci_low"] <= curve["accuracy"]) & (curve["accuracy"] <= curve["ci_high"])).all()
    table = calibration_table(frame, "gender", ["race", "gender"])
    assert table["n"].sum() == len(frame) and len(table) == 10
    assert (table["ece_ci_low"] <= table["ece_ci_high"]).all()
    # planted: Black women are misgendered half the time at 0.9 confidence, every other group is right at 0.9
    assert table.loc[("Black", "Female"), "overconfidence"] == pytest.approx(0.9 + 0.1 / 2 - 0.5, abs=1e-6)
    assert table.loc[("White", "Male"), "overconfidence"] < 0
    members = group_members(frame, ["race", "gender"])  # one group's curve, from its rows of the whole frame
    black_women = reliability(frame, "gender", rows=members[("Black", "Female")])
    assert black_women.equals(reliability(frame.iloc[members[("Black", "Female")]], "gender"))
    assert black_women["n"].sum() == table.loc[("Black", "Female"), "n"]
    curves = reliability_curves(frame, "gender", {"all faces": None, "Black / Female": members[("Black", "Female")]})
    assert curves["all faces"].equals(curve) and curves["Black / Female"].equals(black_women)


def test_labels_without_probabilities_have_nothing_to_calibrate():
    frame = synthetic_predictions(50).drop(columns=[f"p_gender_{name}" for name in labels.GENDERS])
    assert not has_probabilities(frame, "gender") and calibration_table(frame, "gender")["n"].iloc[0] == 0
    assert "gender" not in fit_temperatures(frame)


def test_cli_writes_a_rescaled_bundle(tmp_path, capsys):
    write_bundle(synthetic_bundle(), tmp_path / "val")
    write_bundle(synthetic_bundle(), tmp_path / "test")
    assert calibrate.main(["--fit", str(tmp_path / "val"), "--apply", str(tmp_path / "test"), "--out", str(tmp_path / "out")]) == 0
    before, after = read_bundle(tmp_path / "test"), read_bundle(tmp_path / "out")
    assert (before.predictions["pred_gender"] == after.predictions["pred_gender"]).all()
    assert set(after.metrics["temperatures"]) == {"gender", "race", "age_bin"} and after.metrics["fitted_on"] == "synthetic"
    assert "gender: T = " in capsys.readouterr().out


def test_temperatures_stored_in_a_checkpoint_divide_its_logits_and_change_its_id(tmp_path, logits):
    """Fitted on a bundle the checkpoint made (planted overconfidence 2.0), written into its config.json: the
    reloaded model's gender logits are the old ones / T, and bundles can tell the calibrated model apart."""
    torch.manual_seed(0)
    save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=32)).eval(), tmp_path / "ckpt")
    before = load_checkpoint(tmp_path / "ckpt")
    bundle = synthetic_bundle(len(logits))
    bundle.predictions = _gender_frame(logits, 2.0, seed=1)
    bundle.metrics["model_id"] = before.model_id
    write_bundle(bundle, tmp_path / "val")
    assert calibrate.main(["--fit", str(tmp_path / "val"), "--checkpoint", str(tmp_path / "ckpt")]) == 0
    after = load_checkpoint(tmp_path / "ckpt")
    temperature = after.meta["temperatures"]["gender"]
    assert temperature == pytest.approx(2.0, rel=0.08) and set(after.meta["temperatures"]) <= {"gender", "race"}
    assert after.model_id != before.model_id and after.meta["weights_sha256"] == before.meta["weights_sha256"]
    assert bundle_model_dir({"model_id": after.model_id}, tmp_path / "ckpt") == tmp_path / "ckpt"  # its bundles find it
    assert bundle_model_dir({"model_id": before.model_id}, tmp_path / "ckpt") is None  # the uncalibrated one is gone
    x = before.model.normalize(torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8))
    with torch.no_grad():
        assert torch.allclose(after.model(x)["gender"], before.model(x)["gender"] / temperature, atol=1e-5)
    with pytest.raises(SystemExit, match="was made by model"):  # the bundle came from the uncalibrated model
        calibrate.main(["--fit", str(tmp_path / "val"), "--checkpoint", str(tmp_path / "ckpt")])


def test_a_checkpoints_temperatures_are_checked(tmp_path):
    save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=32)), tmp_path / "ckpt",
                    temperatures={"gender": 0.0})
    with pytest.raises(CheckpointError, match=r"temperatures \{'gender': 0.0\} must map heads of the network"):
        load_checkpoint(tmp_path / "ckpt")



def test_groups_beyond_the_bucket_count_keep_their_interval(monkeypatch):
    rng = np.random.default_rng(0)
    frame = synthetic_predictions(16_000)  # confidence 0.5-1; faces of women right 10 points less often than that
    p_female = rng.uniform(0, 1, len(frame))
    predicted = np.where(p_female > 0.5, "Female", "Male")
    confidence = np.maximum(p_female, 1 - p_female)
    right = rng.uniform(0, 1, len(frame)) < confidence - np.where(frame["gender"] == "Female", 0.1, 0.0)
    frame["gender"] = pd.Categorical(np.where(right, predicted, np.where(predicted == "Male", "Female", "Male")),
                                     categories=labels.GENDERS)
    frame = frame.assign(pred_gender=pd.Categorical(predicted, categories=labels.GENDERS), p_gender_Female=p_female,
                         p_gender_Male=1 - p_female)
    exact = calibration_table(frame, "gender", ["pred_gender"])
    for module in (calibration, fairness):  # ~8,000 faces into 1,000 buckets: both groups share one draw of weights
        monkeypatch.setattr(module, "MAX_BOOTSTRAP_UNITS", 1_000)
    bucketed = calibration_table(frame, "gender", ["pred_gender"])
    assert bucketed["ece"].equals(exact["ece"])
    width = lambda table: table["ece_ci_high"] - table["ece_ci_low"]
    assert np.allclose(width(bucketed), width(exact), rtol=0.2)
    assert ((bucketed["ece_ci_low"] < exact["ece"]) & (exact["ece"] < bucketed["ece_ci_high"])).all()


def test_the_ece_interval_holds_its_estimate_and_is_shifted_by_the_bootstraps_bias():
    """A calibrated model's 3,000 faces: resampling inflates every ECE, so the plain percentile interval lies above
    the estimate; the interval given is that one shifted down by the resamples' mean excess, floored at 0."""
    rng = np.random.default_rng(3)
    confidence = rng.beta(5, 1.5, 3000)
    correct = (rng.random(3000) < confidence).astype(float)
    ece = expected_calibration_error(confidence, correct)
    resampled = calibration.resampled_ece(confidence, correct, None, calibration.BINS, 200, rng)
    assert np.percentile(resampled, 2.5) > ece  # the plain interval misses its own estimate
    low, high = calibration.shifted_interval(resampled, ece)
    bias = resampled.mean() - ece
    assert low <= ece <= high and bias > 0
    plain_low, plain_high = np.percentile(resampled, [2.5, 97.5])
    assert (low, high) == pytest.approx((max(plain_low - bias, 0), plain_high - bias))
    assert calibration.shifted_interval(np.array([0.01, 0.2, 0.3]), 0.05)[0] == 0.0  # never below 0
