import numpy as np
import pytest
import torch
from PIL import Image

from core.explain import ExplainError, ExplanationCache, explain, stability, valid_targets
from core.model import ModelConfig, create_model
from core.trainer import predict
from tests.conftest import LONDON_FIXTURES


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(ModelConfig(backbone="test_efficientnet", input_size=64)).eval()


@pytest.fixture(scope="module")
def chip():
    return np.asarray(Image.open(LONDON_FIXTURES / "004_03.jpg").convert("RGB").resize((64, 64)))


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "lime"])
@pytest.mark.parametrize(("head", "target"), [("gender", "Female"), ("race", "Asian"), ("age", "expected"), ("age", "20-29")])
def test_every_method_gives_a_chip_sized_map_and_overlay(model, chip, method, head, target):
    result = explain(model, chip, method=method, head=head, target=target, samples=60, steps=8)
    assert result.attribution.shape == (64, 64) and np.isfinite(result.attribution).all()
    assert result.overlay.shape == (64, 64, 3) and result.overlay.dtype == np.uint8
    if head != "age" or target != "expected":
        assert 0 <= result.value <= 1
    else:
        assert 0 <= result.value <= 116
    if method == "gradcam":
        assert result.attribution.min() >= 0


def test_integrated_gradients_is_complete(model, chip):
    """Attributions sum to the output minus the baseline output (captum's convergence delta)."""
    result = explain(model, chip, method="integrated_gradients", head="gender", target="Male", steps=64)
    assert result.delta is not None and result.delta < 0.02
    blurred = explain(model, chip, method="integrated_gradients", head="gender", target="Male", steps=64, baseline="blurred")
    assert not np.allclose(blurred.attribution, result.attribution)


def test_lime_is_deterministic_per_seed(model, chip):
    first = explain(model, chip, method="lime", head="race", target="White", samples=80, seed=3)
    again = explain(model, chip, method="lime", head="race", target="White", samples=80, seed=3)
    other = explain(model, chip, method="lime", head="race", target="White", samples=80, seed=4)
    np.testing.assert_array_equal(first.attribution, again.attribution)
    assert not np.array_equal(first.attribution, other.attribution)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"method": "gradcam", "head": "hair", "target": "x"}, "unknown head 'hair'; valid: gender, race, age"),
     ({"method": "gradcam", "head": "race", "target": "Martian"},
      "unknown target 'Martian' for head 'race'; valid: White, Black, Asian, Indian, Others"),
     ({"method": "shap", "head": "race", "target": "White"}, "unknown method 'shap'; valid: gradcam, integrated_gradients, lime"),
     ({"method": "integrated_gradients", "head": "race", "target": "White", "baseline": "grey"},
      "unknown baseline 'grey'; valid: black, blurred, mean")],
)
def test_bad_names_list_the_valid_ones(model, chip, kwargs, message):
    with pytest.raises(ExplainError) as error:
        explain(model, chip, **kwargs)
    assert str(error.value) == message


def test_valid_targets_for_age_include_expected_and_bins():
    assert valid_targets("age")[:2] == ("expected", "0-2")


def test_cache_returns_the_same_result_for_the_same_key(model, chip):
    cache = ExplanationCache(max_entries=2)
    a = cache.get(model, "m1", chip, method="gradcam", head="gender", target="Male")
    assert cache.get(model, "m1", chip, method="gradcam", head="gender", target="Male") is a
    assert cache.get(model, "m2", chip, method="gradcam", head="gender", target="Male") is not a


def test_stability_is_a_correlation(model, chip):
    score = stability(model, chip, method="lime", head="gender", target="Male", samples=60, seeds=(0, 1))
    assert -1 <= score <= 1
    same = stability(model, chip, method="lime", head="gender", target="Male", samples=60, seeds=(5, 5))
    assert same == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "lime"])
