import math

import pandas as pd
import pytest
import torch

from core import labels
from core.datasets import read_manifest
from core.model import race7_to_race
from core.trainer import Targets, TrainConfig, augment, group_weights, multitask_loss, targets_from_table
from tests.conftest import noise_image


def test_missing_labels_add_no_loss_and_no_nan():
    outputs = {"age": torch.randn(2, 117), "gender": torch.randn(2, 2), "race": torch.randn(2, 5)}
    targets = Targets(age=torch.tensor([30, -1]), gender=torch.tensor([-1, 1]), race=torch.tensor([2, -1]),
                      age_bin=torch.tensor([4, -1]))
    losses = multitask_loss(outputs, targets, TrainConfig())
    assert all(torch.isfinite(value) for value in losses.values())
    second = torch.tensor([1])
    only_second = multitask_loss({name: value[second] for name, value in outputs.items()}, targets.take(second),
                                 TrainConfig())
    assert only_second["age_kl"] == 0 and only_second["race"] == 0 and only_second["gender"] > 0


def test_group_weights_are_inverse_cell_frequency():
    table = pd.DataFrame({"race": ["White"] * 3 + ["Black"], "gender": ["Male"] * 4, "age_bin": ["20-29"] * 4})
    weights = group_weights(table)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[3].item() == pytest.approx(3 * weights[0].item())


def test_augment_is_seeded_and_in_range():
    chips = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    a = augment(chips, torch.Generator().manual_seed(1))
    b = augment(chips, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


def test_targets_from_table_marks_missing_labels(tmp_path):
    noise_image(0).save(tmp_path / "a.png")
    noise_image(1).save(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text("path,age,gender,race\na.png,34,Female,Black\nb.png,,,\n")
    targets = targets_from_table(read_manifest(tmp_path / "m.csv").table)
    assert targets.age.tolist() == [34, -1] and targets.gender.tolist() == [1, -1]
    assert targets.race.tolist() == [1, -1] and targets.age_bin.tolist() == [4, -1]


def test_a_five_class_label_trains_a_seven_class_head_as_a_set_and_an_age_bin_as_a_mass():
    """UTKFace's "Asian" is right whichever of East or Southeast Asian the head picks; FairFace's East Asian is not;
    a FairFace age bin is the year distribution's mass inside the bin."""
    east, southeast = labels.FAIRFACE_RACES.index("East Asian"), labels.FAIRFACE_RACES.index("Southeast Asian")
    race7 = torch.full((2, 7), -20.0)
    race7[:, southeast] = 20.0  # certain: Southeast Asian
    age = torch.full((2, 117), -30.0)
    age[:, 33:36] = 0.0  # 33-35 years
    outputs = {"age": age, "gender": torch.zeros(2, 2), "race7": race7, "race": race7_to_race(race7)}
    asian, thirties = labels.RACES.index("Asian"), labels.AGE_BINS.index("30-39")
    targets = Targets(age=torch.tensor([-1, -1]), gender=torch.tensor([-1, -1]), race=torch.tensor([asian, asian]),
                      age_bin=torch.tensor([thirties, thirties - 1]), race7=torch.tensor([-1, east]))
    config = TrainConfig(label_smoothing=0.0)
    utkface, fairface = (multitask_loss({head: value[[i]] for head, value in outputs.items()},
                                        targets.take(torch.tensor([i])), config) for i in (0, 1))
    assert utkface["race"].item() == pytest.approx(0.0, abs=1e-6)  # in the set {East, Southeast Asian}
    assert fairface["race"].item() == pytest.approx(40.0, abs=1e-3)  # the wrong one of the two
    assert utkface["age_bin"].item() == pytest.approx(0.0, abs=1e-6)  # all mass in 30-39
    assert fairface["age_bin"].item() == pytest.approx(30 - math.log(10 / 3), abs=1e-3)  # 10 years at e^-30, vs 3
    assert utkface["age_kl"] == 0 and utkface["gender"] == 0  # no year, no gender: no loss


def test_fairface_race_becomes_the_seven_class_target():
    table = pd.DataFrame({"age": pd.array([None, 30], dtype="Int64"), "gender": pd.Categorical(["Male", "Female"]),
                          "race": pd.Categorical(["Others", "Asian"], categories=labels.RACES),
                          "age_bin": pd.Categorical(["20-29", "30-39"], categories=labels.AGE_BINS),
                          "fairface_race": ["Middle Eastern", None]})
    targets = targets_from_table(table)
    assert targets.race7.tolist() == [labels.FAIRFACE_RACES.index("Middle Eastern"), -1]
    assert targets.age.tolist() == [-1, 30]
