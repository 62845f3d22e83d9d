"""Tests on the real data in ../shared/data (or FACEAUDIT_DATA); skipped when it is absent."""

import numpy as np
import pandas as pd
import pytest

from core.catalog import apply_split, build_catalog, summarize
from core.config import SPLIT_FILE
from core.datasets import read_fairface, read_london_set, read_utkface
from core.dedup import (
    NEAR_DUPLICATE_CORRELATION,
    NEAR_DUPLICATE_DISTANCE,
    find_duplicate_groups,
    near_duplicate_components,
    packed_hashes,
)
from core.split import make_split, read_split

BROKEN_UTKFACE_NAMES = {
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
}


@pytest.fixture(scope="module")
def utkface_catalog(shared_data):
    return build_catalog(read_utkface(shared_data / "utkface" / "UTKFace"))


def test_utkface_accounts_for_all_23707_files(utkface_catalog):
    assert len(utkface_catalog.table) + len(utkface_catalog.rejects) == 23_707
    assert set(utkface_catalog.rejects["file"]) == BROKEN_UTKFACE_NAMES
    assert utkface_catalog.rejects["reason"].str.contains("race field is missing").all()
    kept = set(utkface_catalog.table["file"])
    assert {"24_0_1_20170116220224657 .jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg"} <= kept


def test_committed_split_covers_every_usable_file_and_no_group_straddles(utkface_catalog):
    split = read_split(SPLIT_FILE)
    assert set(split["file"]) == set(utkface_catalog.table["file"])
    # groups recomputed from the images, not taken from the file
    catalog = apply_split(utkface_catalog, split)
    assert catalog.table.groupby("group")["split"].nunique().max() == 1
    shares = catalog.table["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.005) and shares["test"] == pytest.approx(0.2, abs=0.005)


def test_committed_split_is_reproducible(utkface_catalog):
    # The split was made from hash-only groups (before the centre check); today's groups are finer, never coarser.
    table = utkface_catalog.table
    hash_only = find_duplicate_groups(table, min_centre_correlation=-1.0)
    assert table.groupby("group")[[]].size().size >= hash_only["group"].nunique()
    assert table.assign(coarse=hash_only["group"]).groupby("group")["coarse"].nunique().max() == 1
    fresh = make_split(table, hash_only["group"], seed=0).sort_values("file").reset_index(drop=True)
    committed = read_split(SPLIT_FILE).sort_values("file").reset_index(drop=True)
    assert fresh["split"].tolist() == committed["split"].tolist()


@pytest.mark.parametrize("min_centre_correlation", [NEAR_DUPLICATE_CORRELATION, -1.0], ids=["rule", "hash only"])
def test_hash_index_gives_the_groups_of_comparing_every_pair_on_utkface(utkface_catalog, min_centre_correlation):
    distinct = utkface_catalog.table.drop_duplicates("sha1")
    hashes = packed_hashes(distinct["dhash"])
    centres = distinct["centre"].to_numpy()
    rule = {"max_distance": NEAR_DUPLICATE_DISTANCE, "min_centre_correlation": min_centre_correlation}
    indexed = near_duplicate_components(hashes, centres, **rule)
    every_pair = near_duplicate_components(hashes, centres, index_from=len(hashes) + 1, **rule)
    assert len(hashes) == 23_314 and np.array_equal(indexed, every_pair)
    assert (indexed != np.arange(len(hashes))).sum() > 600  # rows joined to another: 619 (rule), 628 (hash only)


def test_utkface_has_hundreds_of_conflicting_duplicate_groups(utkface_catalog):
    counts = summarize(utkface_catalog)["counts"]
    assert counts["exact-duplicate groups"] == 375  # every exact group of the hash-only rule
    assert counts["duplicate groups (exact or near)"] >= 915  # of 929 with the hash-only rule: 920 measured
    assert counts["groups with conflicting labels"] > 100


def test_london_set_duplicate_groups_never_hold_two_people(shared_data):
    table = build_catalog(read_london_set(shared_data / "london_set")).table
    assert table.groupby("group")["face_id"].nunique().max() == 1


def test_fairface_sample_reads_every_row(shared_data):
    dataset = read_fairface(shared_data / "fairface_sample" / "labels.csv")
    assert len(dataset.table) == 572 and dataset.rejects.empty
    assert set(dataset.table["fairface_race"]) == {
        "White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"}
    assert not dataset.table["race"].isna().any()


def test_london_set_reads_every_row_with_missing_ages_kept(shared_data):
    dataset = read_london_set(shared_data / "london_set")
    assert len(dataset.table) == 204 and dataset.rejects.empty
    assert dataset.table["age"].isna().sum() == 4
    assert pd.Series(dataset.table["race"]).notna().all()
