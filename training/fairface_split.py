"""Split FairFace val (10,954 photos) into train/val/test for training, and find duplicates across every source.

    python -m training.fairface_split            # writes splits/fairface.csv and splits/cross_source_duplicates.csv
    python -m training.fairface_split --fairface-men DIR   # also splits/fairface_men_excluded.csv

Every image of FairFace val, the FairFace sample, UTKFace and the London set is scanned and grouped with
`core.dedup` (exact or near duplicates, checked on the face's centre), across sources; the FairFace sample is
compared by the region a FairFace val crop shows (it is cropped wider). FairFace val is then split
60/10/30 (test ≥ 3,000), seeded, stratified by FairFace's seven races × gender × age bin, a duplicate group never
split. A group that also holds an image evaluated elsewhere (UTKFace val or test, the FairFace sample, the London
set) goes to test, so its twin is never trained on; one that holds a UTKFace training image goes to train, so no
FairFace test image has a trained-on twin. Both printed, with every cross-source group in the second file.

With `--fairface-men` (the folder `../shared/data/extra/prepare_fairface_train.py` wrote) FairFace's train photos of
men are scanned too, without changing the split: every one with a twin that is evaluated (FairFace val's val or test
part, the sample, UTKFace val or test, the London set) is listed in the third file, which `training.train
--fairface-men` leaves out of training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from core.config import FAIRFACE_MEN_EXCLUDED, REPO_ROOT, SPLIT_FILE, Settings, add_settings_arguments
from core.config import FAIRFACE_SPLIT_FILE as FAIRFACE_SPLIT
from core.datasets import read_fairface, read_london_set, read_utkface
from core.dedup import centre_thumbnail, dhash, find_duplicate_groups, scan_images
from core.split import make_split, read_split, write_split
from training._cli import command
from training.evaluate import load_named_dataset

CROSS_SOURCE = REPO_ROOT / "splits" / "cross_source_duplicates.csv"
FRACTIONS = (0.6, 0.1, 0.3)
EVALUATED_ROLES = {"evaluated", "utkface-val", "utkface-test", "fairface-val-val", "fairface-val-test"}


# The FairFace sample is cropped with padding 1.25 around the face, FairFace val with 0.25: the sample's central
# 1.5 / 3.5 is the region a val image shows, so that is what its hashes are taken from.
SAMPLE_FACE_REGION = (1 + 2 * 0.25) / (1 + 2 * 1.25)


def _hashes_of_region(path: str, share: float) -> tuple[str, str]:
    """dHash and centre thumbnail (hex, as `core.dedup.scan_images`) of the image's central `share`."""
    with Image.open(path) as image:
        width, height = image.size
        margin_x, margin_y = width * (1 - share) / 2, height * (1 - share) / 2
        region = image.convert("RGB").crop((margin_x, margin_y, width - margin_x, height - margin_y))
        return dhash(region).hex(), centre_thumbnail(region).hex()


def scanned_sources(settings: Settings) -> pd.DataFrame:
    """Every image of the four sources, scanned, with `source` and (UTKFace) its split in `role`."""
    utkface = read_utkface(settings.dataset_dir("utkface", "UTKFace"))
    roles = read_split(SPLIT_FILE).set_index("file")["split"]
    parts = [(utkface, lambda t: "utkface-" + t["file"].map(roles).fillna("unsplit")),
             (load_named_dataset("fairface-val", settings), lambda t: "fairface-val"),
             (load_named_dataset("fairface-sample", settings), lambda t: "evaluated"),
             (read_london_set(settings.dataset_dir("london_set")), lambda t: "evaluated")]
    tables = []
    for dataset, role in parts:
        table = scan_images(dataset, progress=lambda it, n=len(dataset.table), name=dataset.name: tqdm(
            it, total=n, desc=f"scanning {name}", unit="img")).table
        if dataset.name == "fairface-sample":
            regions = [_hashes_of_region(path, SAMPLE_FACE_REGION) for path in table["path"]]
            table = table.assign(dhash=[r[0] for r in regions], centre=[r[1] for r in regions])
        tables.append(table.assign(role=role(table), source=dataset.name))
    return pd.concat(tables, ignore_index=True)


