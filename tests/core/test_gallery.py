import io

import numpy as np
import pandas as pd
import pytest

from core.bundle import export_name, read_bundle, write_bundle
from core.gallery import Mistakes, available_heads, find_mistakes, mistakes, mistakes_csv, tile_caption
from tests.bundle_fixture import seven_race_predictions, synthetic_bundle, synthetic_predictions


@pytest.fixture
def bins_only():
    """FairFace-like: true age bins, no exact ages (pandas' Int64 NA)."""
    frame = synthetic_predictions(60)
    frame["age"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    return frame


def test_bin_only_data_offers_no_age_head_and_has_no_age_mistakes(bins_only):
    assert available_heads(bins_only) == ["gender", "race", "age_bin"]
    assert mistakes(bins_only, "age").empty  # not 60 "nan" tiles
    assert available_heads(synthetic_predictions(60)) == ["gender", "race", "age_bin", "age"]


def test_age_mistakes_need_an_exact_age_and_a_real_error():
    frame = synthetic_predictions(60)
    frame.loc[:9, "age"] = pd.NA
    frame["pred_age"] = frame["age"].astype("float64").fillna(30) + np.where(frame.index % 2 == 0, 12.0, 1.0)
    wrong = mistakes(frame, "age")
    assert set(wrong.index) == {i for i in range(10, 60) if i % 2 == 0}
    assert wrong["age_error"].to_numpy() == pytest.approx(12.0) and wrong["age_error"].dtype == "float64"


def test_pages_cover_every_mistake_once():
    frame = synthetic_predictions(60)
    found = Mistakes(frame, np.arange(60)[::-1], np.arange(60.0), np.linspace(1, 0, 60))
    pages = [found.page(number, 24) for number in (1, 2, 3)]
    assert [len(p) for p in pages] == [24, 24, 12] and len(found) == 60 and found.pages(24) == 3
    assert pd.concat(pages).index.equals(frame.index[::-1])  # in the mistakes' order, each once
    assert found.page(9, 24).index.equals(pages[2].index)  # past the end: the last page
    assert pages[1]["age_error"].tolist() == list(np.arange(24.0, 48.0))  # each row keeps its own values
    assert found.take().equals(pd.concat(pages))


def test_a_page_of_a_bundle_read_in_parts_is_its_rows(tmp_path):
    """A page is cut out row by row (a million-row bundle read in parts); it must equal taking those rows at once."""
    frame = read_bundle(write_bundle(synthetic_bundle(240), tmp_path / "parts", part_rows=50)).predictions
    order = np.random.default_rng(0).permutation(240)  # rows from every part, in no order
    found = Mistakes(frame, order, np.arange(240.0), np.linspace(1, 0, 240))
    rows = found.rows[24:48]
    expected = frame.iloc[rows].assign(age_error=found.age_error[24:48], confidence=found.confidence[24:48])
    page = found.page(2, 24)
    assert page.equals(expected) and list(page.dtypes) == list(expected.dtypes) and page.index.equals(expected.index)
    assert found.take().equals(frame.iloc[found.rows].assign(age_error=found.age_error, confidence=found.confidence))


def test_csv_has_one_row_per_face_and_every_column():
    frame = synthetic_predictions(60)
    frame.loc[0, "file"] = "=HYPERLINK(\"http://x\")"
    wrong = mistakes(frame, "gender")
    back = pd.read_csv(io.BytesIO(mistakes_csv(find_mistakes(frame, "gender"))))
    assert len(back) == len(wrong) == 3 and list(back.columns) == list(wrong.columns)
    assert "confidence" in back and not back["file"].str.startswith("=").any()


def test_tile_caption_labels_the_confidence_and_the_age_error():
    frame = synthetic_predictions(60)
    row = mistakes(frame, "gender").iloc[0]
    assert f"confidence in {row['pred_gender']}: 95%" in tile_caption(row, "gender")
    frame["pred_age"] = frame["age"].astype("float64") + 10
    row = mistakes(frame, "age").iloc[0]
    assert "age error 10 y, predicted spread ± 3 y" in tile_caption(row, "age")


def test_tile_caption_leaves_out_what_the_labels_or_the_model_do_not_give():
    row = mistakes(synthetic_predictions(60), "gender").iloc[0].copy()
    row[["age", "race", "pred_race", "pred_age"]] = [np.nan, None, None, np.nan]  # a user's model of gender alone
    caption = tile_caption(row, "gender")
    assert caption.startswith(f"true {row['age_bin']} · {row['gender']} → predicted {row['pred_gender']} · confidence")
    assert "nan" not in caption and "None" not in caption


def test_export_names_say_bundle_and_filter():
    assert export_name("fairface-sample", {}) == "faceaudit-fairface-sample"
    assert (export_name("utkface-test", {"race": ["Black"], "gender": ["Female", "Male"], "age_bin": []}, "gender")
            == "faceaudit-utkface-test-gender-gender-Female+Male-race-Black")
    assert export_name("x", {"skin": ["dark / very dark"]}) == "faceaudit-x-skin-dark_very_dark"


def test_a_small_face_in_a_large_photo_is_shown_close_up_and_outlined(tmp_path):
    from PIL import Image

    from core.gallery import face_thumbnail

    Image.new("RGB", (2000, 400), (90, 90, 90)).save(tmp_path / "crowd.png")
    close = face_thumbnail(tmp_path / "crowd.png", (1500, 150, 100, 100), side=300)  # the square 3 faces wide
    assert close.shape == (300, 300, 3) and (close[100, 100:200] == (255, 196, 0)).all()  # the box's top edge
    whole = face_thumbnail(tmp_path / "crowd.png", (100, 100, 800, 200), side=300)  # a large face: the whole photo
    assert whole.shape == (60, 300, 3)


def test_a_seven_class_models_race7_mistakes_are_a_gallery_of_their_own():
    frame = seven_race_predictions()  # every Middle Eastern woman called White
    assert available_heads(frame) == ["gender", "race", "age_bin", "race7", "age"]
    assert "race7" not in available_heads(frame.drop(columns="pred_race7"))  # a five-class model
    wrong = mistakes(frame, "race7", true_values=["Middle Eastern"])
    assert len(wrong) == 50 and set(wrong["pred_race7"]) == {"White"} and mistakes(frame, "race").empty
    caption = tile_caption(wrong.iloc[0], "race7")
    assert "Female · Middle Eastern → predicted" in caption and "· White · confidence in White" in caption


def test_mistakes_without_probabilities_are_shown_unless_the_confidence_range_is_narrowed():
    frame = synthetic_predictions(240).drop(columns=["p_gender_Male", "p_gender_Female"])  # imported labels only
    wrong = find_mistakes(frame, "gender")
    assert len(wrong) == (frame["gender"] != frame["pred_gender"]).sum() == 12  # before: none, silently
    assert len(find_mistakes(frame, "gender", confidence=(0.5, 1.0))) == 0
    assert available_heads(frame.assign(pred_race=None)) == ["gender", "age_bin", "age"]  # a model of no race
    assert tile_caption(wrong.take(0, 1).iloc[0], "gender").endswith("confidence in Male: not given")
