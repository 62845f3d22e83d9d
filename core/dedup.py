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

Beyond a few thousand images, pairs are not all compared: a hash index (217 tables, each bucketing the
hashes by 32 of their 256 bits drawn at random, seeded) proposes the pairs that share a bucket, and
only those are tested. A pair 20 bits apart is missed by every table with probability below 1e-6, one
10 bits apart below 1e-27; on UTKFace and on 80,105 distinct UTKFace + FairFace images the groups equal
those of comparing every pair (`benchmarks/duplicate_scaling.py`).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from core.datasets import REJECT_COLUMNS, Dataset

__all__ = [
    "DHASH_BITS",
    "HASH_COLUMNS",
    "NEAR_DUPLICATE_CORRELATION",
    "NEAR_DUPLICATE_DISTANCE",
    "centre_correlation",
    "centre_thumbnail",
    "dhash",
    "every_near_pair",
    "find_duplicate_groups",
    "image_hashes",
    "near_duplicate_components",
    "packed_hashes",
    "scan_images",
    "with_duplicate_groups",
]

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
# The hash index (see the module doc and `_key_plan`): a pair at the threshold shares a table's bucket with
# probability >= _KEY_AGREEMENT, and all tables together miss it with probability <= _MISSED_PAIR.
_KEY_AGREEMENT = 0.06
_MISSED_PAIR = 1e-6
_INDEX_FROM = 5_000  # fewer distinct images: every pair is compared (faster there)


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


class _Components:
    """Connected components of `size` items, joined a batch of edges at a time (vectorized union-find).

    `label[i]` is the smallest item of `i`'s component once `join` returns.
    """

    def __init__(self, size: int) -> None:
        self.label = np.arange(size)

    def join(self, pairs: np.ndarray) -> None:
        """Merge the components of each pair `(k, 2)`."""
        first, second = pairs[:, 0], pairs[:, 1]
        while len(first):
            low, high = self.label[first], self.label[second]
            apart = low != high
            first, second, low, high = first[apart], second[apart], low[apart], high[apart]
            low, high = np.minimum(low, high), np.maximum(low, high)
            np.minimum.at(self.label, high, low)  # hook each root under the smaller root it meets
            while not np.array_equal(jumped := self.label[self.label], self.label):
                self.label = jumped


def _key_plan(max_distance: int) -> tuple[int, int]:
    """(bits per key, tables) of the hash index: the most bits (at most 64) on which a pair `max_distance` apart
    still agrees with probability >= `_KEY_AGREEMENT`, and enough tables to miss such a pair with probability
    <= `_MISSED_PAIR`."""
    def agreement(bits: int) -> float:
        return math.prod((DHASH_BITS - max_distance - k) / (DHASH_BITS - k) for k in range(bits))

    bits = max([b for b in range(1, 65) if agreement(b) >= _KEY_AGREEMENT], default=1)
    p = agreement(bits)
    tables = 1 if p >= 1 else math.ceil(math.log(_MISSED_PAIR) / math.log1p(-p))
    return bits, tables


