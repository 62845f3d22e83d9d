"""The FairFace split and the cross-source duplicate check (`training.fairface_split`)."""

import shutil

import numpy as np
import pandas as pd
from PIL import Image

from core.dedup import _scan_one, find_duplicate_groups
from core.split import read_split
from tests.conftest import noise_image
from training.fairface_split import (
    CROSS_SOURCE,
    FAIRFACE_SPLIT,
    SAMPLE_FACE_REGION,
    _hashes_of_region,
    men_with_evaluated_twins,
)


def test_a_wider_crop_of_the_same_photo_is_found_by_its_face_region(tmp_path):
    face = noise_image(7, 224)
    face.save(tmp_path / "val.jpg", quality=90)
    side = round(224 / SAMPLE_FACE_REGION)  # the same photo cropped with more background, as the FairFace sample is
    wide = Image.fromarray(np.asarray(noise_image(8, side)))
    wide.paste(face, ((side - 224) // 2, (side - 224) // 2))
    wide.resize((448, 448)).save(tmp_path / "sample.jpg", quality=90)
    noise_image(9, 224).save(tmp_path / "other.jpg", quality=90)
    rows = [(path.name, *_hashes_of_region(str(path), share)) for path, share in
            ((tmp_path / "val.jpg", 1.0), (tmp_path / "sample.jpg", SAMPLE_FACE_REGION), (tmp_path / "other.jpg", 1.0))]
    table = pd.DataFrame(rows, columns=["file", "dhash", "centre"]).assign(
        sha1=["a", "b", "c"], age=30, gender="Male", race="White")
    groups = find_duplicate_groups(table)["group"].tolist()
    assert groups[0] == groups[1] != groups[2]


def test_the_committed_split_is_stratified_and_keeps_evaluated_twins_out_of_training(shared_data):
    split = read_split(FAIRFACE_SPLIT)
    labels = pd.read_csv(shared_data / "fairface" / "fairface_label_val.csv")
    assert sorted(split["file"]) == sorted(labels["file"])
    counts = split["split"].value_counts()
    assert counts["test"] >= 3000 and counts["train"] > counts["test"] > counts["val"]
    joined = labels.merge(split, on="file")
    share = joined.groupby(["race", "gender"])["split"].apply(lambda s: (s == "test").mean())
    assert share.between(0.27, 0.33).all(), share  # every race-7 x gender stratum near its 30 % test share
    twins = pd.read_csv(CROSS_SOURCE)
    in_val = twins.loc[twins["source"] == "fairface-val", "file"]
    assert split.set_index("file").loc[in_val, "split"].eq("test").all()  # their twins in the sample are evaluated
    assert joined.groupby("group")["split"].nunique().max() == 1  # a duplicate group is never split


def test_photos_of_men_are_listed_when_their_twin_is_evaluated_not_when_it_is_trained_on(tmp_path):
    men = tmp_path / "men"
    (men / "train").mkdir(parents=True)
    for k in range(4):
        noise_image(20 + k, 224).save(men / "train" / f"{k}.jpg", quality=90)
    (men / "fairface_label_train.csv").write_text("file,age,gender,race,service_test\n" + "".join(
        f"train/{k}.jpg,20-29,Male,White,True\n" for k in range(4)))
    rows = []  # twins of men 0 (FairFace val's test part), 1 (its train part) and 2 (the FairFace sample); 3 has none
    for twin, (file, source, role) in enumerate([("val/1.jpg", "fairface-val", "fairface-val"),
                                                 ("val/2.jpg", "fairface-val", "fairface-val"),
                                                 ("imgs/3.jpg", "fairface-sample", "evaluated")]):
        path = tmp_path / file.replace("/", "_")
        shutil.copy(men / "train" / f"{twin}.jpg", path)
        sha1, fingerprint, centre, *_ = _scan_one(str(path))
        rows.append({"file": file, "source": source, "role": role, "sha1": sha1, "dhash": fingerprint,
                     "centre": centre, "age": pd.NA, "age_bin": "20-29", "gender": "Male", "race": "White"})
    split = pd.DataFrame({"file": ["val/1.jpg", "val/2.jpg"], "split": ["test", "train"]})
    twins = men_with_evaluated_twins(pd.DataFrame(rows), split, str(men))
    assert sorted(twins.loc[twins["role"] == "men", "file"]) == ["train/0.jpg", "train/2.jpg"]
    assert sorted(twins.loc[twins["role"] != "men", "role"]) == ["evaluated", "fairface-val-test"]
