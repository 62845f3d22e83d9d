import numpy as np
import pytest
import torch

from core.model import ModelConfig, create_model
from core.saliency import cohort_saliency, default_cohorts, load_saliency, save_saliency
from tests.bundle_fixture import synthetic_predictions


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(ModelConfig(backbone="test_efficientnet", input_size=32)).eval()


def test_cohort_saliency_on_a_fixture_bundle(model, tmp_path):
    frame = synthetic_predictions(40)
    chips = np.random.default_rng(0).integers(0, 255, (len(frame), 32, 32, 3), dtype=np.uint8)
    cohorts = default_cohorts(frame)
    assert "Black / Female" in cohorts and cohorts["Black / Female"].sum() == 4
    maps = cohort_saliency(model, chips, frame, max_per_cohort=3, batch_size=2)
    assert maps["gender|Black / Female"].shape == (32, 32)
    assert int(maps["gender|Black / Female|n"]) == 3
    for key, value in maps.items():
        if not key.endswith("|n"):
            assert value.min() >= 0 and value.sum() <= 1 + 1e-3  # a face whose CAM is all negative adds 0
    save_saliency(maps, tmp_path / "s.npz")
    loaded = load_saliency(tmp_path / "s.npz")
    saliency, n = loaded["race|White / Male"]
    assert n == 3 and saliency.shape == (32, 32)
    np.testing.assert_allclose(saliency, maps["race|White / Male"], atol=1e-3)
