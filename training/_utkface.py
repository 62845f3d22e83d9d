"""UTKFace split tables and cached aligned chips, shared by the training, baseline and benchmark jobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from core.chips import chips_from_utkface
from core.config import REPO_ROOT, Settings
from core.datasets import read_utkface
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


def load_chips(folder: Path, files: list[str], size: int, cache_dir: Path = CACHE_DIR) -> torch.Tensor:
    """Aligned uint8 chips `(n, size, size, 3)` for UTKFace `files`, cached in `cache_dir` between runs."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = f"utkface-{size}-central-{len(files)}-{hashlib.sha1(chr(10).join(files).encode()).hexdigest()[:10]}"
    cache = cache_dir / f"{key}.npy"
    if cache.is_file() and (cache_dir / f"{key}.txt").read_text().splitlines() == files:
        return torch.from_numpy(np.load(cache))
    batch = chips_from_utkface([str(folder / f) for f in files], size=size,
                               progress=lambda it: tqdm(it, total=len(files), desc="aligning chips", unit="img"))
    print(f"aligned {int((batch.n_faces > 0).sum())} of {len(files)} chips; the rest used as cropped by UTKFace")
    np.save(cache, batch.chips)
    (cache_dir / f"{key}.txt").write_text("\n".join(files))
    return torch.from_numpy(batch.chips)
