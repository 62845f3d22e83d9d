import pandas as pd
import pytest

from core.datasets import BOX_COLUMNS, ManifestError, read_fairface, read_manifest, read_utkface
from core.fairness import MISSING, grouping_columns, value_order
from tests.conftest import noise_image

UTK_GOOD = {
    "26_1_2_20170116174525125.jpg.chip.jpg": (26, "20-29", "Female", "Asian"),
    "1_0_4_20161221193016140.jpg.chip.jpg": (1, "0-2", "Male", "Others"),
    "116_1_0_20170120134921760.jpg.chip.jpg": (116, "more than 70", "Female", "White"),
    "24_0_1_20170116220224657 .jpg.chip.jpg": (24, "20-29", "Male", "Black"),  # space before .jpg
    "55_0_0_20170116232725357jpg.chip.jpg": (55, "50-59", "Male", "White"),  # dot missing
}
UTK_BAD = {
    "39_1_20170116174525125.jpg.chip.jpg": "the race field is missing",
    "30_2_0_20170116174525125.jpg.chip.jpg": "unknown gender code 2",
    "30_0_5_20170116174525125.jpg.chip.jpg": "unknown race code 5",
    "130_0_0_20170116174525125.jpg.chip.jpg": "not a whole number of years in 0-116",
    "notes.txt": "does not end in '.jpg.chip.jpg'",
    "a_b_c_d.jpg.chip.jpg": "are not whole numbers",
}


@pytest.fixture
def utk_folder(tmp_path):
    for index, name in enumerate([*UTK_GOOD, *UTK_BAD]):
        noise_image(index).save(tmp_path / name, format="JPEG")
    return tmp_path


def test_utkface_accounts_for_every_file(utk_folder):
    dataset = read_utkface(utk_folder)
    assert len(dataset.table) + len(dataset.rejects) == len(UTK_GOOD) + len(UTK_BAD)
    table = dataset.table.set_index("file")
    for name, (age, age_bin, gender, race) in UTK_GOOD.items():
        assert (table.at[name, "age"], table.at[name, "age_bin"], table.at[name, "gender"], table.at[name, "race"]) == (
            age, age_bin, gender, race)
    reasons = dict(zip(dataset.rejects["file"], dataset.rejects["reason"]))
    for name, fragment in UTK_BAD.items():
        assert fragment in reasons[name]
    assert len(dataset.notes) == 2 and all("irregular but unambiguous" in note for note in dataset.notes)


def test_utkface_columns_are_categorical_in_taxonomy_order(utk_folder):
    table = read_utkface(utk_folder).table
    assert list(table["race"].cat.categories) == ["White", "Black", "Asian", "Indian", "Others"]
    assert str(table["age"].dtype) == "Int64"


def test_utkface_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_utkface(tmp_path / "nope")


def _write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        noise_image(index).save(folder / name)