@pytest.mark.parametrize(("head", "target"), [("gender", "Female"), ("race", "Indian"), ("age", "expected")])
def test_explained_value_is_the_shown_prediction(model, chip, method, head, target):
    """The dashboard shows `predict` (mirror-averaged); an explanation explains that same number."""
    def shown(tta):
        values = predict(model, chip[None], tta=tta)[head][0]
        return float(values if head == "age" else values[valid_targets(head).index(target)])

    assert abs(shown(True) - shown(False)) > 1e-5  # mirroring matters on this chip: the test can tell them apart
    result = explain(model, chip, method=method, head=head, target=target, samples=40, steps=4)
    assert result.value == pytest.approx(shown(True), rel=1e-6, abs=2e-6)
    bare = explain(model, chip, method=method, head=head, target=target, samples=40, steps=4, mirror=False)
    assert bare.value == pytest.approx(shown(False), rel=1e-6, abs=2e-6)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "lime"])
def test_the_explained_age_is_the_shown_age_of_a_median_model(chip, method):
    """A checkpoint whose `age_estimate` is the median shows the median: its explanations explain that, not the mean."""
    torch.manual_seed(0)
    median = create_model(ModelConfig(backbone="test_efficientnet", input_size=64)).eval()
    median.age_estimate = "median"
    shown = float(predict(median, chip[None])["age"][0])
    median.age_estimate = "mean"
    assert abs(float(predict(median, chip[None])["age"][0]) - shown) > 0.1  # the test can tell them apart
    median.age_estimate = "median"
    result = explain(median, chip, method=method, head="age", target="expected", samples=40, steps=4)
    assert result.value == pytest.approx(shown, rel=1e-5)


@pytest.mark.parametrize(("method", "kwargs"), [("lime", {"samples": 250}), ("integrated_gradients", {"steps": 20})])
def test_progress_is_reported_after_each_batch_up_to_done(model, chip, method, kwargs):
    shares = []
    explain(model, chip, method=method, head="gender", target="Male", progress=shares.append, **kwargs)
    assert len(shares) >= 3 and shares == sorted(shares) and shares[-1] == 1.0


def test_progress_can_stop_an_explanation_and_nothing_is_cached(model, chip):
    class Stop(Exception):
        pass

    def stop_halfway(share):
        if share >= 0.5:
            raise Stop

    cache = ExplanationCache()
    with pytest.raises(Stop):
        cache.get(model, "m1", chip, method="lime", head="gender", target="Male", samples=200, progress=stop_halfway)
    assert cache.peek("m1", chip, method="lime", head="gender", target="Male", samples=200) is None
    done = cache.get(model, "m1", chip, method="lime", head="gender", target="Male", samples=200, progress=print)
    assert cache.peek("m1", chip, method="lime", head="gender", target="Male", samples=200) is done


def test_lime_perturbations_are_lime_s_own():
    """`_data_labels` draws and builds exactly what lime 0.2.0.1's loop does, only faster."""
    from unittest import mock

    from lime.lime_image import LimeImageExplainer

    from core.explain import _data_labels

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    fudged = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    segments = np.repeat(np.arange(6), 96).reshape(24, 24)
    seen = {"lime": [], "ours": []}

    def classifier(name):
        def scores(images):
            seen[name].append(np.array(images))
            return images.reshape(len(images), -1).mean(axis=1, keepdims=True)
        return scores

    with mock.patch("lime.lime_image.tqdm", lambda iterable, **_: iterable):
        data, labels = LimeImageExplainer(random_state=3).data_labels(image, fudged, segments, classifier("lime"), 25, 10)
    ours, our_labels = _data_labels(LimeImageExplainer(random_state=3), image, fudged, segments, classifier("ours"), 25, 10)
    assert np.array_equal(data, ours) and np.array_equal(labels, our_labels)
    assert all(np.array_equal(a, b) for a, b in zip(seen["lime"], seen["ours"], strict=True))
