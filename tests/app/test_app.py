"""Every page of the dashboard in streamlit's AppTest, on a tiny model and a synthetic bundle."""

import json
import re

import pandas as pd
import pytest
import torch
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

import core.bundle
from benchmarks._server import CHROMIUM
from core import labels
from core.bundle import OVERVIEW_FILE, checkpoint_id, compute_metrics, read_bundle, write_bundle
from core.config import REPO_ROOT
from core.datasets import REJECT_COLUMNS, Dataset
from core.imported import LabelMap, import_predictions
from core.model import ModelConfig, create_model, save_checkpoint
from core.suspects import read_suspects
from tests.bundle_fixture import gender_shades_bundle, mitigated_bundle, synthetic_bundle, vendor_predictions
from training import export

APP = str(REPO_ROOT / "app.py")
PAGES = ["pages/overview.py", "pages/data.py", "pages/subgroups.py", "pages/confusion.py", "pages/calibration.py",
         "pages/gallery.py", "pages/inspect_photo.py", "pages/report.py", "pages/about.py", "pages/saliency.py", "pages/compare.py",
         "pages/error_analysis.py", "pages/cohorts.py"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    checkpoint = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48)), folder,
                                 trained_on="nothing (test model)")
    export.main(["--model", str(folder), "--out", str(folder / "vendor.onnx")])  # another model beside it (ONNX)
    bundle = synthetic_bundle()
    bundle.metrics["model_id"] = json.loads((checkpoint / "config.json").read_text())["weights_sha256"][:12]
    write_bundle(bundle, folder / "audits" / "synthetic")
    write_bundle(mitigated_bundle(), folder / "audits" / "synthetic-fixed")
    write_bundle(synthetic_bundle(120), folder / "audits" / "synthetic-small")
    write_bundle(gender_shades_bundle(60), folder / "audits" / "wild-gender-shades")  # an auditor's `skin` column
    duplicated = synthetic_bundle()  # two duplicate groups, one labelled two ways
    frame = duplicated.predictions
    frame["dup_group"] = range(len(frame))
    frame.loc[[0, 1], "dup_group"], frame.loc[[2, 3, 4], "dup_group"] = 1000, 1001
    frame["dup_group_size"] = frame.groupby("dup_group")["file"].transform("size")
    frame["label_conflict"] = frame["dup_group"] == 1000  # rows 0 and 1 differ in gender
    write_bundle(duplicated, folder / "audits" / "wild-duplicates")
    bins_only = synthetic_bundle()  # FairFace-like: true age bins, no exact ages
    bins_only.predictions["age"] = pd.array([pd.NA] * len(bins_only.predictions), dtype="Int64")
    write_bundle(bins_only, folder / "audits" / "wild-bins-only")
    table, outputs = vendor_predictions()  # an outside model's outputs: age and gender, no race, no probabilities
    label_map = LabelMap(columns={"image": "file", "predicted_age": "age"}, values={"gender": {"Man": "Male", "Woman": "Female"}})
    dataset = Dataset(name="synthetic", table=table, rejects=pd.DataFrame(columns=list(REJECT_COLUMNS)))
    imported, _ = import_predictions(dataset, outputs.rename(columns=label_map.columns), source="vendor.csv",
                                     label_map=label_map, model_name="Vendor API")
    write_bundle(imported, folder / "audits" / "wild-imported")
    seven = synthetic_bundle()  # FairFace-like labels and a seven-class race head: every Asian face called East Asian
    frame = seven.predictions
    frame["fairface_race"] = frame["race"].astype("string").map(
        {"White": "White", "Black": "Black", "Asian": "Southeast Asian", "Indian": "Indian", "Others": "Middle Eastern"})
    frame["pred_race7"] = pd.Categorical(frame["fairface_race"].replace("Southeast Asian", "East Asian"),
                                         categories=labels.FAIRFACE_RACES)
    for name in labels.FAIRFACE_RACES:
        frame[f"p_race7_{name}"] = (frame["pred_race7"] == name).astype("float32") * 0.9 + 0.1 / 7
    seven.metrics |= compute_metrics(frame, len(frame) + 1)
    write_bundle(seven, folder / "audits" / "wild-race7")
    unlabelled = synthetic_bundle()  # a manifest without label columns: predictions only
    unlabelled.predictions[["age", "age_bin", "gender", "race"]] = None
    unlabelled.metrics |= compute_metrics(unlabelled.predictions, len(unlabelled.predictions)) | {
        "notes": ["m has no label column (age, age_bin, gender, race), so the audit shows predictions with no accuracy"]}
    write_bundle(unlabelled, folder / "audits" / "wild-no-labels")
    empty = synthetic_bundle()
    empty.predictions, empty.metrics = empty.predictions.iloc[0:0], compute_metrics(empty.predictions.iloc[0:0], 1) | {
        "dataset": "nothing survived", "model_id": "test", "notes": []}
    write_bundle(empty, folder / "audits" / "xx-empty")
    write_bundle(synthetic_bundle(), folder / "audits" / "xx-damaged")
    (folder / "audits" / "xx-damaged" / "predictions.parquet").write_bytes(b"PAR1 damaged")
    return folder


