"""Train the multi-task model on the UTKFace train split (and FairFace's); keep the best checkpoint by validation.

    python -m training.train --weights ../shared/weights/tf_efficientnet_lite0.imagenet.safetensors \\
        --out runs/lite0-128 --epochs 10
    python -m training.train --init models/default --fairface --race7 --head-epochs 0 --epochs 4 --out runs/ff

With --fairface the train part of FairFace val (`splits/fairface.csv`, photos detected and aligned as in an
audit) joins the training data and its val part the validation; --race7 gives the model FairFace's seven
races (an --init checkpoint's five-class head is widened so that it starts predicting exactly as before).
--fairface-men DIR adds FairFace's train photos of men for the race and age heads (their gender is masked), less
those with an evaluated twin (`splits/fairface_men_excluded.csv`, from `training.fairface_split --fairface-men`).

Two stages: the heads alone (backbone frozen), then all layers with AdamW and a cosine schedule.
On CUDA it uses bf16 autocast; everywhere channels_last. Each epoch appends a row to
`<out>/log.csv` and saves `<out>/last.pt` (resume with --resume); the best epoch by the
validation score (age MAE / 4.4 + gender error / 0.055 + race error / 0.135 on UTKFace val, plus
with --fairface gender error / 0.08 + race-7 error / 0.30 + age-bin error / 0.45 on FairFace's val part;
each term 1 at the project's targets) is saved as a checkpoint in `<out>/best/`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from core.config import FAIRFACE_MEN_EXCLUDED, FAIRFACE_SPLIT_FILE, SPLIT_FILE, Settings, add_settings_arguments
from core.datasets import read_fairface
from core.model import (
    ModelConfig,
    create_model,
    file_sha256,
    load_checkpoint,
    race7_state,
    resolve_device,
    save_checkpoint,
)
from core.trainer import TrainConfig, group_weights, metrics, predict, targets_from_table, train_epoch
from training._cli import command
from training._data import CACHE_DIR, fairface_tables, load_chips, load_photo_chips, split_tables


def validation_score(values: dict[str, float | None], fairface: dict[str, float | None] | None = None) -> float:
    """Lower is better; each term is 1.0 at the project's minimum targets (UTKFace val, and FairFace's val part)."""
    score = values["age_mae"] / 4.4 + (1 - values["gender_accuracy"]) / 0.055 + (1 - values["race_accuracy"]) / 0.135
    if fairface:
        race = fairface["race7_accuracy"] if fairface["race7_accuracy"] is not None else fairface["race_accuracy"]
        score += (1 - fairface["gender_accuracy"]) / 0.08 + (1 - race) / 0.30 + (1 - fairface["age_bin_accuracy"]) / 0.45
    return score


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io_group = parser.add_argument_group("data and output")
    add_settings_arguments(io_group, "data")
    io_group.add_argument("--out", required=True, help="run folder for log.csv, last.pt and best/")
    io_group.add_argument("--split-file", default=str(SPLIT_FILE), help="split CSV (default: %(default)s)")
    io_group.add_argument("--cache-dir", default=str(CACHE_DIR), help="aligned-chip cache (default: %(default)s)")
    io_group.add_argument("--limit", type=int, default=0, help="use only the first N train and N/4 val images (quick runs)")
    io_group.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    io_group.add_argument("--init", help="start from this checkpoint's weights (a new schedule; use --head-epochs 0)")
    io_group.add_argument("--fairface", action="store_true",
                          help="also train on FairFace val's train part and validate on its val part")
    io_group.add_argument("--fairface-men", metavar="DIR",
                          help="also train race and age (never gender) on FairFace's train photos of men: the folder "
                               "../shared/data/extra/prepare_fairface_train.py wrote")
    io_group.add_argument("--fairface-men-excluded", default=str(FAIRFACE_MEN_EXCLUDED),
                          help="photos of men never trained on: their twin is evaluated (default: %(default)s)")
    io_group.add_argument("--fairface-split-file", default=str(FAIRFACE_SPLIT_FILE),
                          help="FairFace val's parts (default: %(default)s)")
    model_group = parser.add_argument_group("model")
    model_group.add_argument("--backbone", default=ModelConfig.backbone, help="timm model name (default: %(default)s)")
    model_group.add_argument("--input-size", type=int, default=ModelConfig.input_size)
    model_group.add_argument("--race7", action="store_true", help="a race head over FairFace's seven classes")
    model_group.add_argument("--weights", help="local timm-format ImageNet weights (offline machines)")
    model_group.add_argument("--no-pretrained", action="store_true", help="random initialisation (tests)")
    train_group = parser.add_argument_group("training")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "balance":
            train_group.add_argument(flag, choices=["none", "group"], default=field.default)
        else:
            train_group.add_argument(flag, type=type(field.default), default=field.default)
    run_group = parser.add_argument_group("machine")
    add_settings_arguments(run_group, "device", "threads")
    return parser.parse_args(argv)


def _device_name(device: torch.device) -> str:
    """The device as a checkpoint records it: the GPU's name on CUDA, else the CPU and its cores."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, {torch.get_num_threads()} threads"


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings.from_args(args)
    device = resolve_device(settings.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    model_config = ModelConfig(backbone=args.backbone, input_size=args.input_size,
                               pretrained=not (args.no_pretrained or args.init),  # --init brings its own weights
                               pretrained_file=args.weights, race7=args.race7)
    torch.manual_seed(train_config.seed)

    split_file = Path(args.split_file)
    tables = split_tables(settings, split_file)
    train_table, val_table = tables["train"], tables["val"]
    if args.limit:
        train_table, val_table = train_table.head(args.limit), val_table.head(max(args.limit // 4, 8))
    folder = settings.dataset_dir("utkface", "UTKFace")
    train_chips = load_chips(folder, train_table["file"].tolist(), args.input_size, Path(args.cache_dir))
    val_chips = load_chips(folder, val_table["file"].tolist(), args.input_size, Path(args.cache_dir))
    splits, trained_on = [split_file], "UTKFace train split"
    fairface_val = None
    if args.fairface:
        parts = fairface_tables(settings, Path(args.fairface_split_file))
        fairface_train, fairface_chips = load_photo_chips(parts["train"], args.input_size, Path(args.cache_dir))
        fairface_val = load_photo_chips(parts["val"], args.input_size, Path(args.cache_dir))
        if args.limit:
            fairface_train, fairface_chips = fairface_train.head(args.limit), fairface_chips[: args.limit]
            fairface_val = fairface_val[0].head(max(args.limit // 4, 8)), fairface_val[1][: max(args.limit // 4, 8)]
        train_table = pd.concat([train_table, fairface_train], ignore_index=True)
        train_chips = torch.cat([train_chips, fairface_chips])
        splits.append(Path(args.fairface_split_file))
        trained_on += f" + FairFace val's train part ({len(fairface_train):,} photos)"
    if args.fairface_men:  # FairFace's train photos of men: race and age labels only (gender masked)
        men = read_fairface(Path(args.fairface_men) / "fairface_label_train.csv", name="fairface-train-men").table
        excluded_file = Path(args.fairface_men_excluded)
        if not excluded_file.is_file():
            raise SystemExit(f"{excluded_file} not found: run python -m training.fairface_split "
                             f"--fairface-men {args.fairface_men} first (it lists the photos with an evaluated twin)")
        twins = pd.read_csv(excluded_file)
        excluded = men["file"].isin(twins.loc[twins["role"] == "men", "file"])
        print(f"{int(excluded.sum())} of {len(men):,} FairFace train photos of men left out: a twin is evaluated "
              f"({excluded_file.name})")
        men = men[~excluded].reset_index(drop=True)
        men, men_chips = load_photo_chips(men.head(args.limit) if args.limit else men, args.input_size,
                                          Path(args.cache_dir))
        men["gender"] = men["gender"].where(men["gender"].isna())  # every one missing (same dtype): no gender loss
        train_table = pd.concat([train_table, men], ignore_index=True)
        train_chips = torch.cat([train_chips, men_chips])
        trained_on += (f" + FairFace train photos of men, gender unused ({len(men):,}; {int(excluded.sum())} with an "
                       f"evaluated twin left out)")
    train_targets, val_targets = targets_from_table(train_table), targets_from_table(val_table)
    weights = group_weights(train_table) if train_config.balance == "group" else None

    model = create_model(model_config)
    if args.init:
        initial = load_checkpoint(args.init)
        if initial.model.config.backbone != model_config.backbone or initial.model.config.input_size != args.input_size:
            raise SystemExit(f"--init {args.init} is a {initial.model.config.backbone} at {initial.model.config.input_size} px; "
                             f"pass --backbone and --input-size to match")
        state = initial.model.state_dict()
        if args.race7 and not initial.model.config.race7:
            state = race7_state(state)
        elif initial.model.config.race7 and not args.race7:
            raise SystemExit(f"--init {args.init} has a seven-class race head; pass --race7")
        model.load_state_dict(state)
    model = model.to(device).to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(train_chips) // train_config.batch_size)
    total_epochs = train_config.head_epochs + train_config.epochs
    start_epoch, best_score, log_path, trained_seconds = 0, float("inf"), out / "log.csv", 0.0
    state = torch.load(out / "last.pt", weights_only=True) if args.resume and (out / "last.pt").is_file() else None
    if state:
        model.load_state_dict(state["model"])
        start_epoch, best_score = state["epoch"] + 1, state["best_score"]
        trained_seconds = state.get("trained_seconds", 0.0)
        print(f"resuming after epoch {state['epoch']} (best score so far {best_score:.4f})")

    for epoch in range(start_epoch, total_epochs):
        heads_only = epoch < train_config.head_epochs
        for param in model.backbone.parameters():
            param.requires_grad_(not heads_only)
        if epoch in (start_epoch, train_config.head_epochs):  # (re)build the optimizer at each stage start
            params = [p for p in model.parameters() if p.requires_grad]
            lr = train_config.head_lr if heads_only else train_config.lr
            stage_steps = steps_per_epoch * (train_config.head_epochs if heads_only else train_config.epochs)
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=train_config.weight_decay)
            warmup = min(train_config.warmup_steps, stage_steps // 4)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s, w=warmup, n=stage_steps: min(
                (s + 1) / max(w, 1), 0.5 * (1 + math.cos(math.pi * min(s, n) / n))))
            if state and epoch == start_epoch and heads_only == state["heads_only"]:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
        started = time.perf_counter()
        desc = f"epoch {epoch + 1}/{total_epochs} ({'heads' if heads_only else 'all layers'})"
        losses = train_epoch(model, optimizer, scheduler, train_chips, train_targets, train_config, epoch=epoch,
                             weights=weights, device=device, progress=lambda it, d=desc: tqdm(it, desc=d, unit="batch"))
        train_seconds = time.perf_counter() - started
        trained_seconds += train_seconds
        val = metrics(predict(model, val_chips, device=device), val_targets)
        fairface = None
        if fairface_val is not None:
            fairface = metrics(predict(model, fairface_val[1], device=device), targets_from_table(fairface_val[0]))
        score = validation_score(val, fairface)
        row = {"epoch": epoch + 1, "stage": "heads" if heads_only else "all", "seconds": round(train_seconds, 1),
               "lr": optimizer.param_groups[0]["lr"], **{f"train_{k}": round(v, 4) for k, v in losses.items()},
               **{f"val_{k}": round(v, 4) for k, v in val.items() if v is not None},
               **{f"fairface_val_{k}": round(v, 4) for k, v in (fairface or {}).items() if v is not None},
               "val_score": round(score, 4)}
        with open(log_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if handle.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        print(json.dumps(row))
        if score < best_score:
            best_score = score
            save_checkpoint(model, out / "best", training=dataclasses.asdict(train_config) | {
                "epoch": epoch + 1, "train_images": len(train_chips), "device": _device_name(device),
                "seconds": round(trained_seconds),
                "pretrained_from": args.weights or ("timm hub" if model_config.pretrained else None),
                "initialised_from": args.init},
                split_file=split_file.name, split_sha256=file_sha256(split_file),
                splits=[{"file": path.name, "sha256": file_sha256(path)} for path in splits],
                metrics={"val": val} | ({"fairface_val": fairface} if fairface else {}), trained_on=trained_on,
                created=time.strftime("%Y-%m-%d %H:%M:%S"))
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch, "best_score": best_score, "heads_only": heads_only,
                    "trained_seconds": trained_seconds}, out / "last.pt")
    print(f"best validation score {best_score:.4f}; checkpoint in {out / 'best'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
