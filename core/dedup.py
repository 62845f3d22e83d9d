"""Image scan, exact and near-duplicate groups, and label conflicts inside groups.

`scan_images` decodes every image once: unreadable ones become rejects, readable ones get a
content hash (SHA-1 of the bytes), a perceptual hash (a 256-bit difference hash of a 17 x 16
grayscale thumbnail) and a 32 x 32 grayscale thumbnail of the image's central half (the face).
`find_duplicate_groups` joins rows that share a content hash, or whose perceptual hashes differ in
at most `max_distance` bits *and* whose centre thumbnails correlate at `min_centre_correlation` or more.

The second test is what keeps different people apart: on studio portraits (uniform background,
same framing) the whole-image hash of two different people can be 13 bits apart, and a chain of such
pairs once put 208 people into one group (37 of the London set's 102). Measured on the London set,
different people's centre thumbnails correlate at most 0.942; on UTKFace, 99 % of the hash-near pairs
(re-encoded, re-cropped or retouched copies of one photo) correlate at 0.953 or more.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.datasets import REJECT_COLUMNS, Dataset

__all__ = ["DHASH_BITS", "NEAR_DUPLICATE_DISTANCE", "NEAR_DUPLICATE_CORRELATION", "dhash", "centre_thumbnail",
           "scan_images", "find_duplicate_groups", "with_duplicate_groups", "image_hashes", "HASH_COLUMNS"]

_HASH_SIDE = 16
DHASH_BITS = _HASH_SIDE * _HASH_SIDE
# Largest Hamming distance (of 256 bits) still called a near-duplicate. On UTKFace the distance to
# each image's nearest neighbour is bimodal: re-encoded / re-cropped copies at 0-16 bits, distinct
# faces around 46; 20 sits in the valley between (12-13 images per bit there). Merging two distinct
# faces only coarsens a split group, while missing a copy would leak it across splits.
NEAR_DUPLICATE_DISTANCE = 20
# Smallest correlation of the two centre thumbnails (z-scored grayscale) still called the same photo.
NEAR_DUPLICATE_CORRELATION = 0.95
_CENTRE_SIDE = 32


def dhash(image: Image.Image) -> bytes:
    """Return the 256-bit difference hash of `image` as 32 bytes."""
    gray = image.convert("L").resize((_HASH_SIDE + 1, _HASH_SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(gray, dtype=np.int16)  # (16, 17)
    return np.packbits(pixels[:, 1:] > pixels[:, :-1]).tobytes()


def centre_thumbnail(image: Image.Image) -> bytes:
    """The central half of `image` as a 32 x 32 grayscale thumbnail (1,024 bytes): where a face chip's face is."""
    gray = image.convert("L")
    width, height = gray.size
    centre = gray.crop((width // 4, height // 4, width - width // 4, height - height // 4))
    return np.asarray(centre.resize((_CENTRE_SIDE, _CENTRE_SIDE), Image.Resampling.BILINEAR), dtype=np.uint8).tobytes()


def _scan_one(path: str) -> tuple[str, str, str, int, int] | str:
    """Return (sha1, dhash hex, centre thumbnail hex, width, height), or the reason the file is unusable."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"unreadable file ({error.strerror or error})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.draft("L", (64, 64))
            image.load()
            fingerprint, centre = dhash(image), centre_thumbnail(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt data
        return f"unreadable image ({type(error).__name__}: {error})"
    return hashlib.sha1(data).hexdigest(), fingerprint.hex(), centre.hex(), width, height


def scan_images(dataset: Dataset, *, workers: int = 2,
                progress: Callable[[Iterable], Iterable] | None = None) -> Dataset:
    """Decode every image of `dataset` once; return it with hash columns and unreadable rows rejected.

    Adds columns `sha1`, `dhash`, `centre` (see `centre_thumbnail`, hex), `width`, `height`. Rows whose
    image cannot be read move to `rejects` with the reason.

    Args:
        dataset: As returned by a reader in `core.datasets`.
        workers: Threads decoding in parallel (Pillow releases the GIL while decoding).
        progress: Optional wrapper such as `tqdm` around the result iterator.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_scan_one, dataset.table["path"].tolist(), chunksize=64)
        results = list(progress(results) if progress else results)
    ok = np.array([not isinstance(result, str) for result in results], dtype=bool)
    table = dataset.table.loc[ok].reset_index(drop=True)
    good = [result for result in results if not isinstance(result, str)]
    table["sha1"] = [result[0] for result in good]
    table["dhash"] = [result[1] for result in good]
    table["centre"] = [result[2] for result in good]
    table["width"] = [result[3] for result in good]
    table["height"] = [result[4] for result in good]
    bad = dataset.table.loc[~ok, ["file", "path", "source"]].copy()
    bad["reason"] = [result for result in results if isinstance(result, str)]
    rejects = pd.concat([dataset.rejects, bad[list(REJECT_COLUMNS)]], ignore_index=True)
    return Dataset(name=dataset.name, table=table, rejects=rejects, notes=dataset.notes, root=dataset.root)


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = np.arange(size)

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def _near_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 256) -> np.ndarray:
    """Index pairs `(k, 2)`, i < j, whose packed hashes differ in at most `max_distance` bits (every pair compared,
    a chunk of rows at a time: 23,314 distinct UTKFace hashes in about 5 s here)."""
    words = np.ascontiguousarray(hashes).view(np.uint64)  # (n, 4)
    pairs = []
    for start in range(0, len(words), chunk):
        block = words[start : start + chunk]  # (c, 4)
        distance = np.zeros((len(block), len(words)), dtype=np.uint16)  # (c, n)
        for k in range(words.shape[1]):
            distance += np.bitwise_count(block[:, None, k] ^ words[None, :, k])
        rows, cols = np.nonzero(distance <= max_distance)
        rows += start
        pairs.append(np.stack([rows, cols], axis=1)[rows < cols])
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def _centre_correlation(table: pd.DataFrame, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Correlation of the z-scored centre thumbnails of each pair of rows."""
    if not pairs:
        return np.zeros(0)
    rows = sorted({index for pair in pairs for index in pair})
    position = {row: k for k, row in enumerate(rows)}
    thumbs = np.stack([np.frombuffer(bytes.fromhex(table["centre"].iat[row]), dtype=np.uint8) for row in rows])
    thumbs = thumbs.astype(np.float64)
    thumbs = (thumbs - thumbs.mean(axis=1, keepdims=True)) / (thumbs.std(axis=1, keepdims=True) + 1e-6)
    first = thumbs[[position[i] for i, _ in pairs]]
    second = thumbs[[position[j] for _, j in pairs]]
    return (first * second).mean(axis=1)


def find_duplicate_groups(table: pd.DataFrame, *, max_distance: int = NEAR_DUPLICATE_DISTANCE,
                          min_centre_correlation: float = NEAR_DUPLICATE_CORRELATION) -> pd.DataFrame:
    """Group rows that are exact or near duplicates; flag groups whose labels disagree.

    Args:
        table: A scanned table (`sha1`, `dhash`, `centre` and label columns).
        max_distance: Near-duplicate threshold in bits of the 256-bit difference hash.
        min_centre_correlation: A near pair must also have centre thumbnails this correlated (see the module doc).

    Returns:
        One row per input row, same order: `group` (int, shared by all members, singletons
        included), `group_size`, `exact_duplicate` (another row has the same bytes),
        `label_conflict` (members disagree on age, gender or race) and `conflict` (which labels).
    """
    n = len(table)
    union = _UnionFind(n)
    representatives = []  # one row per distinct content: exact copies share hash and centre, so only these are compared
    for _, members in table.groupby("sha1", sort=False).indices.items():
        representatives.append(members[0])
        for other in members[1:]:
            union.union(members[0], other)
    representatives = np.sort(np.asarray(representatives, dtype=np.int64))
    hashes = np.frombuffer(b"".join(bytes.fromhex(h) for h in table["dhash"].iloc[representatives]),
                           dtype=np.uint8).reshape(len(representatives), -1)
    candidates = [tuple(pair) for pair in representatives[_near_pairs(hashes, max_distance)].tolist()]
    correlation = _centre_correlation(table, candidates)
    for (i, j), same_photo in zip(candidates, correlation >= min_centre_correlation):
        if same_photo:
            union.union(i, j)
    roots = np.array([union.find(i) for i in range(n)])
    # Number groups by their first row in the table's order, so ids are stable for a stable table.
    _, first_index, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    result = pd.DataFrame({"group": order[inverse]}, index=table.index)
    result["group_size"] = result.groupby("group")["group"].transform("size")
    result["exact_duplicate"] = table["sha1"].duplicated(keep=False).to_numpy()
    conflicts = pd.Series("", index=table.index, dtype="string")
    multi = result["group_size"] > 1
    if multi.any():
        members = table.loc[multi, ["age", "gender", "race"]].astype("string").assign(group=result.loc[multi, "group"])
        differing = members.groupby("group").nunique(dropna=False) > 1  # (groups, 3)
        text = differing.apply(lambda row: ",".join(row.index[row]), axis=1)
        conflicts.loc[multi] = result.loc[multi, "group"].map(text).to_numpy()
    result["conflict"] = conflicts
    result["label_conflict"] = conflicts.str.len() > 0
    return result


HASH_COLUMNS = ("sha1", "dhash", "centre")


def image_hashes(paths: Sequence[str], *, workers: int = 2) -> pd.DataFrame:
    """`HASH_COLUMNS` of each image, in order ("" where the file cannot be read): what duplicate grouping needs."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_scan_one, list(paths), chunksize=64))
    return pd.DataFrame([("", "", "") if isinstance(result, str) else result[:3] for result in results],
                        columns=list(HASH_COLUMNS), dtype=str)


def with_duplicate_groups(frame: pd.DataFrame, hashes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add `dup_group`, `dup_group_size`, `label_conflict` to audited rows (images that cannot be read: missing).

    `hashes`, one row per row of `frame` (`image_hashes`), saves reading the images again.
    """
    if frame.empty:
        return frame.assign(dup_group=pd.Series(dtype="int64"), dup_group_size=pd.Series(dtype="int64"),
                            label_conflict=pd.Series(dtype=bool))
    hashes = image_hashes(frame["path"].tolist()) if hashes is None else hashes
    readable = hashes["sha1"].to_numpy() != ""
    hashed = frame.loc[readable].assign(**{column: hashes.loc[readable, column].to_numpy() for column in HASH_COLUMNS})
    groups = find_duplicate_groups(hashed).reindex(frame.index)
    return frame.assign(dup_group=groups["group"].to_numpy(), dup_group_size=groups["group_size"].to_numpy(),
                        label_conflict=groups["label_conflict"].to_numpy())