@pytest.fixture
def app(model_dir, monkeypatch):
    monkeypatch.setenv("FACEAUDIT_MODEL", str(model_dir))
    # AppTest forgets before every run that app.py uses st.navigation, and `pages._cached` leaves the legacy
    # pages/ mode only on its first import (see `_run_through_app`): keep every run on the app's own route,
    # with its sidebar, as on a real server.
    init = PagesManager.__init__

    def navigation_mode(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", navigation_mode)

    def open_page(page: str | None, query: dict | None = None, **state) -> AppTest:
        test = AppTest.from_file(APP, default_timeout=60)
        test.query_params.update(query or {})  # as if opened from a shared link
        for key, value in state.items():  # e.g. bundle_name: a sidebar choice before the first run
            test.session_state[key] = value
        if page is not None:  # None: the default page, run through app.py with its sidebar
            test.switch_page(page)
        return test.run()
    return open_page


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(app, page):
    test = app(page)
    assert not test.exception, test.exception
    assert not test.error, [e.value for e in test.error]


def test_an_overview_without_labels_says_why_nothing_is_measured(app):
    test = app(None, bundle_name="wild-no-labels")
    assert not test.exception, test.exception
    [info] = [box.value for box in test.info if "None of these faces has a label" in box.value]
    assert info.endswith("m has no label column (age, age_bin, gender, race), so the audit shows predictions with no "
                         "accuracy.")
    assert not any("None of these faces" in box.value for box in app(None).info)  # labelled: no such box


def test_sidebar_filter_changes_overview_counts(app):
    test = app(None)
    before = [m.value for m in test.markdown]
    assert any(value.startswith("240 faces audited · 1 image rejected") for value in before)
    test.multiselect(key="filter_race").set_value(["Black"]).run()
    after = [m.value for m in test.markdown]
    assert any("filtered to 48 faces" in value for value in after)
    assert before != after


def test_overview_states_the_largest_gaps_in_words(app):
    test = app(None)
    said = [m.value.replace("\\", "") for m in test.markdown if "Gender accuracy by" in m.value]
    assert said and "Gender accuracy by race: Black 75.0 % (95 % CI 61.2–85.1, n = 48) vs White 100.0 %" in said[0]
    assert "12 of 120 faces of true gender Female (10.0 %) are predicted Male." in said[0]


def _shown(test: AppTest) -> list:
    """What a run shows in text, metric tiles and tables."""
    return ([m.value for m in test.markdown] + [c.value for c in test.caption] + [(m.label, m.value) for m in test.metric]
            + [frame.value.to_json() for frame in test.dataframe])


def _model_folder_with(model_dir, folder, bundle_name: str):
    """`folder` as a model folder with `model_dir`'s checkpoint and one synthetic bundle."""
    folder.mkdir(exist_ok=True)
    for file in model_dir.iterdir():
        if file.is_file():
            (folder / file.name).symlink_to(file)
    return write_bundle(synthetic_bundle(), folder / "audits" / bundle_name)


def test_the_overview_of_all_faces_shows_the_stored_one_without_reading_the_rows(app, model_dir, tmp_path, monkeypatch):
    bundle = _model_folder_with(model_dir, tmp_path, "stored")
    (bundle / OVERVIEW_FILE).unlink()
    monkeypatch.setenv("FACEAUDIT_MODEL", str(tmp_path))
    computed = _shown(app(None))  # no stored Overview: computed from the rows

    def no_rows(folder, leave_out=()):
        raise OSError("the rows were read")
    _model_folder_with(model_dir, tmp_path / "other", "stored")  # the same bundle, at a path no cache has seen
    monkeypatch.setenv("FACEAUDIT_MODEL", str(tmp_path / "other"))
    monkeypatch.setattr(core.bundle, "_read_predictions", no_rows)
    test = app(None)
    assert not test.exception and not test.error
    assert _shown(test) == computed
    test = app("pages/data.py")  # a page that needs the rows reads them (here: fails to, and says so)
    assert "the rows were read" in test.error[0].value


def test_subgroup_choice_changes_the_confusion_heatmap(app):
    test = app("pages/confusion.py")
    whole = test.caption[0].value
    test.selectbox(key="confusion_subgroup").set_value("race = Black").run()
    assert not test.exception
    assert test.caption[0].value != whole and test.caption[0].value.startswith("48 faces")


def test_a_seven_class_race_head_shows_its_accuracy_and_confusion(app):
    test = app("pages/overview.py", bundle_name="wild-race7")
    assert not test.exception
    tiles = {metric.label: metric.value for metric in test.metric}
    assert tiles["Race-7 accuracy"] == f"{100 * (1 - 48 / 240):.1f} %"  # the 48 Southeast Asian faces are wrong
    assert "Worst groups at a glance (fairface_race × gender, n ≥ 30)" in [header.value for header in test.subheader]
    test = app("pages/calibration.py", bundle_name="wild-race7")
    assert test.multiselect(key="calibration_by").value == ["fairface_race", "gender"]  # the seven, not the five
    assert test.radio(key="calibration_head").options == ["gender", "race", "age bin", "race (FairFace's 7)"]
    test.radio(key="calibration_head").set_value("race7").run()
    said = [text.value for text in test.markdown if "Expected calibration error" in text.value]
    assert not test.exception and "of the race (FairFace's 7) head over 240 faces" in said[0]
    assert test.dataframe[0].value.sort_values("ece")["group"].iloc[-1].startswith("Southeast Asian")  # 0.9 sure, wrong
    test = app("pages/confusion.py", bundle_name="wild-race7")
    assert test.radio(key="confusion_head").options == ["gender", "race", "age bin", "race (FairFace's 7)",
                                                         "FairFace race → race"]
    test.radio(key="confusion_head").set_value("race7").run()
    assert not test.exception and test.caption[0].value.startswith("240 faces with a true FairFace race label")
    test = app("pages/subgroups.py", bundle_name="wild-race7")
    assert "Southeast Asian recall (race-7)" in test.multiselect(key="subgroups_metrics").options
    assert test.multiselect(key="subgroups_by").value == ["fairface_race"]  # the seven races, not the five
    assert "race7_accuracy" in test.multiselect(key="subgroups_metrics").value
    test = app("pages/gallery.py", bundle_name="wild-race7")
    test.radio(key="gallery_head").set_value("race7").run()
    assert not test.exception and test.caption[0].value.startswith("48 mistakes")  # Southeast Asian called East Asian
    test = app("pages/error_analysis.py", bundle_name="wild-race7")
    assert test.radio(key="errors_head").options == ["gender", "race", "age bin", "race (FairFace's 7)",
                                                     "age (off by > 5 years)"]
    test = app("pages/data.py", bundle_name="wild-race7")
    assert [info.value for info in test.info if "race" in info.value] == [labels.race_note(True)]
    test = app("pages/error_analysis.py", bundle_name="synthetic")
    assert "race (FairFace's 7)" not in test.radio(key="errors_head").options
    test = app("pages/subgroups.py", bundle_name="synthetic")
    assert "Race-7 accuracy" not in test.multiselect(key="subgroups_metrics").options
    assert test.multiselect(key="subgroups_by").value == ["race"]
    test = app("pages/calibration.py", bundle_name="synthetic")
    assert test.multiselect(key="calibration_by").value == ["race", "gender"]


def test_subgroup_metrics_reflect_the_planted_disparity(app):
    test = app("pages/subgroups.py")
    test.multiselect(key="subgroups_by").set_value(["race", "gender"]).run()
    table = test.dataframe[0].value
    black_women = table[table["group"] == "Black / Female"].iloc[0]
    white_men = table[table["group"] == "White / Male"].iloc[0]
    assert black_women["gender_accuracy"] < 0.6 < white_men["gender_accuracy"]
    heatmap = next(chart for chart in test.get("plotly_chart") if "heatmap_gender_accuracy" in chart.proto.id)
    cells, grey = json.loads(heatmap.proto.spec)["data"]
    black, female = cells["y"].index("Black"), cells["x"].index("Female")
    assert grey["text"][black][female] == "n=24" and cells["text"][black][female] == ""  # too few faces: grey, its n


def test_gallery_filter_narrows_mistakes(app):
    test = app("pages/gallery.py")
    assert test.caption[0].value.startswith("12 mistakes")  # the planted misgendered Black women
    test.multiselect(key="gallery_true_gender").set_value(["Male"]).run()
    assert test.caption[0].value.startswith("0 mistakes")


def _inspect_sample(app, name="025_03.jpg") -> AppTest:
    test = app("pages/inspect_photo.py")
    assert [i.value for i in test.info] == ["Upload a photo, or choose “Use a sample” above."]  # nothing chosen silently
    test.radio(key="inspect_source").set_value("sample").run()
    test.selectbox(key="inspect_sample").set_value(name).run()
    assert not test.exception
    return test


def _explained(test: AppTest) -> list[str]:
    return [c.value for c in test.caption if c.value.startswith("Explained value on this chip")]


def test_data_page_shows_a_duplicate_groups_faces_conflicting_first(app):
    test = app("pages/data.py", bundle_name="wild-duplicates")
    assert not test.exception
    assert test.selectbox(key="data_dup_group").options == ["group 1000 (conflicting labels)", "group 1001"]
    assert len(test.get("image")) == 2  # the two faces of the conflicting group, side by side
    test.selectbox(key="data_dup_group").set_value(1001).run()
    assert len(test.get("image")) == 3


def test_data_page_tables_stop_at_shown_rows_and_download_every_row(app, monkeypatch):
    from pages import _cached

    monkeypatch.setattr(_cached, "SHOWN_ROWS", 2)  # as a million-row audit against 1,000
    test = app("pages/data.py", bundle_name="wild-duplicates")
    assert not test.exception
    assert len(test.dataframe[-1].value) == 2  # the duplicates table: 2 of its 5 rows
    assert any(caption.value == "The first 2 of 5 rows." for caption in test.caption)
    assert [button.label for button in test.get("download_button")] == ["Download all 5 rows (CSV)"]
    assert test.selectbox(key="data_dup_group").options == ["group 1000 (conflicting labels)", "group 1001"]


def test_gallery_on_age_bins_only_offers_no_age_head(app):
    test = app("pages/gallery.py", bundle_name="wild-bins-only")
    assert not test.exception and test.radio(key="gallery_head").options == ["gender", "race", "age bin"]
    test.radio(key="gallery_head").set_value("age_bin").run()
    assert not test.exception and not test.warning  # no false "images not on this machine"
    assert not [c for c in test.caption if "nan" in c.value]
    assert not [s for s in test.slider if s.key == "gallery_min_error"]  # would hide every face: no exact ages


def test_gallery_pages_through_every_mistake(app):
    test = app("pages/gallery.py")
    test.radio(key="gallery_head").set_value("age").run()
    total = int(re.match(r"([\d,]+) mistakes", test.caption[0].value).group(1))
    assert total > 24 and "showing 1–24" in test.caption[0].value
    test.number_input(key="gallery_page").set_value(2).run()
    assert f"showing 25–{min(48, total)}" in test.caption[0].value
    assert test.selectbox(key="gallery_record_2").options[0].startswith("25. ")
    test.radio(key="gallery_head").set_value("gender").run()  # 12 mistakes: one page, the page number follows
    assert test.number_input(key="gallery_page").value == 1 and "showing 1–12" in test.caption[0].value


def test_inspect_sample_photo_yields_predictions(app):
    test = _inspect_sample(app)
    assert test.metric[0].label == "Age"
    assert any(m.value.startswith("**Gender**") for m in test.markdown)
    assert _explained(test)
    test.selectbox(key="inspect_head").set_value("race").run()
    assert not test.exception and any("P(" in c for c in _explained(test))


def test_inspect_shows_gradcam_at_once_and_runs_lime_and_ig_only_on_request(app):
    test = _inspect_sample(app)
    assert [c.value for c in test.caption if "not run yet" in c.value] == [
        "Integrated Gradients: not run yet for this face and class (button above).",
        "LIME: not run yet for this face and class (button above)."]
    test.select_slider(key="inspect_samples").set_value(250).run()
    test.button(key="inspect_run").click().run()
    assert not test.exception
    assert not [c for c in test.caption if "not run yet" in c.value]
    test.selectbox(key="inspect_head").set_value("race").run()  # another head: Grad-CAM again, the slow two on request
    assert len([c for c in test.caption if "not run yet" in c.value]) == 2
    test.selectbox(key="inspect_head").set_value("gender").run()  # back: the kept results, no button needed
    assert not [c for c in test.caption if "not run yet" in c.value] and not [b for b in test.button if b.key == "inspect_run"]


def test_inspect_predicts_and_explains_an_onnx_model_with_lime_only(app):
    test = _inspect_sample(app, "030_08.jpg")
    test.selectbox(key="inspect_model").set_value("vendor.onnx").run()
    assert not test.exception and not test.error
    assert any(m.value.startswith("**Gender**") for m in test.markdown) and test.metric[0].label == "Age"
    unavailable = [c.value for c in test.caption if "not available for vendor.onnx" in c.value]
    assert len(unavailable) == 2 and unavailable[0].startswith("Grad-CAM")  # and Integrated Gradients
    assert test.button(key="inspect_run").label == "Run LIME"
    test.select_slider(key="inspect_samples").set_value(250).run()
    test.button(key="inspect_run").click().run()
    assert not test.exception and not [c for c in test.caption if "not run yet" in c.value]
    assert _explained(test)  # the value LIME explained, as shown in the bars


def test_inspect_says_when_an_onnx_model_gives_no_usable_prediction(app, monkeypatch):
    from core.onnx_model import OnnxModel, OnnxModelError

    refusal = "vendor.onnx: output 'age' with 2 of 2 values NaN or infinite"

    def nan_outputs(self, chips, **options):
        raise OnnxModelError(refusal)

    monkeypatch.setattr(OnnxModel, "predict", nan_outputs)
    test = _inspect_sample(app, "030_08.jpg")
    test.selectbox(key="inspect_model").set_value("vendor.onnx").run()
    assert not test.exception
    assert [e.value for e in test.error] == [f"vendor.onnx gives no usable prediction for this face: {refusal}"]


def test_inspect_offers_another_checkpoint_audited_beside_the_model_with_its_seven_races(app, monkeypatch, tmp_path):
    torch.manual_seed(0)
    main = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48)), tmp_path / "main")
    other = save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48, race7=True)),
                            tmp_path / "fairface-model")
    bundle = synthetic_bundle(120)  # its audit beside the main model's, recording the checkpoint that made it
    bundle.metrics["model_id"] = checkpoint_id(json.loads((other / "config.json").read_text()))
    bundle.metrics["model"] = {"dir": str(other)}
    write_bundle(bundle, main / "audits" / "fairface-model" / "synthetic")
    monkeypatch.setenv("FACEAUDIT_MODEL", str(main))
    test = _inspect_sample(app, "030_08.jpg")
    assert test.selectbox(key="inspect_model").options == ["FaceAudit model", "fairface-model (FaceAudit checkpoint)"]
    seven = "**Race (FairFace's 7)**"
    assert not [m for m in test.markdown if m.value.startswith(seven)]
    assert labels.RACE7_NOTE not in [c.value for c in test.caption][-1]
    test.selectbox(key="inspect_model").set_value("fairface-model").run()
    assert not test.exception and not test.error
    assert [m for m in test.markdown if m.value.startswith(seven)]
    assert labels.race_note(True) in [c.value for c in test.caption]
    assert _explained(test)  # Grad-CAM of the other checkpoint, at once


