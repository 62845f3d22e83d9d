"""The multi-task network (age distribution, gender, race on one timm backbone) and its checkpoints.

A checkpoint is a folder with `model.safetensors` (weights only; nothing is unpickled) and
`config.json` (backbone, input size, normalisation, label names, split hash, training settings,
metrics). `load_checkpoint` rebuilds the model from that JSON alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from core import labels
from core.errors import FaceAuditError

__all__ = [
    "AGES",
    "HEADS",
    "ModelConfig",
    "MultiTaskNet",
    "CheckpointError",
    "create_model",
    "resolve_device",
    "age_summary",
    "mirror_average",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
]

AGES = torch.arange(labels.AGE_MIN, labels.AGE_MAX + 1, dtype=torch.float32)  # the age head's classes
# (117, 9) one-hot: which age bin each year of the age head belongs to
AGE_BIN_MATRIX = torch.tensor([[float(labels.age_to_bin(int(age)) == name) for name in labels.AGE_BINS]
                               for age in AGES.tolist()])
HEADS = {"age": labels.AGE_MAX + 1 - labels.AGE_MIN, "gender": len(labels.GENDERS), "race": len(labels.RACES)}
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


class CheckpointError(FaceAuditError, RuntimeError):
    """A checkpoint folder that is missing, incomplete, or from an incompatible FaceAudit version."""


@dataclass(frozen=True)
class ModelConfig:
    """What defines the network.

    Attributes:
        backbone: Any timm model name.
        input_size: Side of the square input in pixels.
        dropout: Dropout before the heads.
        pretrained: Load ImageNet weights: from `pretrained_file` when given, else timm's hub.
        pretrained_file: Local timm-format weights file (for offline machines).
    """

    backbone: str = "tf_efficientnet_lite0"
    input_size: int = 128
    dropout: float = 0.2
    pretrained: bool = False
    pretrained_file: str | None = None


class MultiTaskNet(nn.Module):
    """A timm backbone (`num_classes=0`) with three linear heads.

    `forward` returns logits `{"age": (b, 117), "gender": (b, 2), "race": (b, 5)}`; the age head
    is a distribution over whole years 0-116 (see `age_summary`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        kwargs: dict[str, Any] = {"pretrained": config.pretrained, "num_classes": 0}
        if config.pretrained and config.pretrained_file:
            kwargs["pretrained_cfg_overlay"] = {"file": str(config.pretrained_file)}
        self.backbone = timm.create_model(config.backbone, **kwargs)
        data_config = timm.data.resolve_model_data_config(self.backbone)
        self.mean: tuple[float, ...] = tuple(data_config["mean"])
        self.std: tuple[float, ...] = tuple(data_config["std"])
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(self.backbone.num_features, size) for name, size in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.from_features(self.backbone.forward_features(x))

    def from_features(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits from the backbone's last feature map (`backbone.forward_features`), e.g. for Grad-CAM."""
        pooled = self.dropout(self.backbone.forward_head(features))  # (b, num_features)
        return {name: head(pooled) for name, head in self.heads.items()}

    def normalize(self, chips: torch.Tensor) -> torch.Tensor:
        """uint8 `(b, H, W, 3)` or `(b, 3, H, W)` chips -> normalised float `(b, 3, S, S)` at the input size."""
        if chips.shape[-1] == 3:
            chips = chips.permute(0, 3, 1, 2)
        x = chips.float().div_(255.0)
        size = self.config.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def create_model(config: ModelConfig) -> MultiTaskNet:
    """Build a `MultiTaskNet` from its config.

    Example:
        >>> net = create_model(ModelConfig(backbone="test_efficientnet", input_size=64))
    """
    return MultiTaskNet(config)


def resolve_device(name: str = "auto") -> torch.device:
    """`"auto"` -> CUDA when available, else CPU; anything else is passed to `torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def age_summary(age_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Turn age logits into the expected age, its spread and the nine age-bin probabilities.

    Returns:
        `age` (b,) expected years, `age_std` (b,) standard deviation in years, `age_bin` (b, 9).
    """
    probs = age_logits.float().softmax(dim=1)  # (b, 117)
    ages = AGES.to(probs.device)
    mean = probs @ ages
    std = (probs @ ages.square() - mean.square()).clamp_min(0).sqrt()
    return {"age": mean, "age_std": std, "age_bin": probs @ AGE_BIN_MATRIX.to(probs.device)}  # bins: (b, 9)


def mirror_average(outputs: dict[str, torch.Tensor], mirrored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Test-time mirroring: per head, the mean of the log-probabilities of a chip and of its mirror image.

    The one combination used by `core.trainer.predict` and by the explanations, so an explained value
    is the probability the dashboard shows.
    """
    return {name: (outputs[name].float().log_softmax(1) + mirrored[name].float().log_softmax(1)) / 2 for name in outputs}


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (used to tie a checkpoint to its split file)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and everything its config.json recorded."""

    model: MultiTaskNet
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def model_id(self) -> str:
        """A short id that changes when the weights change."""
        return self.meta.get("weights_sha256", "")[:12]


def _label_block() -> dict[str, Any]:
    return {"age_min": labels.AGE_MIN, "age_max": labels.AGE_MAX, "age_bins": list(labels.AGE_BINS),
            "genders": list(labels.GENDERS), "races": list(labels.RACES)}


def save_checkpoint(model: MultiTaskNet, folder: str | Path, **meta: Any) -> Path:
    """Write `model.safetensors` and `config.json` into `folder`; extra keyword args go into the JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    config = {
        "format": "faceaudit-checkpoint/1",
        "model": asdict(model.config) | {"pretrained": False, "pretrained_file": None},
        "preprocessing": {"input_size": model.config.input_size, "mean": list(model.mean), "std": list(model.std),
                          "chip": "aligned to core/assets/utkface_template.json, RGB"},
        "labels": _label_block(),
        "weights_sha256": file_sha256(folder / WEIGHTS_FILE),
        **meta,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_default))
    return folder


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in config.json")


# Limits on a checkpoint's config: a larger input would make one prediction take gigabytes.
INPUT_SIZE_RANGE = (16, 1024)


def _checked_config(block: Any, path: Path) -> ModelConfig:
    """The network config of a checkpoint, every field checked; `pretrained*` fields are never followed.

    A checkpoint's weights are its `model.safetensors`: a `pretrained` flag or `pretrained_file` in its
    config would make loading fetch from the hub or unpickle a file, so both are ignored.
    """
    if not isinstance(block, dict):
        raise CheckpointError(f"{path}: 'model' must be an object with backbone, input_size and dropout")
    backbone, size, dropout = block.get("backbone"), block.get("input_size"), block.get("dropout", 0.0)
    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise CheckpointError(f"{path}: unknown backbone {backbone!r}; it must be a timm model name")
    low, high = INPUT_SIZE_RANGE
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise CheckpointError(f"{path}: input_size {size!r} must be a whole number of pixels in {low}-{high}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise CheckpointError(f"{path}: dropout {dropout!r} must be a number in [0, 1)")
    return ModelConfig(backbone=backbone, input_size=size, dropout=float(dropout))


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint folder, in eval mode, on `device`.

    The weights must have the SHA-256 that config.json records (so the model id is the weights' own),
    the config's fields are checked against limits, and nothing but `model.safetensors` is loaded.

    Raises:
        CheckpointError: the folder or a file is missing, unreadable, tampered with, out of limits, or its
            labels differ from this version of FaceAudit.
    """
    folder = Path(folder)
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    for path in (weights, config_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing (set FACEAUDIT_MODEL or pass --model)")
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not a FaceAudit checkpoint config ({error})") from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"{config_path} is not a FaceAudit checkpoint config (a JSON object is expected)")
    config = _checked_config(meta.get("model"), config_path)
    actual = file_sha256(weights)
    if meta.get("weights_sha256") != actual:
        raise CheckpointError(f"{weights} is not the file its config.json describes (SHA-256 {actual[:12]}, recorded "
                              f"{str(meta.get('weights_sha256'))[:12]}): the weights were replaced or damaged; "
                              "save the checkpoint again with FaceAudit")
    if meta.get("labels") != _label_block():
        raise CheckpointError(f"{config_path}: its label names differ from this FaceAudit version's; retrain or update")
    model = create_model(config)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights} cannot be loaded into {config.backbone} ({error})") from error
    model.to(device).to(memory_format=torch.channels_last).eval()  # matches `normalize`'s layout: ~1.6x on CPU
    return Checkpoint(model=model, meta=meta, path=folder)
