"""Shared fixtures: synthetic images and label files, and the real data folder when present."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from core.config import REPO_ROOT, Settings  # noqa: E402

LONDON_FIXTURES = REPO_ROOT / "samples"  # CC BY 4.0 London-set photos, shipped as app samples


def noise_image(seed: int, size: int = 64) -> Image.Image:
    """A random but smooth RGB image: distinct seeds give visually distinct images."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny untrained checkpoint (48 px): fast audits and CLI runs where the predictions do not matter."""
    import torch

    from core.model import ModelConfig, create_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(create_model(ModelConfig(backbone="test_efficientnet", input_size=48)),
                           tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def tiny_checkpoint():
    """An untrained 48 px checkpoint in memory."""
    import torch

    from core.model import Checkpoint, ModelConfig, create_model

    torch.manual_seed(0)
    return Checkpoint(model=create_model(ModelConfig(backbone="test_efficientnet", input_size=48)).eval(),
                      meta={"weights_sha256": "0123456789abcdef"})


@pytest.fixture
def photo_manifest(tmp_path) -> Path:
    """Three London-set photos, a blank image, a text file named .jpg and a missing file, with labels."""
    for path in sorted(LONDON_FIXTURES.glob("*.jpg")):
        shutil.copy(path, tmp_path / path.name)
    Image.new("RGB", (200, 200), (128, 128, 128)).save(tmp_path / "blank.png")
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    (tmp_path / "manifest.csv").write_text(
        "path,age,gender,race,identity\n"
        "004_03.jpg,30,male,White,p004\n025_03.jpg,21,female,Black,p025\n030_08.jpg,24,female,East Asian,p030\n"
        "blank.png,40,male,White,none\nnotes.jpg,40,male,White,none\nmissing.jpg,40,male,White,none\n"
    )
    return tmp_path / "manifest.csv"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (FACEAUDIT_DATA or ../shared/data); skips the test when absent."""
    data_dir = Settings.from_env().data_dir
    if data_dir is None or not (data_dir / "utkface" / "UTKFace").is_dir():
        pytest.skip("real data not found: set FACEAUDIT_DATA or place it at ../shared/data")
    return data_dir
