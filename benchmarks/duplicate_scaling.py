"""Duplicate grouping at scale: the hash index against comparing every pair (`core.dedup`).

    python -m benchmarks.duplicate_scaling [--data DIR] [--fairface-men DIR] [--rows 1000000] [--rounds 3]

Real images: the distinct images of UTKFace and FairFace's validation split (and with `--fairface-men`, the folder
`../shared/data/extra/prepare_fairface_train.py` wrote, FairFace's train photos of men), scanned once (not timed).
For 10,000, 20,000, 40,000 and all of them (seeded random subsets) it times grouping with the index and by
comparing every pair, and says whether the groups are the same.

At scale: `--rows` rows made from the real ones: every real hash, look-alike faces (a real hash with a random
quarter of its bits flipped, its centre thumbnail kept: about as far from each other as distinct real faces are),
and a burst of 8,000 frames of one scene (one bit flipped each, centre thumbnail with +-3 noise), the video case.
Only the index is timed there; comparing every pair is extrapolated from the largest real run (it grows with the
square of the rows). Times are medians of `--rounds` runs; also prints the process's peak memory.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Settings, add_settings_arguments
from core.datasets import read_fairface, read_utkface
from core.dedup import (
    DHASH_BITS,
    NEAR_DUPLICATE_CORRELATION,
    NEAR_DUPLICATE_DISTANCE,
    near_duplicate_components,
    packed_hashes,
    scan_images,
)

SIZES = (10_000, 20_000, 40_000)
BURST = 8_000


def _median_seconds(rounds: int, *args, **kwargs) -> tuple[float, np.ndarray]:
    """Median seconds of `rounds` calls of `near_duplicate_components(*args, **kwargs)`, and its result."""
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = near_duplicate_components(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _real_images(settings: Settings, fairface_men: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Packed hashes and centre thumbnails of the distinct real images."""
    datasets = [read_utkface(settings.dataset_dir("utkface", "UTKFace")),
                read_fairface(settings.dataset_dir("fairface", "fairface_label_val.csv"))]
    if fairface_men:
        datasets.append(read_fairface(Path(fairface_men) / "fairface_label_train.csv", name="fairface-train-men"))
    table = pd.concat([scan_images(dataset).table for dataset in datasets], ignore_index=True).drop_duplicates("sha1")
    return packed_hashes(table["dhash"]), table["centre"].to_numpy()


def _at_scale(hashes: np.ndarray, centres: np.ndarray, rows: int, rng: np.random.Generator):
    """`rows` hashes and centres: the real ones, look-alikes of them and a burst of one scene (see the module doc)."""
    look_alikes = rows - len(hashes) - BURST
    origin = rng.integers(0, len(hashes), look_alikes)
    flipped = hashes[origin] ^ np.packbits(rng.random((look_alikes, DHASH_BITS)) < 0.25, axis=1)
    frames = np.zeros((BURST, DHASH_BITS), dtype=bool)
    frames[np.arange(BURST), rng.integers(0, DHASH_BITS, BURST)] = True
    scene = np.frombuffer(bytes.fromhex(centres[0]), dtype=np.uint8).astype(np.int16)
    frame_centres = [(scene + rng.integers(-3, 4, scene.size)).clip(0, 255).astype(np.uint8).tobytes().hex()
                     for _ in range(BURST)]
    return (np.concatenate([hashes, flipped, hashes[:1] ^ np.packbits(frames, axis=1)]),
            np.concatenate([centres, centres[origin], np.array(frame_centres, dtype=object)]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser, "data")
    parser.add_argument("--fairface-men", metavar="DIR", help="also FairFace's train photos of men (this folder)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the run at scale (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure; medians are printed (default 3)")
    args = parser.parse_args(argv)
    hashes, centres = _real_images(Settings.from_args(args), args.fairface_men)
    rule = {"max_distance": NEAR_DUPLICATE_DISTANCE, "min_centre_correlation": NEAR_DUPLICATE_CORRELATION}
    rng = np.random.default_rng(0)
    order = rng.permutation(len(hashes))
    print(f"{platform.processor() or platform.machine()}, {len(hashes):,} distinct real images; medians of "
          f"{args.rounds} runs")
    lines = []
    for size in [size for size in SIZES if size < len(hashes)] + [len(hashes)]:
        subset = np.sort(order[:size])
        part, part_centres = hashes[subset], centres[subset]
        indexed_s, indexed = _median_seconds(args.rounds, part, part_centres, **rule)
        every_s, every = _median_seconds(args.rounds, part, part_centres, index_from=size + 1, **rule)
        lines.append({"images": f"{size:,} real", "index s": round(indexed_s, 2), "every pair s": round(every_s, 1),
                      "joined rows": int((indexed != np.arange(size)).sum()),
                      "same groups": bool(np.array_equal(indexed, every))})
        print(lines[-1], flush=True)
    big_hashes, big_centres = _at_scale(hashes, centres, args.rows, rng)
    indexed_s, indexed = _median_seconds(args.rounds, big_hashes, big_centres, **rule)
    projected = every_s * (args.rows / len(hashes)) ** 2
    lines.append({"images": f"{args.rows:,} (real + look-alikes + a burst of {BURST:,})",
                  "index s": round(indexed_s, 2), "every pair s": f"~{projected:,.0f} (extrapolated)",
                  "joined rows": int((indexed != np.arange(args.rows)).sum()),
                  "same groups": f"burst in one group: {bool((indexed[-BURST:] == 0).all())}"})
    print()
    print(pd.DataFrame(lines).to_string(index=False))
    print(f"\npeak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
