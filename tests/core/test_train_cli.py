import csv
import shutil

from core.model import load_checkpoint
from tests.conftest import LONDON_FIXTURES, noise_image
from training import age_estimate, train

NAMES = [f"{age}_{age % 2}_{age % 5}_2017011617452{age:04d}.jpg.chip.jpg" for age in range(20, 36)]


def _utkface_run(tmp_path):
    """A UTKFace-like data folder and split of noise chips, trained for a head epoch and an epoch; its arguments."""
    folder = tmp_path / "data" / "utkface" / "UTKFace"
    folder.mkdir(parents=True)
    for index, name in enumerate(NAMES):
        noise_image(index, 40).save(folder / name, format="JPEG")
    with open(tmp_path / "split.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split", "group"])
        for index, name in enumerate(NAMES):
            writer.writerow([name, "val" if index % 4 == 0 else "train", index])
    args = ["--data", str(tmp_path / "data"), "--split-file", str(tmp_path / "split.csv"), "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--backbone", "test_efficientnet", "--no-pretrained",
            "--input-size", "32", "--batch-size", "4", "--head-epochs", "1", "--epochs", "1", "--threads", "1"]
    assert train.main(args) == 0
    return args


def test_one_epoch_training_run_writes_checkpoint_and_resumes(tmp_path):
    args = _utkface_run(tmp_path)
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert train.main([*args[:-4], "--epochs", "2", "--threads", "1", "--resume"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    fine_tune = [*args[:-8], "--out", str(tmp_path / "ft"), "--init", str(tmp_path / "run" / "best"),
                 "--head-epochs", "0", "--epochs", "1", "--threads", "1"]
    assert train.main(fine_tune) == 0
    assert len((tmp_path / "ft" / "log.csv").read_text().splitlines()) == 2


def test_fine_tuning_on_fairface_widens_the_race_head_to_seven_classes(tmp_path):
    """--fairface --race7 from a five-class checkpoint: FairFace photos (faces detected and aligned) join the
    training data (photos of men but the one with an evaluated twin), the head gets FairFace's seven races, the
    checkpoint records both split files."""
    args = _utkface_run(tmp_path)
    photos = tmp_path / "data" / "fairface" / "val"
    photos.mkdir(parents=True)
    rows = ["file,age,gender,race,service_test"]
    for index, (sample, race) in enumerate([("004_03.jpg", "Middle Eastern"), ("025_03.jpg", "East Asian"),
                                            ("030_08.jpg", "White"), ("025_03.jpg", "Latino_Hispanic")]):
        shutil.copy(LONDON_FIXTURES / sample, photos / f"{index}.jpg")
        rows.append(f"val/{index}.jpg,20-29,{'Female' if index % 2 else 'Male'},{race},True")
    (photos.parent / "fairface_label_val.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "fairface.csv").write_text("file,split,group\nval/0.jpg,train,0\nval/1.jpg,train,1\n"
                                           "val/2.jpg,val,2\nval/3.jpg,test,3\n")
    men = tmp_path / "men"
    (men / "train").mkdir(parents=True)
    shutil.copy(LONDON_FIXTURES / "030_08.jpg", men / "train" / "7.jpg")
    shutil.copy(LONDON_FIXTURES / "004_03.jpg", men / "train" / "8.jpg")
    (men / "fairface_label_train.csv").write_text("file,age,gender,race,service_test\ntrain/7.jpg,30-39,Male,Indian,True\n"
                                                  "train/8.jpg,30-39,Male,White,True\n")
    (tmp_path / "excluded.csv").write_text("group,source,file,role,race,age_bin\n3,fairface-train-men,train/8.jpg,men,White,"
                                           "30-39\n3,fairface-sample,imgs/1.jpg,evaluated,White,30-39\n")
    fine_tune = [*args[:-8], "--out", str(tmp_path / "ff"), "--init", str(tmp_path / "run" / "best"), "--fairface",
                 "--fairface-split-file", str(tmp_path / "fairface.csv"), "--race7", "--fairface-men", str(men),
                 "--fairface-men-excluded", str(tmp_path / "excluded.csv"),
                 "--head-epochs", "0", "--epochs", "1", "--threads", "1"]
    assert train.main(fine_tune) == 0
    checkpoint = load_checkpoint(tmp_path / "ff" / "best")
    assert checkpoint.model.config.race7
    assert [entry["file"] for entry in checkpoint.meta["splits"]] == ["split.csv", "fairface.csv"]
    assert checkpoint.meta["trained_on"] == ("UTKFace train split + FairFace val's train part (2 photos) + FairFace "
                                             "train photos of men, gender unused (1; 1 with an evaluated twin left out)")
    log = next(csv.DictReader(open(tmp_path / "ff" / "log.csv")))
    assert float(log["fairface_val_race7_accuracy"]) in (0.0, 1.0)  # one photo in FairFace's val part


def test_the_age_estimate_is_chosen_on_the_validation_split_and_kept_in_the_checkpoint(tmp_path):
    import json

    args = _utkface_run(tmp_path)
    best = tmp_path / "run" / "best"
    assert age_estimate.main([*args[:4], "--model", str(best), "--cache-dir", str(tmp_path / "cache"),
                              "--threads", "1"]) == 0
    config = json.loads((best / "config.json").read_text())
    errors = config["age_estimate_chosen_on"]["age_mae"]
    assert set(errors) == {"mean", "median"} and config["age_estimate_chosen_on"]["faces"] == 4
    assert config["age_estimate"] == min(errors, key=errors.get) == load_checkpoint(best).model.age_estimate