def _bucket_keys(bits: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """One uint64 key per row: the row's hash bits at positions `chosen` (`bits` is `(256, n)` of 0/1)."""
    keys = np.zeros(bits.shape[1], dtype=np.uint64)
    for shift, position in enumerate(chosen):
        keys |= bits[position].astype(np.uint64) << np.uint64(shift)
    return keys


def _join_near_pairs(keys: np.ndarray, components: _Components, is_near: Callable[[np.ndarray], np.ndarray]) -> None:
    """Join the rows that share a key and pass `is_near`, skipping pairs already in one component.

    Rows of one bucket are compared at offsets 1, 2, 3-4, 5-8, ... in key order; a bucket whose rows have all been
    joined is dropped, so a bucket of thousands of near-identical photos costs a pass or two, not millions of pairs.
    """
    order = np.argsort(keys)
    ordered = keys[order]
    new_bucket = np.empty(len(keys), dtype=bool)
    new_bucket[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new_bucket[1:])
    sizes = np.diff(np.append(np.flatnonzero(new_bucket), len(keys)))
    rows, offset, window = order, 1, 1  # rows of the buckets still open, bucket after bucket
    while len(sizes):
        starts = np.cumsum(sizes) - sizes
        labels = components.label[rows]
        open_ = (sizes > offset) & (np.minimum.reduceat(labels, starts) != np.maximum.reduceat(labels, starts))
        rows, sizes = rows[np.repeat(open_, sizes)], sizes[open_]
        if not len(sizes):
            return
        pairs = np.concatenate([_pairs_at_offset(rows, sizes, k) for k in range(offset, offset + window)])
        pairs = pairs[components.label[pairs[:, 0]] != components.label[pairs[:, 1]]]
        components.join(pairs[is_near(pairs)])
        offset, window = offset + window, window * 2


def _pairs_at_offset(rows: np.ndarray, sizes: np.ndarray, offset: int) -> np.ndarray:
    """Pairs `(rows[k], rows[k + offset])` inside each bucket (`rows` holds buckets of `sizes`, one after another)."""
    starts = np.cumsum(sizes) - sizes
    lengths = np.maximum(sizes - offset, 0)
    first = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    return np.stack([rows[first], rows[first + offset]], axis=1)


def packed_hashes(hex_hashes: Iterable[str]) -> np.ndarray:
    """The `dhash` column's hex texts as one `(n, 32)` uint8 array of packed bits."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_hashes), dtype=np.uint8).reshape(-1, DHASH_BITS // 8)


def every_near_pair(hashes: np.ndarray, max_distance: int, chunk: int = 256) -> np.ndarray:
    """Index pairs `(k, 2)`, i < j, whose packed hashes differ in at most `max_distance` bits, by comparing every
    pair (quadratic: 23,314 hashes in about 5 s here). The reference the hash index is tested against."""
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


def centre_correlation(centres: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Correlation of the z-scored centre thumbnails (hex, see `centre_thumbnail`) of each pair `(k, 2)`."""
    if not len(pairs):
        return np.zeros(0)
    rows, inverse = np.unique(pairs, return_inverse=True)
    thumbs = np.frombuffer(b"".join(bytes.fromhex(centres[row]) for row in rows), dtype=np.uint8)
    thumbs = thumbs.reshape(len(rows), -1).astype(np.float64)
    thumbs = (thumbs - thumbs.mean(axis=1, keepdims=True)) / (thumbs.std(axis=1, keepdims=True) + 1e-6)
    inverse = inverse.reshape(pairs.shape)
    return np.concatenate([(thumbs[block[:, 0]] * thumbs[block[:, 1]]).mean(axis=1)
                           for block in np.array_split(inverse, -(-len(inverse) // 4096))])  # 64 MB at a time


def near_duplicate_components(hashes: np.ndarray, centres: np.ndarray, *, max_distance: int,
                              min_centre_correlation: float, index_from: int = _INDEX_FROM) -> np.ndarray:
    """Component label of each row (the smallest row it is joined to) under the near-duplicate rule.

    Args:
        hashes: `(n, 32)` uint8, packed difference hashes.
        centres: `n` centre thumbnails as hex (see `centre_thumbnail`).
        max_distance, min_centre_correlation: As in `find_duplicate_groups`.
        index_from: From this many rows on, only pairs sharing a bucket of the hash index are compared (see
            `_key_plan`); below it every pair is, which is faster there.
    """
    words = np.ascontiguousarray(hashes).view(np.uint64)

    def is_near(pairs: np.ndarray) -> np.ndarray:
        distance = sum(np.bitwise_count(words[pairs[:, 0], k] ^ words[pairs[:, 1], k]) for k in range(words.shape[1]))
        near = distance <= max_distance
        near[near] = centre_correlation(centres, pairs[near]) >= min_centre_correlation
        return near

    components = _Components(len(hashes))
    if len(hashes) < index_from:
        pairs = every_near_pair(hashes, max_distance)
        components.join(pairs[is_near(pairs)])
        return components.label
    bits = np.ascontiguousarray(np.unpackbits(hashes, axis=1).T)  # (256, n)
    key_bits, tables = _key_plan(max_distance)
    rng = np.random.default_rng(0)
    for _ in range(tables):
        chosen = np.sort(rng.choice(DHASH_BITS, size=key_bits, replace=False))
        _join_near_pairs(_bucket_keys(bits, chosen), components, is_near)
    return components.label


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
    # Exact copies share hash and centre: only one row per distinct content is compared.
    content, _ = pd.factorize(table["sha1"])
    distinct = np.flatnonzero(~table["sha1"].duplicated().to_numpy())  # row of content 0, 1, ...
    labels = near_duplicate_components(packed_hashes(table["dhash"].to_numpy()[distinct]),
                                       table["centre"].to_numpy()[distinct], max_distance=max_distance,
                                       min_centre_correlation=min_centre_correlation)
    roots = labels[content]
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


def _scan_face(path: str, box: Sequence[float]) -> tuple[str, str, str] | str:
    """`_scan_one` of the labelled face at `box` (x, y, w, h in the photo as shown): the faces of one crowd photo
    are not duplicates of each other, and one face in two photos is."""
    try:
        with Image.open(path) as image:
            x, y, w, h = box
            face = ImageOps.exif_transpose(image).convert("L").crop((round(x), round(y), round(x + w), round(y + h)))
            fingerprint, centre = dhash(face), centre_thumbnail(face)
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt data
        return f"unreadable image ({type(error).__name__}: {error})"
    return hashlib.sha1(face.tobytes()).hexdigest(), fingerprint.hex(), centre.hex()


def image_hashes(paths: Sequence[str], *, workers: int = 2,
                 boxes: Sequence[Sequence[float] | None] | None = None) -> pd.DataFrame:
    """`HASH_COLUMNS` of each image, in order ("" where the file cannot be read): what duplicate grouping needs;
    of its labelled face where `boxes` gives one."""
    def scan(item: tuple[str, Sequence[float] | None]) -> tuple | str:
        return _scan_one(item[0]) if item[1] is None else _scan_face(*item)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(scan, list(zip(paths, boxes or [None] * len(paths), strict=True)), chunksize=64))
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
