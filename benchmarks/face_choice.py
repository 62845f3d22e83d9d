"""Which face of a multi-face photo is audited: the most central (FaceAudit's rule) or the largest (the old one).

    python -m benchmarks.face_choice [--data DIR] [--limit N] [--sheets DIR]

For the FairFace sample and the FairFace validation split: share of images with several faces and
share where the two rules pick different faces. With --sheets, writes contact sheets of multi-face
images (every detected box; the central choice in yellow, the largest in blue when it differs) to
check by eye which face is the labelled subject, and a CSV listing the images on each sheet.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm import tqdm

from core.config import Settings, add_settings_arguments
from core.datasets import read_fairface
from core.faces import choose_face, thread_detector
from core.images import ImageError, load_image

_TILE, _PER_ROW, _ROWS = 200, 6, 5


def _detect(path: str) -> dict:
    try:
        image = load_image(path)
    except ImageError:
        return {"path": path, "n_faces": -1}
    faces = thread_detector().detect(image)
    height, width = image.shape[:2]
    if not faces:
        return {"path": path, "n_faces": 0}
    central, _ = choose_face(faces, width, height, "center")
    largest, _ = choose_face(faces, width, height, "largest")
    return {"path": path, "n_faces": len(faces), "central": central, "largest": largest,
            "boxes": [face.box for face in faces]}


def _sheets(rows: list[dict], folder: Path, stem: str) -> list[dict]:
    listing = []
    per_sheet = _PER_ROW * _ROWS
    for start in range(0, len(rows), per_sheet):
        sheet = Image.new("RGB", (_PER_ROW * _TILE, _ROWS * _TILE), "white")
        for k, row in enumerate(rows[start:start + per_sheet]):
            image = Image.fromarray(load_image(row["path"]))
            draw = ImageDraw.Draw(image)
            line = max(2, image.width // 90)
            for index, (x, y, w, h) in enumerate(row["boxes"]):
                colour = (255, 196, 0) if index == row["central"] else (59, 91, 219) if index == row["largest"] else (200, 200, 200)
                draw.rectangle((x, y, x + w, y + h), outline=colour, width=line)
            image.thumbnail((_TILE - 4, _TILE - 4))
            sheet.paste(image, ((k % _PER_ROW) * _TILE + 2, (k // _PER_ROW) * _TILE + 2))
            listing.append({"sheet": f"{stem}-{start // per_sheet:02d}.png", "tile": k + 1, "file": Path(row["path"]).name,
                            "rules_differ": row["central"] != row["largest"]})
        sheet.save(folder / f"{stem}-{start // per_sheet:02d}.png")
    return listing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser, "data")
    parser.add_argument("--limit", type=int, default=None, help="images per dataset (default: all)")
    parser.add_argument("--sheets", type=Path, default=None, help="folder for contact sheets of multi-face images")
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    datasets = {"fairface-sample": settings.dataset_dir("fairface_sample", "labels.csv"),
                "fairface-val": settings.dataset_dir("fairface", "fairface_label_val.csv")}
    summary, listing = [], []
    for name, csv in datasets.items():
        paths = read_fairface(csv, name=name).table["path"].tolist()[: args.limit]
        with ThreadPoolExecutor(2) as pool:
            rows = list(tqdm(pool.map(_detect, paths), total=len(paths), desc=name, unit="img"))
        multi = [row for row in rows if row["n_faces"] > 1]
        differ = [row for row in multi if row["central"] != row["largest"]]
        summary.append({"dataset": name, "images": len(rows), "no face": sum(row["n_faces"] == 0 for row in rows),
                        "several faces": len(multi), "several faces %": 100 * len(multi) / len(rows),
                        "rules differ": len(differ), "rules differ %": 100 * len(differ) / len(rows)})
        if args.sheets:
            args.sheets.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(0)  # every image where the rules differ, then a random sample of the rest
            same = [multi[i] for i in rng.permutation(len(multi)) if multi[i]["central"] == multi[i]["largest"]][:60]
            listing += _sheets(differ, args.sheets, f"{name}-differ") + _sheets(same, args.sheets, f"{name}-same")
    print(pd.DataFrame(summary).to_string(index=False, float_format="%.1f"))
    if args.sheets:
        pd.DataFrame(listing).to_csv(args.sheets / "sheets.csv", index=False)
        print(f"contact sheets in {args.sheets}: yellow = most central (audited), blue = largest where it differs")


if __name__ == "__main__":
    main()