def men_with_evaluated_twins(table: pd.DataFrame, split: pd.DataFrame, men_dir: str) -> pd.DataFrame:
    """FairFace's train photos of men in `men_dir` that are (near) duplicates of an evaluated image.

    Args:
        table: `scanned_sources`' table.
        split: The FairFace val split (`file`, `split`), which decides which of its images are evaluated.
        men_dir: The folder with `fairface_label_train.csv` and `train/`.
    """
    men = read_fairface(Path(men_dir) / "fairface_label_train.csv", name="fairface-train-men")
    men = scan_images(men, progress=lambda it: tqdm(it, total=len(men.table), desc="scanning FairFace men",
                                                      unit="img")).table
    fairface_roles = "fairface-val-" + table["file"].map(split.set_index("file")["split"])
    roles = table["role"].where(table["source"] != "fairface-val", fairface_roles)
    everything = pd.concat([table.assign(role=roles), men.assign(role="men", source="fairface-train-men")], ignore_index=True)
    everything["group"] = find_duplicate_groups(everything)["group"].to_numpy()
    evaluated = everything.loc[everything["role"].isin(EVALUATED_ROLES), "group"]
    twins = everything[everything["group"].isin(set(evaluated))]
    twins = twins[twins["group"].isin(set(twins.loc[twins["role"] == "men", "group"]))]
    return twins.sort_values(["group", "source", "file"])[["group", "source", "file", "role", "race", "age_bin"]]


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fairface-men", metavar="DIR",
                        help="also list FairFace's train photos of men (this folder) that have an evaluated twin")
    add_settings_arguments(parser, "data")
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    table = scanned_sources(settings)
    groups = find_duplicate_groups(table)
    table = table.assign(group=groups["group"].to_numpy())
    sources_per_group = table.groupby("group")["source"].nunique()
    crossing = table[table["group"].map(sources_per_group) > 1].sort_values(["group", "source", "file"])
    crossing[["group", "source", "file", "role", "gender", "race", "age_bin"]].to_csv(CROSS_SOURCE, index=False)
    pairs = crossing.groupby("group")["source"].apply(lambda s: " + ".join(sorted(set(s)))).value_counts()
    print(f"{len(table):,} images scanned; {crossing['group'].nunique()} duplicate groups span sources "
          f"({len(crossing)} images, {CROSS_SOURCE.name}):")
    for sources, count in pairs.items():
        print(f"  {sources}: {count} groups")

    fairface = table[table["source"] == "fairface-val"].reset_index(drop=True)
    roles = {group: set(values) for group, values in table.groupby("group")["role"]}
    evaluated = {g for g, r in roles.items() if r & {"evaluated", "utkface-val", "utkface-test"}}
    trained = {g for g, r in roles.items() if "utkface-train" in r}
    both = evaluated & trained
    split = make_split(fairface.assign(race=fairface["fairface_race"]), fairface["group"], seed=args.seed,
                       fractions=FRACTIONS)
    split.loc[fairface["group"].isin(evaluated - both).to_numpy(), "split"] = "test"
    split.loc[fairface["group"].isin(trained - both).to_numpy(), "split"] = "train"
    write_split(split, FAIRFACE_SPLIT)
    counts = split["split"].value_counts()
    print(f"wrote {FAIRFACE_SPLIT.name}: " + ", ".join(f"{name} {counts.get(name, 0):,}" for name in ("train", "val", "test"))
          + f"; moved to test (twin evaluated elsewhere): {int(fairface['group'].isin(evaluated - both).sum())}, to train "
          f"(twin in UTKFace train): {int(fairface['group'].isin(trained - both).sum())}; twins both trained on and "
          f"evaluated elsewhere: {int(fairface['group'].isin(both).sum())}")
    if args.fairface_men:
        twins = men_with_evaluated_twins(table, split, args.fairface_men)
        twins.to_csv(FAIRFACE_MEN_EXCLUDED, index=False)
        men = twins[twins["role"] == "men"]
        print(f"wrote {FAIRFACE_MEN_EXCLUDED.name}: {len(men)} of FairFace's train photos of men have an evaluated twin "
              f"({twins['group'].nunique()} groups; " + ", ".join(
                  f"{role} {n}" for role, n in twins.loc[twins["role"] != "men", "role"].value_counts().items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
