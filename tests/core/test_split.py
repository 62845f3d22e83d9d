import numpy as np
import pandas as pd
import pytest

from core.labels import AGE_BINS, GENDERS, RACES
from core.split import SplitError, make_split, read_split, write_split


def _table(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "file": [f"{i:05d}.jpg" for i in range(n)],
        "race": rng.choice(RACES, n), "gender": rng.choice(GENDERS, n), "age_bin": rng.choice(AGE_BINS[:4], n),
    })
    groups = pd.Series(np.arange(n))
    groups[10:20] = 10  # a group of ten
    groups[100:103] = 100
    return table, groups


def test_split_keeps_groups_whole_and_hits_fractions():
    table, groups = _table()
    split = make_split(table, groups, seed=0)
    assert split.groupby("group")["split"].nunique().max() == 1
    shares = split["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.01)
    assert shares["val"] == pytest.approx(0.1, abs=0.01)
    assert shares["test"] == pytest.approx(0.2, abs=0.01)


def test_split_is_stratified():
    table, groups = _table()
    split = make_split(table, groups, seed=0).assign(race=table["race"], gender=table["gender"])
    test_share = split.groupby(["race", "gender"])["split"].apply(lambda s: (s == "test").mean())
    assert test_share.between(0.17, 0.23).all()


def test_split_is_seeded():
    table, groups = _table()
    assert make_split(table, groups, seed=1).equals(make_split(table, groups, seed=1))
    assert not make_split(table, groups, seed=1).equals(make_split(table, groups, seed=2))


def test_split_round_trip_and_bad_file(tmp_path):
    table, groups = _table(200)
    split = make_split(table, groups)
    write_split(split, tmp_path / "s.csv")
    assert read_split(tmp_path / "s.csv").sort_values("file").reset_index(drop=True).astype(object).equals(
        split.sort_values("file").reset_index(drop=True).astype(object))
    (tmp_path / "bad.csv").write_text("file,split,group\na.jpg,holdout,1\n")
    with pytest.raises(SplitError, match=r"unknown split name\(s\) \['holdout'\]; valid: train, val, test"):
        read_split(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="python -m training.data --write-split"):
        read_split(tmp_path / "none.csv")
