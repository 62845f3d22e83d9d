import pytest

from core import labels


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0, "0-2"), (2, "0-2"), (3, "3-9"), (19, "10-19"), (20, "20-29"), (69, "60-69"), (70, "more than 70"), (116, "more than 70")],
)
def test_age_to_bin_edges(age, expected):
    assert labels.age_to_bin(age) == expected


def test_age_bins_are_fairfaces_nine():
    assert labels.AGE_BINS == ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("White", "White"), ("white", "White"), ("East Asian", "Asian"), ("east_asian", "Asian"),
     ("Southeast Asian", "Asian"), ("Latino_Hispanic", "Others"), ("latino hispanic", "Others"),
     ("Middle Eastern", "Others"), ("Indian", "Indian"), (" Black ", "Black"), ("OTHERS", "Others")],
)
def test_parse_race_maps_fairface_seven_to_five(value, expected):
    assert labels.parse_race(value) == expected


def test_every_fairface_race_maps_to_a_race():
    assert set(labels.FAIRFACE_TO_RACE) == set(labels.FAIRFACE_RACES)
    assert set(labels.FAIRFACE_TO_RACE.values()) <= set(labels.RACES)


@pytest.mark.parametrize("value", ["Hispanic", "latino", "Latino_Hispanic", "latino hispanic"])
def test_latino_and_hispanic_name_fairfaces_latino_hispanic(value):
    assert labels.parse_race7(value) == "Latino_Hispanic" and labels.parse_race(value) == "Others"
    assert labels.race7_labels([value, "White"]) == ["Latino_Hispanic", "White"]


@pytest.mark.parametrize(("value", "expected"), [("male", "Male"), ("FEMALE", "Female"), ("Female ", "Female"),
                                                 ("F", "Female"), ("m", "Male"), ("Woman", "Female"), ("man", "Male")])
def test_parse_gender(value, expected):
    assert labels.parse_gender(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("more than 70", "more than 70"), ("70+", "more than 70"), ("20-29", "20-29"),
                                                 (" 20 - 29 ", "20-29"), ("20\u201329", "20-29")])  # spaced, en dash
def test_parse_age_bin(value, expected):
    assert labels.parse_age_bin(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("25", 25), (25.0, 25), ("0", 0), ("116", 116)])
def test_parse_age(value, expected):
    assert labels.parse_age(value) == expected


@pytest.mark.parametrize("value", ["-1", "117", "25.5", "abc", "nan", "inf"])
def test_parse_age_rejects(value):
    with pytest.raises(labels.LabelError, match="age"):
        labels.parse_age(value)


def test_unknown_label_message_lists_valid_names():
    with pytest.raises(labels.LabelError) as error:
        labels.parse_race("Martian")
    assert str(error.value).startswith("unknown race 'Martian'; valid: White, Black, Asian, Indian, Others, East Asian")
    with pytest.raises(labels.LabelError, match="unknown gender 'x'; valid: Male, Female, M, F, man, woman"):
        labels.parse_gender("x")
    with pytest.raises(labels.LabelError, match="unknown gender '1'"):  # 0/1 mean either, dataset by dataset
        labels.parse_gender("1")
