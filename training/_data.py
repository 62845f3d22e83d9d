"""Training data: UTKFace and FairFace split tables and their cached aligned chips (training, baseline, benchmarks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from core.chips import ChipBatch, chips_from_photos, chips_from_utkface
from core.config import FAIRFACE_SPLIT_FILE, REPO_ROOT, Settings
from core.datasets import read_fairface, read_utkface
from core.split import read_split

CACHE_DIR = REPO_ROOT / "artifacts" / "chips"


def split_tables(settings: Settings, split_file: Path) -> dict[str, pd.DataFrame]:
    """UTKFace rows per split name (`train`, `val`, `test`), from the split file."""
    dataset = read_utkface(settings.dataset_dir("utkface", "UTKFace"))
    split = read_split(split_file).set_index("file")["split"]
    table = dataset.table.assign(split=dataset.table["file"].map(split))
    if table["split"].isna().any():
        raise SystemExit(f"{int(table['split'].isna().sum())} images have no split; run python -m training.data --write-split")
    return {name: part.reset_index(drop=True) for name, part in table.groupby("split", sort=False)}


def fairface_tables(settings: Settings, split_file: Path = FAIRFACE_SPLIT_FILE) -> dict[str, pd.DataFrame]:
    """FairFace val rows per part of `splits/fairface.csv` (`train`, `val`, `test`); `fairface_race` has seven classes."""
    dataset = read_fairface(settings.dataset_dir("fairface", "fairface_label_val.csv"))
    split = read_split(split_file).set_index("file")["split"]
    table = dataset.table.assign(split=dataset.table["file"].map(split))
    if table["split"].isna().any():
        raise SystemExit(f"{int(table['split'].isna().sum())} FairFace images have no part in {split_file}; "
                         "run python -m training.fairface_split")
    return {name: part.reset_index(drop=True) for name, part in table.groupby("split", sort=False)}


def _cached(kind: str, paths: list[str], size: int, cache_dir: Path, align) -> tuple[np.ndarray, list[str]]:
    """`align(paths)`'s chips and errors, kept in `cache_dir` under a key of the kind, size and paths."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    names = [Path(path).name if kind == "utkface" else "/".join(Path(path).parts[-2:]) for path in paths]
    key = f"{kind}-{size}-central-{len(names)}-{hashlib.sha1(chr(10).join(names).encode()).hexdigest()[:10]}"
    cache, listing = cache_dir / f"{key}.npy", cache_dir / f"{key}.txt"
    if cache.is_file() and listing.is_file():
        rows = [line.split("\t") for line in listing.read_text().splitlines()]
        if [row[0] for row in rows] == names:
            return np.load(cache), [row[1] if len(row) > 1 else "" for row in rows]
    batch: ChipBatch = align(paths, size=size,
                             progress=lambda it: tqdm(it, total=len(paths), desc=f"aligning {kind} chips", unit="img"))
    np.save(cache, batch.chips)
    listing.write_text("\n".join(f"{name}\t{error}" for name, error in zip(names, batch.errors)))
    return batch.chips, batch.errors


def load_chips(folder: Path, files: list[str], size: int, cache_dir: Path = CACHE_DIR) -> torch.Tensor:
    """Aligned uint8 chips `(n, size, size, 3)` for UTKFace `files` (a chip with no face found is used as cropped)."""
    chips, _ = _cached("utkface", [str(folder / file) for file in files], size, cache_dir, chips_from_utkface)
    return torch.from_numpy(chips)


def load_photo_chips(table: pd.DataFrame, size: int, cache_dir: Path = CACHE_DIR) -> tuple[pd.DataFrame, torch.Tensor]:
    """The rows of `table` (photos, e.g. FairFace) where a face was found, and their aligned chips.

    Photos are detected, the centre face chosen and aligned as in an audit; how many had no face is printed.
    """
    chips, errors = _cached("photos", table["path"].tolist(), size, cache_dir, chips_from_photos)
    ok = np.array([error == "" for error in errors])
    if not ok.all():
        print(f"{int((~ok).sum())} of {len(table)} photos left out of training: {sorted(set(errors) - {''})}")
    return table.loc[ok].reset_index(drop=True), torch.from_numpy(chips[ok])
