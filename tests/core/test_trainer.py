import pandas as pd
import pytest
import torch

from core.datasets import read_manifest
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