def test_inspect_explains_the_predicted_class_of_each_new_photo(app):
    def shown_and_explained(test):
        target = next(s for s in test.selectbox if s.key.startswith("inspect_target_gender"))
        shown = next(m.value for m in test.markdown if m.value.startswith("**Gender**"))  # "**Gender**: Male (58%)"
        predicted, percent = re.match(r"\*\*Gender\*\*: (\w+) \((\d+)%\)", shown).groups()
        explained = float(re.search(r"P\(\w+\) = ([\d.]+)%", _explained(test)[0]).group(1))
        return target, predicted, int(percent), explained

    test = _inspect_sample(app)
    target, predicted, percent, explained = shown_and_explained(test)
    assert target.value == predicted and abs(explained - percent) <= 0.55  # the explained number is the shown one
    other = next(g for g in labels.GENDERS if g != predicted)
    target.set_value(other).run()
    assert shown_and_explained(test)[0].value == other  # the user's choice holds for this face
    for name in [p.name for p in sorted((REPO_ROOT / "samples").glob("*.jpg")) if p.name != "025_03.jpg"][:3]:
        test.selectbox(key="inspect_sample").set_value(name).run()  # a new photo: its own prediction is explained
        target, predicted, percent, explained = shown_and_explained(test)
        assert target.value == predicted and abs(explained - percent) <= 0.55


