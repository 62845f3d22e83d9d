import io

import numpy as np
from PIL import Image

from core.datasets import read_manifest
from core.dedup import (
    NEAR_DUPLICATE_CORRELATION,
    NEAR_DUPLICATE_DISTANCE,
    find_duplicate_groups,
    near_duplicate_components,
    scan_images,
)
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


def _studio_portrait(seed: int) -> Image.Image:
    """A 'person' in the centre of one background gradient, as in a studio set.

    The person varies only from top to bottom, which leaves every bit of the whole-image difference hash
    (left-right comparisons) as the background sets it: the hash sees the framing, not the person.
    """
    rng = np.random.default_rng(seed)
    pixels = np.tile(np.linspace(0, 255, 200), (200, 1))
    person = np.interp(np.arange(100), np.linspace(0, 99, 6), rng.uniform(-100, 100, 6))
    pixels[50:150, 50:150] += person[:, None]
    return Image.fromarray(np.stack([pixels] * 3, axis=-1).clip(0, 255).astype(np.uint8))


def test_different_people_in_one_framing_are_never_chained_into_a_group(tmp_path):
    rows = []
    for seed in range(6):
        _studio_portrait(seed).save(tmp_path / f"person{seed}.png")
        rows.append(f"person{seed}.png,30,Male,White")
    buffer = io.BytesIO()
    _studio_portrait(0).resize((190, 190)).save(buffer, format="JPEG", quality=75)  # a real copy of person 0
    (tmp_path / "person0_copy.jpg").write_bytes(buffer.getvalue())
    (tmp_path / "m.csv").write_text("path,age,gender,race\n" + "\n".join(rows) + "\nperson0_copy.jpg,30,Male,White\n")
    table = scan_images(read_manifest(tmp_path / "m.csv")).table
    hash_only = find_duplicate_groups(table, min_centre_correlation=-1.0)
    assert hash_only["group_size"].max() == 7  # the whole-image hash alone chains every person into one group
    groups = find_duplicate_groups(table).set_axis(table["file"])
    assert groups.loc["person0.png", "group"] == groups.loc["person0_copy.jpg", "group"]
    assert groups.drop(["person0.png", "person0_copy.jpg"])["group_size"].eq(1).all()


def test_many_exact_copies_are_compared_once_and_keep_their_near_duplicate(tmp_path):
    """2,000 copies of one photo and a re-encoded version: one group of 2,001 (the copies are not compared
    pairwise: 2,000 copies once meant 2 million candidate pairs)."""
    noise_image(1, 200).save(tmp_path / "a.png")
    buffer = io.BytesIO()
    noise_image(1, 200).resize((180, 180)).save(buffer, format="JPEG", quality=70)
    (tmp_path / "a_near.jpg").write_bytes(buffer.getvalue())
    noise_image(2, 200).save(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text("path,age,gender,race\na_near.jpg,30,Male,White\nb.png,30,Male,White\n"
                                    + "a.png,30,Male,White\n" * 2000)
    table = scan_images(read_manifest(tmp_path / "m.csv")).table
    groups = find_duplicate_groups(table)
    assert groups["group_size"].tolist() == [2001, 1] + [2001] * 2000
    assert not groups["exact_duplicate"].iloc[0] and groups["exact_duplicate"].iloc[2:].all()


def _planted_hashes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """4,600 packed hashes and centre thumbnails (hex): look-alike 'faces' (a quarter of their bits flipped from one
    base), copies of some of them 0-24 bits apart with the same or an unrelated centre, and a burst of 600 frames
    of one scene."""
    base = rng.random(256) < 0.5
    faces = base ^ (rng.random((3000, 256)) < 0.25)
    sources = rng.integers(0, 3000, 1000)
    copies = faces[sources].copy()
    for row, distance in enumerate(rng.integers(0, 25, len(copies))):
        copies[row, rng.choice(256, distance, replace=False)] ^= True
    burst = np.repeat(faces[:1], 600, axis=0)
    burst[np.arange(600), rng.integers(0, 256, 600)] ^= True
    centres = rng.integers(0, 256, (3000, 1024))
    copy_centres = np.where(rng.random((1000, 1)) < 0.8, centres[sources] + rng.integers(-8, 9, (1000, 1024)),
                            rng.integers(0, 256, (1000, 1024)))  # a fifth: hash-near, a different face
    burst_centres = centres[:1] + rng.integers(-8, 9, (600, 1024))
    hashes = np.packbits(np.concatenate([faces, copies, burst]), axis=1)
    thumbs = np.concatenate([centres, copy_centres, burst_centres]).clip(0, 255).astype(np.uint8)
    return hashes, np.array([thumb.tobytes().hex() for thumb in thumbs], dtype=object)


def test_hash_index_finds_the_groups_of_comparing_every_pair():
    hashes, centres = _planted_hashes(np.random.default_rng(0))
    rule = {"max_distance": NEAR_DUPLICATE_DISTANCE, "min_centre_correlation": NEAR_DUPLICATE_CORRELATION}
    indexed = near_duplicate_components(hashes, centres, index_from=0, **rule)
    every_pair = near_duplicate_components(hashes, centres, index_from=len(hashes) + 1, **rule)
    assert np.array_equal(indexed, every_pair)
    assert (indexed[4000:] == 0).all()  # the burst joins its scene, frame 0
    joined_copies = (indexed[3000:4000] != np.arange(3000, 4000)).sum()
    assert 500 < joined_copies < 800  # copies within 20 bits with their own centre: about 0.8 * 21/25 of 1,000
