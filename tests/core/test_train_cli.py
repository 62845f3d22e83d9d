import csv

from tests.conftest import noise_image
from training import train

NAMES = [f"{age}_{age % 2}_{age % 5}_2017011617452{age:04d}.jpg.chip.jpg" for age in range(20, 36)]


def test_one_epoch_training_run_writes_checkpoint_and_resumes(tmp_path):
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