def test_inspect_flags_an_upside_down_face_and_turning_fixes_it(app):
    test = _inspect_sample(app)
    assert not test.warning
    test.radio(key="inspect_turn").set_value(180).run()
    assert not test.exception
    assert [w.value for w in test.warning if w.value.startswith("Less reliable: upside down")]
    test.radio(key="inspect_turn").set_value(0).run()
    assert not test.warning


def test_about_page_shows_race_mapping(app):
    test = app("pages/about.py")
    assert any(labels.RACE_MAPPING_NOTE == info.value for info in test.info)


def test_missing_model_is_a_message_not_a_trace(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEAUDIT_MODEL", str(tmp_path / "nowhere"))
    test = AppTest.from_file(APP, default_timeout=60)
    test.switch_page("pages/inspect_photo.py")
    test.run()
    assert not test.exception
    assert "model.safetensors is missing" in test.error[0].value


def test_compare_page_shows_what_the_planted_fix_bought(app):
    test = app("pages/compare.py")
    assert test.multiselect(key="compare_b").value == ["synthetic-fixed", "synthetic-small"]  # named after the reference
    test.multiselect(key="compare_b").set_value(["synthetic-fixed"]).run()
    assert not test.exception
    groups = test.dataframe[1].value
    black = groups[groups["group"] == "Black"].iloc[0]
    assert black["delta synthetic-fixed"] == pytest.approx(0.25)  # 12 of 48 Black faces were misgendered
    assert black["delta synthetic-fixed ci_low"] > 0
    shown = [m.value.replace("\\", "") for m in test.markdown]  # bundle text is shown Markdown-escaped
    assert any("gender_accuracy" in text and ": better)" in text for text in shown)
    test.session_state["filter_race"] = ["White"]  # the sidebar's filter applies here too
    test.run()
    assert any("gender_accuracy: unchanged" in m.value.replace("\\", "") for m in test.markdown)


def test_report_page_adds_the_comparison(app):
    test = app("pages/report.py")
    assert test.multiselect(key="report_compare").value == ["synthetic-fixed", "synthetic-small"]
    assert not test.exception and not test.error
    shown = lambda: [m.value.replace("\\", "") for m in test.markdown]  # bundle text is shown Markdown-escaped
    said = lambda: [text for text in shown() if "synthetic-fixed vs synthetic, gender_accuracy" in text]
    assert not said()  # computed on demand only
    test.toggle(key="report_preview").set_value(True).run()
    assert said() and ": better)" in said()[0]
    test.multiselect(key="report_compare").set_value([]).run()
    assert not test.exception and not said()



def test_report_page_offers_every_format_at_once_and_builds_none_before_a_click(app, monkeypatch):
    built = []
    monkeypatch.setattr("core.report.report_extras", lambda *a, **k: built.append("extras"))  # would fail if called
    test = app("pages/report.py")
    assert not test.exception
    labels_shown = lambda: [button.proto.label for button in test.get("download_button")]
    assert labels_shown() == ["Download HTML", "Download JSON", "Download CSV (zip)", "Download PDF"]
    assert all(button.proto.disabled is (not CHROMIUM.exists() and button.proto.label == "Download PDF")
               for button in test.get("download_button"))
    test.multiselect(key="filter_race").set_value(["Black"]).run()  # PDF stays after a filter change
    assert labels_shown()[-1] == "Download PDF" and not built
    assert any("faceaudit-synthetic-race-Black.…" in c.value for c in test.caption)


def test_a_shared_link_restores_bundle_and_filter_and_the_url_follows_changes(app):
    test = app(None, query={"bundle": "wild-gender-shades", "filter.skin": "darker", "filter.gender": "Female"})
    assert not test.exception and test.selectbox(key="bundle_name").value == "wild-gender-shades"
    assert test.multiselect(key="filter_skin").value == ["darker"] and test.multiselect(key="filter_gender").value == ["Female"]
    assert any("filtered to 60 faces" in m.value for m in test.markdown)
    test.multiselect(key="filter_gender").set_value([]).run()
    url = lambda: {key: value if isinstance(value, list) else [value] for key, value in test.query_params.items()}
    assert url() == {"bundle": ["wild-gender-shades"], "filter.skin": ["darker"]}
    test.selectbox(key="bundle_name").set_value("synthetic").run()  # the other bundle has no `skin`: the URL says so
    assert url() == {"bundle": ["synthetic"]}


def test_a_link_to_what_is_not_here_says_so_and_applies_the_rest(app):
    test = app(None, query={"bundle": "gone", "filter.race": ["Black", "Martian"], "filter.hair": "red"})
    assert not test.exception
    assert test.multiselect(key="filter_race").value == ["Black"]
    [warning] = [w.value for w in test.warning if w.value.startswith("This link asked for")]
    assert "no bundle named 'gone'" in warning.replace("\\", "") and "race has no value 'Martian'" in warning.replace("\\", "")
    assert "no filter column 'hair'" in warning.replace("\\", "")


def test_auditors_own_column_filters_and_groups(app):
    test = app(None, bundle_name="wild-gender-shades")
    assert "darker" in test.multiselect(key="filter_skin").options  # a text column of the dataset, in the sidebar
    test.multiselect(key="filter_skin").set_value(["darker"]).run()
    assert not test.exception
    assert any("filtered to 120 faces" in m.value for m in test.markdown)
    test = app("pages/subgroups.py", bundle_name="wild-gender-shades")
    assert "skin" in test.multiselect(key="subgroups_by").options
    test.multiselect(key="subgroups_by").set_value(["skin", "gender"]).run()
    assert not test.exception and not test.error
    worst = [m.value for m in test.markdown if "Worst groups" in m.value]
    assert worst and "worst skin × gender group **darker / Female**: 0.650 (95 % CI" in worst[0] and "n = 60" in worst[0]


@pytest.mark.parametrize("bundle_name", ["xx-empty", "xx-damaged"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_survives_an_empty_or_damaged_bundle(app, page, bundle_name):
    test = app(page, bundle_name=bundle_name)
    assert not test.exception, test.exception
    if bundle_name == "xx-damaged" and page not in ("pages/about.py", "pages/inspect_photo.py"):
        assert any("a file of the bundle is damaged" in error.value for error in test.error)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_works_on_a_bundle_of_imported_predictions(app, model_dir, page):
    """An outside model known only by its outputs: no race head, no probabilities, no face boxes, no model here."""
    test = app(page, bundle_name="wild-imported")
    assert not test.exception, test.exception
    assert not test.error, [e.value for e in test.error]
    said = " ".join(element.value for kind in ("subheader", "info", "caption") for element in getattr(test, kind))
    if page == "pages/overview.py":
        assert "Vendor API, predictions imported from vendor.csv" in said.replace("\\", "")
    if page == "pages/saliency.py":
        assert "needs the model's gradients" in said
    if page == "pages/gallery.py":  # mistakes without probabilities: shown, not left out by the confidence range
        frame = read_bundle(model_dir / "audits" / "wild-imported").predictions
        wrong = int((frame["gender"].astype("string") != frame["pred_gender"].astype("string")).sum())
        assert wrong > 0 and f"{wrong} mistakes among {len(frame)} faces" in said  # before: 0 mistakes
        assert "race" not in test.radio(key="gallery_head").options  # no race predicted: no "0 mistakes" in race
    if page == "pages/error_analysis.py":
        assert "race" not in test.radio(key="errors_head").options


@pytest.fixture
def clean_sidecars(model_dir):
    """Cohorts and label suspects written beside the synthetic bundle are removed after the test."""
    folder = model_dir / "audits" / "synthetic"
    yield folder
    for name in ("cohorts.json", "label_suspects.csv"):
        (folder / name).unlink(missing_ok=True)


def test_error_analysis_finds_the_planted_cohort_and_opens_it_in_the_gallery(app, clean_sidecars):
    test = app("pages/error_analysis.py")
    test.slider(key="errors_min_leaf").set_value(5).run()  # 24 Black women, about 12 in the half a tree grows on
    assert not test.exception
    top = test.selectbox(key="errors_leaf_gender").options[0]
    assert "Black" in top and ("gender == Female" in top or "gender != Male" in top), top
    test.multiselect(key="errors_features_gender").set_value([]).run()  # every column unticked: said, not raised
    assert not test.exception and [i.value for i in test.info] == ["No tree: no column to split on: pick at least one."]
    test.multiselect(key="errors_features_gender").set_value(test.multiselect(key="errors_features_gender").options).run()
    test.button(key="errors_save").click().run()
    assert [s.value for s in test.success][0].startswith("Saved cohort")
    assert json.loads((clean_sidecars / "cohorts.json").read_text())["cohorts"][0]["conditions"]
    test.button(key="errors_open").click().run()  # to the gallery, the cohort chosen in the sidebar
    assert not test.exception
    assert [t.value for t in test.title] == ["Error gallery"]
    assert test.selectbox(key="cohort_name").value is not None
    cohort = test.session_state["session_cohorts"][test.session_state["cohort_name"]]
    chosen = read_bundle(clean_sidecars).predictions
    chosen = chosen[cohort.mask(chosen)]
    wrong = int((chosen["gender"] != chosen["pred_gender"]).sum())
    assert test.caption[0].value.startswith(f"{wrong} mistakes among {len(chosen)} faces") and 0 < wrong <= 12


def test_a_saved_cohort_applies_on_every_page_and_travels_in_the_url(app, clean_sidecars):
    from core.cohorts import Cohort, Condition, save_cohort

    save_cohort(clean_sidecars, Cohort("Black women", (Condition("race", "==", "Black"),
                                                       Condition("gender", "==", "Female"))))
    test = app(None, query={"cohort": "Black women"})
    assert test.selectbox(key="cohort_name").value == "Black women"
    assert any("filtered to 24 faces" in m.value for m in test.markdown)
    assert test.query_params["cohort"] in ("Black women", ["Black women"])
    test.switch_page("pages/cohorts.py").run()
    assert not test.exception
    test.selectbox(key="cohort_a").set_value(None).run()
    test.selectbox(key="cohort_b").set_value("Black women").run()
    shown = test.dataframe[-1].value
    assert list(shown.columns) == ["metric", "A: all faces", "B: Black women", "B − A"]
    row = shown[shown["metric"] == "Gender accuracy"].iloc[0]
    assert row["B: Black women"].startswith("50.0 %") and row["B − A"].startswith("-45.0 %")
    test.multiselect(key="filter_gender").set_value(["Female"]).run()  # the sidebar filter narrows "all faces"
    row = test.dataframe[-1].value.set_index("metric").loc["Gender accuracy"]
    assert row["A: all faces"].startswith("90.0 %") and row["B − A"].startswith("-40.0 %")


def test_a_label_suspect_is_saved_beside_the_bundle_and_metrics_shown_without_it(app, clean_sidecars):
    test = app("pages/gallery.py")
    toggle = [t for t in test.toggle if t.key.startswith("gallery_suspect_")][0]
    toggle.set_value(True).run()
    assert not test.exception
    assert "label_suspects.csv" in {p.name for p in clean_sidecars.iterdir()}
    assert "⚑ label suspect" in test.selectbox(key="gallery_record_1").options[0]
    test.switch_page("pages/overview.py").run()
    assert any("Label suspects: 1 marked" in h.value for h in test.subheader)
    table = test.dataframe[0].value
    gender = table[table["metric"] == "Gender accuracy"].iloc[0]
    assert gender["all faces"].startswith("0.950") and gender["without suspects"].startswith("0.954")  # 227 of 239
    test.checkbox(key="leave_out_suspects").check().run()
    assert any("filtered to 239 faces" in m.value for m in test.markdown)


def test_marking_a_face_keeps_it_the_chosen_face(app, clean_sidecars):
    """Marking changes no face's name in the lists: a changed name would send the record back to face 1."""
    test = app("pages/gallery.py")
    test.selectbox(key="gallery_record_1").set_value(4).run()
    [toggle] = [t for t in test.toggle if t.key.startswith("gallery_suspect_")]
    toggle.set_value(True).run()
    assert test.selectbox(key="gallery_record_1").value == 4
    [toggle] = [t for t in test.toggle if t.key.startswith("gallery_suspect_")]
    assert toggle.value is True
    assert read_suspects(clean_sidecars)["file"].tolist() == [test.selectbox(key="gallery_record_1").options[4].split(" ")[1]]


def test_several_faces_of_a_gallery_page_are_marked_at_once_then_unmarked(app, clean_sidecars):
    test = app("pages/gallery.py")
    test.button(key="gallery_bulk_mark").click().run()
    assert [w.value for w in test.warning] == ["Choose faces (or all faces of this page) first."]
    test.multiselect(key="gallery_bulk_faces").set_value([0, 2, 5])
    test.text_input(key="gallery_bulk_note").set_value("labelled gender looks swapped")
    test.button(key="gallery_bulk_mark").click().run()
    assert not test.exception
    assert [s.value for s in test.success] == ["3 of 3 faces marked in label_suspects.csv beside the bundle."]
    suspects = read_suspects(clean_sidecars)
    assert len(suspects) == 3 and set(suspects["note"]) == {"labelled gender looks swapped"}
    options = test.selectbox(key="gallery_record_1").options
    assert [i for i, name in enumerate(options) if "⚑ label suspect" in name] == [0, 2, 5]
    test.checkbox(key="gallery_bulk_all").check()
    test.button(key="gallery_bulk_unmark").click().run()
    assert [s.value for s in test.success] == ["3 of 12 faces unmarked in label_suspects.csv beside the bundle."]
    assert read_suspects(clean_sidecars).empty


def test_going_from_error_analysis_to_the_gallery_keeps_the_linked_bundle(app):
    test = app("pages/error_analysis.py", query={"bundle": "wild-gender-shades", "filter.gender": "Female"})
    test.slider(key="errors_min_leaf").set_value(5).run()
    test.button(key="errors_open").click().run()
    assert [t.value for t in test.title] == ["Error gallery"]
    assert test.selectbox(key="bundle_name").value == "wild-gender-shades"  # was the first bundle again
    assert test.multiselect(key="filter_gender").value == ["Female"]


def test_calibration_page_finds_the_overconfident_group(app):
    test = app("pages/calibration.py")
    said = [m.value for m in test.markdown if "Expected calibration error" in m.value]
    assert said and "of the gender head over 240 faces" in said[0]
    [table] = [frame.value.set_index("group") for frame in test.dataframe if "overconfidence" in frame.value.columns]
    assert table.loc["Black / Female", "overconfidence"] == pytest.approx(0.45, abs=1e-3)  # 0.95 sure, right half the time
    assert table["overconfidence"].idxmax() == "Black / Female"
