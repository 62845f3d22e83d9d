"""An audit of external data is valid: the auditor's columns, the labelled face, provenance, intervals, age bins.

(Duplicate groups that must not chain different people: tests/core/test_dedup.py.)
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core import labels
from core.audit import TrainingOverlapError, run_audit, training_files, training_overlap
from core.bundle import bundle_model_dir, prediction_frame, write_bundle
from core.compare import compare_bundles
from core.config import FAIRFACE_SPLIT_FILE, SPLIT_FILE
from core.datasets import ManifestError, read_manifest
from core.faces import Face, choose_face
from core.fairness import (
    cluster_column,
    group_keys,
    grouping_columns,
    interval_note,
    overall_metrics,
    subgroup_metrics,
    wilson_interval,
    worst_group,
)
from core.model import Checkpoint, ModelConfig, create_model, file_sha256, save_checkpoint
from core.report import report_extras, report_html
from core.split import read_split
from tests.bundle_fixture import gender_shades_bundle, mitigated_bundle, synthetic_predictions
from tests.conftest import LONDON_FIXTURES
from training import evaluate, report


@pytest.fixture(scope="module")
def tiny_checkpoint():
    torch.manual_seed(0)
    meta = {"weights_sha256": "0123456789abcdef", "trained_on": "UTKFace train split", "split_file": SPLIT_FILE.name,
            "split_sha256": file_sha256(SPLIT_FILE)}
    return Checkpoint(model=create_model(ModelConfig(backbone="test_efficientnet", input_size=48)).eval(), meta=meta)


# 1. The auditor's own grouping columns

def test_grouping_columns_are_any_column_with_few_values():
    frame = synthetic_predictions(60).assign(skin=pd.array(["darker", "lighter"] * 30, dtype="str"),
                                             consent=[True, False] * 30, session=[1, 2, 3] * 20,
                                             photo_id=pd.array([f"id{i}" for i in range(60)], dtype="str"))
    columns = grouping_columns(frame, max_values=50)
    assert columns[:3] == ["race", "gender", "age_bin"]
    assert {"skin", "consent", "session", "n_faces"} <= set(columns)  # text (pandas 3 `str`), bool, small int
    assert not {"photo_id", "file", "path", "pred_age", "pred_gender", "p_gender_Male", "age"} & set(columns)


def test_gender_shades_worst_cell_is_darker_women_with_n_and_interval():
    frame = gender_shades_bundle(per_cell=60).predictions
    table = subgroup_metrics(frame, ["skin", "gender"], ["gender_accuracy"]).table
    worst = worst_group(table, "gender_accuracy")
    assert worst["group"] == ("darker", "Female") and worst["n"] == 60
    assert worst["value"] == pytest.approx(0.65) and worst["ci_low"] < 0.65 < worst["ci_high"]


@pytest.fixture
def shades_folder(tmp_path):
    return write_bundle(gender_shades_bundle(per_cell=60), tmp_path / "shades")


def test_report_groups_by_the_auditors_columns_in_json_and_html(shades_folder, tmp_path):
    common = ["--bundle", str(shades_folder), "--group-by", "skin,gender", "--model", str(tmp_path / "no-model")]
    assert report.main([*common, "--format", "json", "--out", str(tmp_path / "r.json")]) == 0
    tables = json.loads((tmp_path / "r.json").read_text())["tables"]
    assert {"subgroups_skin", "subgroups_skin_x_gender"} <= set(tables)
    worst = next(row for row in tables["worst_groups"]
                 if row["grouping"] == "skin × gender" and row["metric"] == "gender_accuracy")
    assert worst["worst group"] == "darker / Female" and worst["n"] == 60 and worst["ci_low"] < 0.65 < worst["ci_high"]
    out = tmp_path / "not yet made" / "r.html"  # its folder is made
    assert report.main([*common, "--format", "html", "--out", str(out), "--no-images"]) == 0
    text = out.read_text()
    assert "skin × gender, gender_accuracy: worst <b>darker / Female</b> 0.650 (" in text and "n = 60" in text


def test_report_filter_and_group_by_refuse_unknown_columns_and_values(shades_folder, tmp_path, capsys):
    out = ["--format", "json", "--out", str(tmp_path / "r.json"), "--bundle", str(shades_folder)]
    assert report.main([*out, "--filter", "skn=darker"]) == 2
    assert "unknown column 'skn'; columns that can filter: race, gender, age_bin, n_faces, skin" in capsys.readouterr().err
    assert report.main([*out, "--filter", "skin=dark"]) == 2
    assert "skin has no value 'dark'; its values: darker, lighter" in capsys.readouterr().err
    assert report.main([*out, "--group-by", "skn"]) == 2
    assert "cannot group by 'skn'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


# 2. The labelled face of a multi-face photo

def _face(x: float, y: float, side: float, score: float = 0.9) -> Face:
    return Face(box=(x, y, side, side), landmarks=np.zeros((5, 2), np.float32), score=score)


def test_choose_face_prefers_the_central_subject_over_a_larger_bystander():
    faces = [_face(780, 200, 200), _face(450, 250, 100)]  # a bystander at the edge, the subject in the centre
    index, reason = choose_face(faces, 1000, 600, "center")
    assert index == 1 and "most central of 2 faces (not the largest)" in reason
    assert choose_face(faces, 1000, 600, "largest") == (0, "largest of 2 faces")
    assert choose_face(faces[:1], 1000, 600) == (0, "the only face")
    with pytest.raises(ValueError, match="unknown face rule 'biggest'; valid: center, largest"):
        choose_face(faces, 1000, 600, "biggest")


@pytest.fixture
def crowd_manifest(tmp_path):
    """A 1000 x 600 photo: the labelled woman small in the centre, a larger bystander at the right edge."""
    canvas = Image.new("RGB", (1000, 600), (90, 90, 90))
    canvas.paste(Image.open(LONDON_FIXTURES / "025_03.jpg").resize((260, 260)), (370, 170))
    canvas.paste(Image.open(LONDON_FIXTURES / "004_03.jpg").resize((400, 400)), (600, 100))
    canvas.save(tmp_path / "crowd.jpg")
    (tmp_path / "m.csv").write_text("path,gender\ncrowd.jpg,female\n")
    return tmp_path / "m.csv"


def test_audit_records_every_face_and_audits_the_central_one(tiny_checkpoint, crowd_manifest):
    for rule, centre_x in (("center", 500), ("largest", 800)):
        bundle = run_audit(tiny_checkpoint, read_manifest(crowd_manifest), face_rule=rule)
        row = bundle.predictions.iloc[0]
        assert row["n_faces"] == 2 and row["multi_face"] and len(json.loads(row["faces"])) == 2
        assert abs(row["face_box_x"] + row["face_box_w"] / 2 - centre_x) < 60, rule
        assert bundle.metrics["face_rule"] == rule and bundle.metrics["multi_face_images"] == 1
        assert "multi_face" in bundle.metrics["groups"]
    assert "most central of 2 faces" in row["face_reason"] or rule == "largest"


def test_a_labelled_box_names_the_face_of_each_row_of_a_crowd_photo(tiny_checkpoint, crowd_manifest, tmp_path):
    man = run_audit(tiny_checkpoint, read_manifest(crowd_manifest), face_rule="largest").predictions.iloc[0]
    x, y, w, h = (man[f"face_box_{side}"] for side in "xywh")
    (crowd_manifest.parent / "boxes.csv").write_text(
        "path,gender,box_x,box_y,box_w,box_h\n"
        "crowd.jpg,female,370,170,260,260\n"  # the woman's whole pasted portrait: a loose box
        f"crowd.jpg,male,{x},{y},{w},{h}\n"  # the man, as the detector boxes him
        "crowd.jpg,male,20,20,100,100\n"  # nobody there
        "crowd.jpg,female,,,,\n")  # no box: the face rule
    bundle = run_audit(tiny_checkpoint, read_manifest(crowd_manifest.parent / "boxes.csv"))
    frame = bundle.predictions
    assert list((frame["face_box_x"] + frame["face_box_w"] / 2).round(-2)) == [500, 800, 500]
    assert "the only one centred in it" in frame["face_reason"][0] and "overlap (IoU) 1.00" in frame["face_reason"][1]
    assert frame["face_reason"][2].startswith("most central of 2 faces")
    assert list(bundle.rejects["reason"]) == [("no detected face at the labelled box x 20, y 20, 100 x 100 px (the "
                                               "nearest of 2 overlaps it by IoU 0.00)")]
    assert not frame["label_conflict"].any() and (frame["dup_group_size"][:2] == 1).all()  # two people, not one photo
    assert "3 of 4 rows name their face by a labelled box (box_x, box_y, box_w, box_h); the others by the face rule" \
        in bundle.metrics["notes"]
    with pytest.raises(ManifestError, match="need --input photos"):
        run_audit(tiny_checkpoint, read_manifest(crowd_manifest.parent / "boxes.csv"), input_kind="aligned-chips")


# 3. Provenance

def test_audit_refuses_training_images_and_records_where_it_came_from(tiny_checkpoint, tmp_path):
    train_file = read_split(SPLIT_FILE).query("split == 'train'")["file"].iloc[0]
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / train_file)
    (tmp_path / "m.csv").write_text(f"path,gender\n{train_file},male\n")
    with pytest.raises(TrainingOverlapError, match="1 of 1 images are in the checkpoint's training split"):
        run_audit(tiny_checkpoint, read_manifest(tmp_path / "m.csv"))
    metrics = run_audit(tiny_checkpoint, read_manifest(tmp_path / "m.csv"), allow_training_images=True,
                        command="python -m training.evaluate --manifest m.csv").metrics
    assert metrics["training_overlap"] == 1 and metrics["model"]["trained_on"] == "UTKFace train split"
    assert metrics["command"].endswith("--manifest m.csv") and metrics["input_kind"] == "photos"


def test_a_checkpoint_trained_on_fairface_recognises_its_fairface_training_photos(tmp_path):
    """Split files name FairFace photos by folder and file (`val/1.jpg`); photos of the test part pass."""
    split = read_split(FAIRFACE_SPLIT_FILE)
    meta = {"splits": [{"file": path.name, "sha256": file_sha256(path)} for path in (SPLIT_FILE, FAIRFACE_SPLIT_FILE)]}
    train, test = (split.loc[split["split"] == part, "file"].head(2).tolist() for part in ("train", "test"))
    rows = "".join(f"{tmp_path / name}\n" for name in [*train, *test])
    for name in [*train, *test]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / name)
    (tmp_path / "m.csv").write_text("path\n" + rows)
    assert training_overlap(read_manifest(tmp_path / "m.csv"), meta)[0] == 2
    stale = {"splits": [{"file": FAIRFACE_SPLIT_FILE.name, "sha256": "0" * 64}]}  # not this repository's split file
    assert training_files(stale) is None


def test_evaluate_never_infers_aligned_chips_from_a_name(tmp_path):
    model = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48)), tmp_path / "model")
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", tmp_path / "a.jpg")
    (tmp_path / "utkface_like.csv").write_text("path,gender\na.jpg,male\n")
    common = ["--manifest", str(tmp_path / "utkface_like.csv"), "--model", str(model), "--threads", "1"]
    assert evaluate.main([*common, "--out", str(tmp_path / "b1")]) == 0
    assert evaluate.main([*common, "--out", str(tmp_path / "b2"), "--input", "aligned-chips"]) == 0
    kinds = [json.loads((tmp_path / b / "metrics.json").read_text())["input_kind"] for b in ("b1", "b2")]
    assert kinds == ["photos", "aligned-chips"]


def test_report_states_the_bundles_own_dataset_model_and_mitigation():
    bundle = mitigated_bundle(240)
    metrics = bundle.metrics | {"dataset": "fairface-sample", "model_id": "48096d53945d",
                                "model": {"id": "48096d53945d", "backbone": "tf_efficientnet_lite0", "input_size": 128,
                                          "trained_on": "UTKFace train split, reweighted"}}
    loaded = {"trained_on": "the loaded model's data", "weights_sha256": "14eb2270317b" + "0" * 52}
    text = report_html(bundle.predictions, metrics, loaded, {})
    assert "FaceAudit report — fairface-sample · model 48096d53945d · mitigation: test fix" in text
    assert "UTKFace train split, reweighted" in text and "the loaded model's data" not in text
    assert "UTKFace test split" not in text and "Ours are measured on fairface-sample, not on UTKFace" in text


def test_explanations_come_only_from_the_bundles_own_model(tiny_checkpoint, tmp_path):
    bundle = mitigated_bundle(240)
    bundle.metrics["model_id"] = "48096d53945d"
    gallery, panels, note = report_extras(synthetic_predictions(600), bundle.metrics, None, checkpoint=tiny_checkpoint,
                                          detector=object())
    assert gallery and not panels
    assert note.startswith("Explanations unavailable: this bundle was made by model 48096d53945d")
    folder = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48)), tmp_path / "m")
    model_id = json.loads((folder / "config.json").read_text())["weights_sha256"][:12]
    assert bundle_model_dir({"model_id": model_id, "model": {"dir": str(folder)}}) == folder
    assert bundle_model_dir({"model_id": model_id}, tmp_path / "elsewhere", folder) == folder
    assert bundle_model_dir({"model_id": "48096d53945d", "model": {"dir": str(folder)}}) is None
    moved = folder.rename(tmp_path / "moved")  # e.g. models/default -> models/utkface-only: found beside where it was
    assert bundle_model_dir({"model_id": model_id, "model": {"dir": str(folder)}}) == moved
    assert bundle_model_dir({"model_id": model_id}, tmp_path / "default") == moved
    assert bundle_model_dir({"model_id": model_id}) is None  # nowhere to look


# 4. Intervals

def test_share_intervals_never_collapse_at_0_or_1():
    frame = synthetic_predictions(240)
    perfect = frame[(frame["race"] == "White") & (frame["gender"] == "Male")].head(18)  # no gender errors
    row = overall_metrics(perfect, ["gender_accuracy"]).loc["gender_accuracy"]
    assert row["value"] == 1.0 and row["ci_high"] == 1.0
    assert row["ci_low"] == pytest.approx(18 / (18 + 1.959964**2), abs=1e-4)  # Wilson: 0.824, not 1.000
    low, high = wilson_interval(0, 18)
    assert low == 0.0 and high == pytest.approx(0.176, abs=1e-3)


def test_photos_of_one_person_are_resampled_together_in_intervals_and_deltas():
    frame = synthetic_predictions(200)
    wrong = np.repeat(np.arange(40) % 4 == 0, 5)  # 40 people x 5 photos; a person is misgendered in all or none
    flipped = np.where(frame["gender"] == "Male", "Female", "Male")
    frame["pred_gender"] = pd.Categorical(np.where(wrong, flipped, frame["gender"].astype(str)), categories=labels.GENDERS)
    frame["pred_age"] = frame["age"].astype(float) + np.repeat(np.random.default_rng(0).normal(0, 6, 40), 5)
    widths = {}
    for people in (np.arange(200), np.repeat(np.arange(40), 5)):
        row = overall_metrics(frame.assign(identity=[f"p{k}" for k in people]), ["gender_accuracy", "age_mae"])
        widths[len(set(people))] = (row["ci_high"] - row["ci_low"]).to_dict()
    assert widths[40]["gender_accuracy"] > 1.8 * widths[200]["gender_accuracy"]
    assert widths[40]["age_mae"] > widths[200]["age_mae"]
    assert cluster_column(frame.assign(identity=np.repeat(np.arange(40), 5))) == "identity"
    assert cluster_column(frame.assign(**{"Subject ID": np.repeat(np.arange(40), 5)})) == "Subject ID"  # as auditors write
    assert "`identity`" in interval_note("identity")
    fixed = frame.assign(pred_gender=frame["gender"])  # a mitigation that fixes every misgendered person
    delta_widths = []
    for people in (np.arange(200), np.repeat(np.arange(40), 5)):
        frames = {name: f.assign(identity=people) for name, f in (("before", frame), ("after", fixed))}
        row = compare_bundles(frames, metrics=["gender_accuracy"]).overall.loc[("after", "gender_accuracy")]
        delta_widths.append(row["delta_ci_high"] - row["delta_ci_low"])
    assert delta_widths[1] > 1.8 * delta_widths[0]


# 5. Age bins

def test_predicted_age_bin_holds_the_median_age_not_the_widest_bin():
    probs = np.array([[0, 0, 0, 0, 0, 0.1, 0.25, 0.25, 0.4]], dtype=np.float32)  # most probable: 'more than 70'
    assert labels.median_bin_index(probs).tolist() == [7]
    outputs = {"age": np.array([64.0]), "age_std": np.array([8.0]), "age_bin": probs,
               "gender": np.array([[0.5, 0.5]]), "race": np.full((1, 5), 0.2)}
    frame = prediction_frame(pd.DataFrame({"file": ["a.jpg"]}), outputs)
    assert frame["pred_age_bin"].iloc[0] == "60-69"


def test_age_bins_keep_their_natural_order_in_tables():
    frame = synthetic_predictions(240)
    frame["age_bin"] = frame["age_bin"].astype("str")  # a manifest column: text, not categorical
    natural = [b for b in labels.AGE_BINS if b in set(frame["age_bin"])]
    assert group_keys(frame, ["age_bin"]) == natural
    assert list(subgroup_metrics(frame, ["age_bin"], ["age_mae"]).table.index) == natural
    frame["wave"] = pd.array([str(k) for k in np.arange(240) % 12], dtype="str")
    assert group_keys(frame, ["wave"]) == [str(k) for k in range(12)]  # 2 before 10
