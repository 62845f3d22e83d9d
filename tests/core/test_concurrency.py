"""The dashboard shares one model, one explanation cache and (per thread) detectors between all sessions."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from core import explain as explain_module
from core.explain import ExplanationCache, explain
from core.faces import find_faces, thread_detector
from core.model import ModelConfig, create_model
from core.trainer import predict
from tests.conftest import LONDON_FIXTURES


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(ModelConfig(backbone="test_efficientnet", input_size=48)).eval()


@pytest.fixture(scope="module")
def chips():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(8, 48, 48, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "lime"])
def test_explanations_register_nothing_on_the_shared_model(model, chips, method, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a hook on the shared model: another session's forward pass would run into it")
    for name in ("register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                 "register_backward_hook"):
        monkeypatch.setattr(torch.nn.Module, name, refuse)
    explain(model, chips[0], method=method, head="gender", target="Female", samples=30, steps=4)
    assert all(parameter.grad is None for parameter in model.parameters())


def test_gradcam_in_one_thread_while_others_predict(model, chips):
    reference = predict(model, chips, tta=False)["gender"]
    failures, stop = [], threading.Event()

    def explaining():
        while not stop.is_set():
            explain(model, chips[1], method="gradcam", head="race", target="Asian")

    def predicting():
        for _ in range(30):
            outputs = predict(model, chips, tta=False)["gender"]
            if not np.allclose(outputs, reference, atol=1e-6):
                failures.append(np.abs(outputs - reference).max())

    with ThreadPoolExecutor(3) as pool:
        explainer = pool.submit(explaining)
        predictors = [pool.submit(predicting) for _ in range(2)]
        for future in predictors:
            future.result()
        stop.set()
        explainer.result()
    assert not failures


def test_threads_detect_at_once_with_their_own_detectors():
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(LONDON_FIXTURES.glob("*.jpg"))]
    expected = [[face.box for face in find_faces(photo, thread_detector()).faces] for photo in photos]

    def detect_all(_):
        return thread_detector(), [[face.box for face in find_faces(photo, thread_detector()).faces] for photo in photos]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(detect_all, range(6)))
    assert len({id(detector) for detector, _ in results} | {id(thread_detector())}) >= 3
    for _, boxes in results:
        assert boxes == expected


def test_explanation_cache_is_safe_to_share_between_threads(model, chips, monkeypatch):
    def quick(model, chip, **kwargs):  # an explanation's cost without its minutes
        return object()

    monkeypatch.setattr(explain_module, "explain", quick)
    cache = ExplanationCache(max_entries=3)

    def use(seed):
        rng = np.random.default_rng(seed)
        for _ in range(300):
            cache.get(model, "m", chips[rng.integers(0, len(chips))], method="gradcam", head="gender", target="Male")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(use, range(4)))
    assert len(cache._entries) == 3


def test_dashboard_sessions_get_a_detector_per_thread():
    from pages import _cached  # each session's script runs in its own thread

    together = threading.Barrier(3)  # three threads at once: else a quick one may take a second call

    def in_a_thread(_):
        together.wait(timeout=60)
        return _cached.detector()

    with ThreadPoolExecutor(3) as pool:
        detectors = list(pool.map(in_a_thread, range(3)))
    assert len({id(detector) for detector in detectors}) == 3