def test_fairface_bad_rows_go_to_rejects(tmp_path):
    _write_images(tmp_path / "imgs", ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"])
    (tmp_path / "labels.csv").write_text(
        "file,age,gender,race,service_test\n"
        "imgs/1.jpg,20-29,Female,Southeast Asian,True\n"
        "imgs/2.jpg,more than 70,Male,Middle Eastern,False\n"
        "imgs/3.jpg,20-29,Female,Martian,True\n"
        "imgs/4.jpg,21-30,Male,White,True\n"
        "imgs/9.jpg,20-29,Male,White,True\n"
        "imgs/5.jpg,3-9,male,black,False\n"
    )
    dataset = read_fairface(tmp_path / "labels.csv")
    assert dataset.table["file"].tolist() == ["imgs/1.jpg", "imgs/2.jpg", "imgs/5.jpg"]
    assert dataset.table["race"].tolist() == ["Asian", "Others", "Black"]
    assert dataset.table["fairface_race"].tolist() == ["Southeast Asian", "Middle Eastern", "black"]
    assert dataset.table["age"].isna().all() and dataset.table["age_bin"].tolist() == ["20-29", "more than 70", "3-9"]
    assert dataset.extra_columns == ["fairface_race", "service_test"]
    reasons = dataset.rejects.set_index("file")["reason"]
    assert reasons["imgs/3.jpg"].startswith("unknown race 'Martian'")
    assert reasons["imgs/4.jpg"].startswith("unknown age bin '21-30'")
    assert reasons["imgs/9.jpg"].startswith("missing file")


def test_manifest_keeps_extra_columns_and_checks_age_against_bin(tmp_path):
    _write_images(tmp_path / "photos", ["a.png", "b.png", "c.png", "d.png"])
    (tmp_path / "manifest.csv").write_text(
        "path,Age,gender,race,skin,identity,file\n".replace("Age", "age")
        + "photos/a.png,34,F,White,III,p1,x\n".replace(",F,", ",female,")
        + "photos/b.png,34,MALE,east asian,V,p2,y\n"
        + "photos/c.png,NA,,unknown,II,p3,z\n"
        + "photos/d.png,abc,male,White,I,p4,w\n"
    )
    dataset = read_manifest(tmp_path / "manifest.csv")
    assert dataset.name == "manifest"
    assert dataset.extra_columns == ["fairface_race", "skin", "identity", "manifest_file"]  # "east asian": the seven
    table = dataset.table.set_index("file")
    assert table.at["photos/b.png", "race"] == "Asian" and table.at["photos/b.png", "gender"] == "Male"
    assert table.at["photos/a.png", "age_bin"] == "30-39"
    assert pd.isna(table.at["photos/c.png", "age"]) and pd.isna(table.at["photos/c.png", "race"])
    assert table.at["photos/c.png", "skin"] == "II"
    assert dataset.rejects["file"].tolist() == ["photos/d.png"]
    assert dataset.rejects["reason"].iloc[0] == "age 'abc' is not a number"


def test_manifest_written_in_fairface_races_keeps_the_seven(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png", "c.png", "d.png", "e.png"])
    (tmp_path / "m.csv").write_text("path,race\na.png,latino_hispanic\nb.png,Middle Eastern\nc.png,white\n"
                                    "d.png,unknown\ne.png,Martian\n")
    dataset = read_manifest(tmp_path / "m.csv")
    table = dataset.table.set_index("file")
    assert table["fairface_race"].tolist()[:3] == ["Latino_Hispanic", "Middle Eastern", "White"]
    assert pd.isna(table.at["d.png", "fairface_race"]) and table["race"].tolist()[:3] == ["Others", "Others", "White"]
    assert dataset.rejects["file"].tolist() == ["e.png"] and dataset.notes == []  # its own reject, nothing more


@pytest.mark.parametrize(("races", "note"), [
    ("White,Asian", None),  # the five: nothing to keep
    ("East Asian,Asian,Others", ("m: race uses FairFace's seven classes, but 2 labels name Asian or Others, which do "
                                 "not say which of the seven; race-7 metrics are left out")),
])
def test_manifest_that_does_not_say_which_of_the_seven_keeps_the_five(tmp_path, races, note):
    names = [f"{index}.png" for index, _ in enumerate(races.split(","))]
    _write_images(tmp_path, names)
    (tmp_path / "m.csv").write_text("path,race\n" + "".join(f"{n},{r}\n" for n, r in zip(names, races.split(","))))
    dataset = read_manifest(tmp_path / "m.csv")
    assert "fairface_race" not in dataset.table and dataset.notes == ([note] if note else [])
    assert len(dataset.table) == len(names)


def test_manifest_age_outside_its_bin_is_rejected(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("path,age,age_bin\na.png,25,30-39\n")
    dataset = read_manifest(tmp_path / "m.csv")
    assert dataset.rejects["reason"].tolist() == ["age 25 is not in age bin '30-39'"]


def test_manifest_paths_outside_its_folder_are_opened_and_noted(tmp_path):
    _write_images(tmp_path / "elsewhere", ["a.png", "b.png"])
    _write_images(tmp_path / "set", ["c.png"])
    absolute = tmp_path / "elsewhere" / "b.png"
    (tmp_path / "set" / "m.csv").write_text(f"path,age\nc.png,30\n../elsewhere/a.png,31\n{absolute},32\n")
    dataset = read_manifest(tmp_path / "set" / "m.csv")
    assert len(dataset.table) == 3 and dataset.rejects.empty
    assert dataset.notes == [f"2 of 3 m images lie outside {tmp_path / 'set'} (absolute or '..' paths), "
                             f"e.g. {tmp_path / 'elsewhere' / 'a.png'}; they were opened as given"]


def test_manifest_inside_its_folder_has_no_note(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("path,age\n./a.png,30\n")
    assert read_manifest(tmp_path / "m.csv").notes == []


@pytest.mark.parametrize(
    ("text", "message"),
    [("photo_id,age\nx.png,3\n", "missing column(s) ['path']; found ['photo_id', 'age']; name them 'path' (or image, "),
     ("image,Filename,age\nx.png,y.png,3\n", "columns ['image', 'Filename'] could each be 'path'; name one of them"),
     ("", "is empty: it needs a header line with path")],
)
def test_malformed_manifest_fails_clearly(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ManifestError) as error:
        read_manifest(tmp_path / "m.csv")
    assert message in str(error.value)


def test_manifest_with_an_auditors_own_header_names_is_audited_on_its_labels(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "m.csv").write_text("Image Path,Sex,Ethnicity,Age Group,Monk,Age (years)\n"
                                    "a.png,F,East Asian,20-29,3,24\nb.png,M,White,70+,10,\nc.png,F,Indian,3-9,,\n")
    dataset = read_manifest(tmp_path / "m.csv")
    assert dataset.notes[0] == ("m: read column 'Image Path' as path, 'Age (years)' as age, 'Sex' as gender, "
                                "'Ethnicity' as race, 'Age Group' as age_bin")
    assert dataset.table["age"].tolist()[0] == 24
    table = dataset.table.set_index("file")
    assert table["gender"].tolist() == ["Female", "Male", "Female"]
    assert table["age_bin"].tolist() == ["20-29", "more than 70", "3-9"]
    assert table["fairface_race"].tolist() == ["East Asian", "White", "Indian"]
    assert dataset.extra_columns == ["fairface_race", "Monk"] and dataset.rejects.empty


def test_manifest_column_named_like_a_label_but_holding_other_values_stays_a_grouping_column(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "m.csv").write_text("file,Sex,Age Group,ethnicity\na.png,0,25-34,White\nb.png,1,18-24,Black\n")
    dataset = read_manifest(tmp_path / "m.csv")  # a census's age groups, a 0/1 gender code: every row still audited
    assert dataset.rejects.empty and dataset.table["gender"].isna().all() and dataset.table["age_bin"].isna().all()
    assert dataset.table["Age Group"].tolist() == ["25-34", "18-24"] and dataset.table["Sex"].tolist() == ["0", "1"]
    assert dataset.table["race"].tolist() == ["White", "Black"]
    assert dataset.notes == [
        "m: read column 'file' as path, 'ethnicity' as race",
        ("m: column 'Sex' was not read as gender: 2 of its values are not gender labels (e.g. '0'); it is kept as a "
         "grouping column"),
        ("m: column 'Age Group' was not read as age_bin: 2 of its values are not age_bin labels (e.g. '18-24'); it is "
         "kept as a grouping column")]


def test_manifest_age_column_of_bins_is_read_as_age_bin_but_a_mixed_one_is_not(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "bins.csv").write_text("path,age\na.png,\nb.png,50-59\nc.png,more than 70\n")
    dataset = read_manifest(tmp_path / "bins.csv")
    assert dataset.table["age_bin"].tolist()[1:] == ["50-59", "more than 70"] and dataset.table["age"].isna().all()
    assert dataset.notes == ["bins: its age column holds age bins (e.g. '50-59'), not years; read as age_bin"]
    (tmp_path / "mixed.csv").write_text("path,age\na.png,25\nb.png,50-59\n")
    mixed = read_manifest(tmp_path / "mixed.csv")
    assert mixed.rejects["reason"].tolist() == ["age '50-59' is not a number"] and mixed.notes == []


def test_manifest_without_a_label_column_says_its_audit_has_no_accuracy(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("path,Geschlecht,site\na.png,weiblich,Bern\n")
    dataset = read_manifest(tmp_path / "m.csv")
    assert dataset.notes == [("m has no label column (age, age_bin, gender, race), so the audit shows predictions with "
                              "no accuracy; its other columns (Geschlecht, site) are kept for grouping. Rename a column "
                              "of labels to one of those names to audit it")]
    assert dataset.table["Geschlecht"].tolist() == ["weiblich"]


def test_manifest_grouping_values_are_trimmed_blank_ones_missing_and_case_twins_noted(tmp_path):
    names = [f"{index}.png" for index in range(6)]
    _write_images(tmp_path, names)
    cells = [("Outdoor ", "10"), ("outdoor", "2"), ("", "9"), ("indoor", " "), (" indoor", "1"), ("OUTDOOR", "")]
    (tmp_path / "m.csv").write_text("path,age,lighting,monk\n"
                                    + "".join(f"{n},30,{light},{monk}\n" for n, (light, monk) in zip(names, cells)))
    dataset = read_manifest(tmp_path / "m.csv")
    table = dataset.table
    assert table["lighting"].tolist()[:2] == ["Outdoor", "outdoor"] and table["lighting"].isna().sum() == 1
    assert value_order(table["monk"]) == ["1", "2", "9", "10", MISSING]  # numbers in order, the blanks last
    assert value_order(table["lighting"]) == ["OUTDOOR", "Outdoor", "indoor", "outdoor", MISSING]
    assert dataset.notes == [("m: column 'lighting' has values that differ only in letter case, kept as separate "
                              "groups: 'OUTDOOR' / 'Outdoor' / 'outdoor'")]


def test_manifest_written_on_windows_finds_its_images_and_says_how(tmp_path):
    _write_images(tmp_path / "photos" / "sub", ["A.jpg", "b.jpg"])
    (tmp_path / "m.csv").write_text(
        "path,gender\n"
        "photos\\sub\\A.jpg,F\n"  # backslashes
        "photos/SUB/B.JPG,M\n"  # Windows and macOS ignore letter case
        f"file://{tmp_path}/photos/sub/b.jpg,M\n"
        "C:\\Users\\me\\photos\\b.jpg,M\n"
        "https://example.com/x.jpg,F\n"
        "photos/sub/c.jpg,F\n")
    dataset = read_manifest(tmp_path / "m.csv")
    assert dataset.table["path"].tolist() == [str(tmp_path / "photos" / "sub" / name) for name in ("A.jpg", "b.jpg", "b.jpg")]
    reasons = dataset.rejects["reason"].tolist()
    assert reasons[0] == "C:\\Users\\me\\photos\\b.jpg is a Windows drive path: list the images relative to the label file's folder"
    assert reasons[1].startswith("https://example.com/x.jpg is a web address: FaceAudit reads image files")
    assert reasons[2] == f"missing file {tmp_path / 'photos' / 'sub' / 'c.jpg'}"
    assert dataset.notes == [("1 m image path(s) name a file only as Windows reads them, with \\ as the folder "
                              "separator: e.g. 'photos\\sub\\A.jpg'"),
                             ("1 m image path(s) name a file only as Windows reads them, ignoring letter case: e.g. "
                              "'photos/SUB/B.JPG'")]


def test_manifest_column_of_many_numbers_is_grouped_by_quartile_beside_itself(tmp_path):
    names = [f"{index}.png" for index in range(80)]
    _write_images(tmp_path, names)
    brightness = [f"{index / 100:.2f}" if index % 20 else "" for index in range(80)]  # 76 numbers, 4 blanks
    (tmp_path / "m.csv").write_text("path,gender,brightness,yaw,Subject ID,photo_no\n" + "".join(
        f"{n},F,{b},{index % 3},{index % 60},{index}\n" for index, (n, b) in enumerate(zip(names, brightness))))
    dataset = read_manifest(tmp_path / "m.csv")
    table = dataset.table
    assert dataset.extra_columns == ["brightness", "brightness (quartile)", "yaw", "Subject ID", "photo_no"]  # no ids
    assert table["brightness (quartile)"].value_counts().to_dict() == {
        "Q1 (0.01 to 0.19)": 19, "Q2 (0.21 to 0.39)": 19, "Q3 (0.41 to 0.59)": 19, "Q4 (0.61 to 0.79)": 19}
    assert table.loc[table["brightness"].isna(), "brightness (quartile)"].isna().all()
    assert grouping_columns(table) == ["race", "gender", "age_bin", "brightness (quartile)", "yaw"]
    assert dataset.notes == [("m: column 'brightness' holds 76 different numbers, too many to group by: "
                              "'brightness (quartile)' groups its rows by quartile")]


def test_manifest_face_boxes_are_read_whole_or_rejected_with_the_reason(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("path,gender,box_x,box_y,box_w,box_h,site\n"
                                    "a.png,F,10,20,30.5,40,x\na.png,M,,,,,x\na.png,M,1,2,0,4,x\na.png,F,1,2,three,4,x\n")
    dataset = read_manifest(tmp_path / "m.csv")
    assert dataset.table[list(BOX_COLUMNS)].iloc[0].tolist() == [10, 20, 30.5, 40]
    assert dataset.table[list(BOX_COLUMNS)].iloc[1].isna().all()  # no box: the face rule chooses
    assert dataset.rejects["reason"].tolist() == [
        "face box 1, 2, 0, 4 is not four numbers x, y, w, h with a positive width and height",
        "face box 1, 2, three, 4 is not four numbers x, y, w, h with a positive width and height"]
    assert "box_x" not in grouping_columns(dataset.table)
    (tmp_path / "half.csv").write_text("path,box_x,box_y\na.png,1,2\n")
    with pytest.raises(ManifestError, match="a labelled face box needs all of box_x, box_y, box_w, box_h; it has box_x, box_y"):
        read_manifest(tmp_path / "half.csv")
