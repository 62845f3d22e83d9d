import io

from core.datasets import read_manifest
from core.dedup import find_duplicate_groups, scan_images
from tests.conftest import noise_image


def test_scan_groups_exact_and_near_duplicates_and_flags_conflicts(tmp_path):
    original = noise_image(1, 200)
    original.save(tmp_path / "a.png")
    (tmp_path / "a_copy.png").write_bytes((tmp_path / "a.png").read_bytes())  # exact
    buffer = io.BytesIO()
    original.resize((180, 180)).save(buffer, format="JPEG", quality=70)  # near: re-encoded, resized
    (tmp_path / "a_near.jpg").write_bytes(buffer.getvalue())
    noise_image(2, 200).save(tmp_path / "b.png")
    noise_image(3, 200).save(tmp_path / "c.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "m.csv").write_text(
        "path,age,gender,race\n"
        "a.png,30,Male,White\na_copy.png,31,Male,White\na_near.jpg,30,Male,White\n"
        "b.png,30,Female,Black\nc.png,40,Female,Asian\nbroken.png,40,Female,Asian\n"
    )
    scanned = scan_images(read_manifest(tmp_path / "m.csv"))
    assert scanned.rejects["file"].tolist() == ["broken.png"]
    assert scanned.rejects["reason"].iloc[0].startswith("unreadable image")
    groups = find_duplicate_groups(scanned.table).set_axis(scanned.table["file"])
    assert groups.loc["a.png", "group"] == groups.loc["a_copy.png", "group"] == groups.loc["a_near.jpg", "group"]
    assert len({groups.loc["a.png", "group"], groups.loc["b.png", "group"], groups.loc["c.png", "group"]}) == 3
    assert groups.loc[["a.png", "a_copy.png", "a_near.jpg"], "group_size"].tolist() == [3, 3, 3]
    assert groups.loc[["a.png", "a_copy.png", "a_near.jpg"], "exact_duplicate"].tolist() == [True, True, False]
    assert groups.loc["a.png", "label_conflict"] and groups.loc["a.png", "conflict"] == "age"
    assert not groups.loc["b.png", "label_conflict"]
