"""The multi-task network (age distribution, gender, race on one timm backbone) and its checkpoints.

A checkpoint is a folder with `model.safetensors` (weights only; nothing is unpickled) and
`config.json` (backbone, input size, normalisation, label names, split hash, training settings,
metrics). `load_checkpoint` rebuilds the model from that JSON alone.
"""

from __future__ import annotations

import hashlib
import json
import math
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
from core.bundle import checkpoint_id
from core.errors import FaceAuditError

__all__ = [
    "AGES",
    "HEADS",
    "head_sizes",
    "race7_to_race",
    "race7_state",
    "ModelConfig",
    "MultiTaskNet",
    "CheckpointError",
    "create_model",
    "resolve_device",
    "age_summary",
    "age_estimate",
    "AGE_ESTIMATES",
    "mirror_average",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
]

AGE_ESTIMATES = ("mean", "median")  # the age a checkpoint reports from its year distribution (config "age_estimate")
AGES = torch.arange(labels.AGE_MIN, labels.AGE_MAX + 1, dtype=torch.float32)  # the age head's classes
# (117, 9) one-hot: which age bin each year of the age head belongs to
AGE_BIN_MATRIX = torch.tensor([[float(labels.age_to_bin(int(age)) == name) for name in labels.AGE_BINS]
                               for age in AGES.tolist()])
HEADS = {"age": labels.AGE_MAX + 1 - labels.AGE_MIN, "gender": len(labels.GENDERS), "race": len(labels.RACES)}
# (7, 5): log of which five-class race each FairFace race belongs to (0 where it does, -inf where not)
_RACE7_TO_RACE_LOG = torch.tensor([[0.0 if index == race else -math.inf for race in range(len(labels.RACES))]
                                   for index in labels.RACE7_TO_RACE])
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
        race7: A race head over FairFace's seven classes; the model's `race` output is then its five-class view.
    """

    backbone: str = "tf_efficientnet_lite0"
    input_size: int = 128
    dropout: float = 0.2
    pretrained: bool = False
    pretrained_file: str | None = None
    race7: bool = False


def head_sizes(config: ModelConfig) -> dict[str, int]:
    """The linear heads of a network and their widths: `HEADS`, with `race7` (7) in place of `race` when asked."""
    if not config.race7:
        return dict(HEADS)
    return {"age": HEADS["age"], "gender": HEADS["gender"], "race7": len(labels.FAIRFACE_RACES)}


def race7_to_race(race7_logits: torch.Tensor) -> torch.Tensor:
    """Five-class race log-probabilities `(b, 5)` from seven-class logits `(b, 7)`: each class's summed probability.

    A five-class label trains the seven-class head through this view as a label set (cross-entropy here is
    -log of the set's summed probability), and softmax of the result gives the five probabilities.
    """
    log_probs = race7_logits.float().log_softmax(dim=1)
    return torch.logsumexp(log_probs[:, :, None] + _RACE7_TO_RACE_LOG.to(log_probs.device)[None], dim=1)


def race7_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A five-class race head's weights as a seven-class head whose five-class view predicts exactly the same.

    Each FairFace class copies the row of its five-class race, its bias lowered by the log of how many
    classes share that race (Asian and Others each split in two), so `race7_to_race` gives the old softmax.
    """
    index = torch.tensor(labels.RACE7_TO_RACE)
    shares = torch.bincount(index, minlength=len(labels.RACES)).float()[index]
    weight, bias = state["heads.race.weight"], state["heads.race.bias"]
    kept = {name: tensor for name, tensor in state.items() if not name.startswith("heads.race.")}
    return kept | {"heads.race7.weight": weight[index].clone(), "heads.race7.bias": bias[index] - shares.log()}


class MultiTaskNet(nn.Module):
    """A timm backbone (`num_classes=0`) with three linear heads.

    `forward` returns logits `{"age": (b, 117), "gender": (b, 2), "race": (b, 5)}`; the age head
    is a distribution over whole years 0-116 (see `age_summary`). With `config.race7` the race head
    is `race7` (b, 7) over FairFace's classes and `race` is its five-class view (`race7_to_race`).
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
        self.heads = nn.ModuleDict({name: nn.Linear(self.backbone.num_features, size)
                                    for name, size in head_sizes(config).items()})
        self.temperatures: dict[str, float] = {}  # per head, logits are divided by it (calibration; not weights)
        self.age_estimate = "mean"  # which age the year distribution predicts (`age_estimate`; not weights)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.from_features(self.backbone.forward_features(x))

    def from_features(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits from the backbone's last feature map (`backbone.forward_features`), e.g. for Grad-CAM."""
        pooled = self.dropout(self.backbone.forward_head(features))  # (b, num_features)
        logits = {name: head(pooled) / self.temperatures.get(name, 1.0) for name, head in self.heads.items()}
        if "race7" in logits:
            logits["race"] = race7_to_race(logits["race7"])
        return logits

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


def age_estimate(probs: torch.Tensor, estimate: str = "mean") -> torch.Tensor:
    """The age `(b,)` a year distribution `(b, 117)` predicts: its mean, or its median (the estimate of least expected
    absolute error; each year's mass spread evenly over the year around it, so it is continuous and always lies in
    the age bin the median rule predicts). Differentiable, for the explanations."""
    ages = AGES.to(probs.device)
    if estimate == "mean":
        return probs @ ages
    cumulative = probs.cumsum(dim=1)
    year = (cumulative < 0.5).sum(dim=1, keepdim=True).clamp_max(probs.shape[1] - 1)  # first year reaching 0.5
    below = (cumulative.gather(1, year) - probs.gather(1, year)).squeeze(1)  # mass of the years before it
    inside = (0.5 - below) / probs.gather(1, year).squeeze(1).clamp_min(1e-12)  # share of that year's mass needed
    return (ages[year.squeeze(1)] - 0.5 + inside).clamp(labels.AGE_MIN, labels.AGE_MAX)


def age_summary(age_logits: torch.Tensor, estimate: str = "mean") -> dict[str, torch.Tensor]:
    """Turn age logits into the predicted age (`age_estimate`), the distribution's spread and the nine age-bin
    probabilities.

    Returns:
        `age` (b,) years, `age_std` (b,) the distribution's standard deviation in years, `age_bin` (b, 9).
    """
    probs = age_logits.float().softmax(dim=1)  # (b, 117)
    ages = AGES.to(probs.device)
    mean = probs @ ages
    std = (probs @ ages.square() - mean.square()).clamp_min(0).sqrt()
    return {"age": age_estimate(probs, estimate), "age_std": std, "age_bin": probs @ AGE_BIN_MATRIX.to(probs.device)}


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
        """A short id that changes when the weights, the calibration temperatures or the age estimate change."""
        return checkpoint_id(self.meta)


def _label_block(race7: bool = False) -> dict[str, Any]:
    block = {"age_min": labels.AGE_MIN, "age_max": labels.AGE_MAX, "age_bins": list(labels.AGE_BINS),
             "genders": list(labels.GENDERS), "races": list(labels.RACES)}
    return block | {"races7": list(labels.FAIRFACE_RACES)} if race7 else block


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
        "labels": _label_block(model.config.race7),
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
    race7 = block.get("race7", False)
    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise CheckpointError(f"{path}: unknown backbone {backbone!r}; it must be a timm model name")
    low, high = INPUT_SIZE_RANGE
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise CheckpointError(f"{path}: input_size {size!r} must be a whole number of pixels in {low}-{high}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise CheckpointError(f"{path}: dropout {dropout!r} must be a number in [0, 1)")
    if not isinstance(race7, bool):
        raise CheckpointError(f"{path}: race7 {race7!r} must be true or false")
    return ModelConfig(backbone=backbone, input_size=size, dropout=float(dropout), race7=race7)


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
    if meta.get("labels") != _label_block(config.race7):
        raise CheckpointError(f"{config_path}: its label names differ from this FaceAudit version's; retrain or update")
    model = create_model(config)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights} cannot be loaded into {config.backbone} ({error})") from error
    model.temperatures = _checked_temperatures(meta.get("temperatures"), set(model.heads), config_path)
    model.age_estimate = meta.get("age_estimate", "mean")
    if model.age_estimate not in AGE_ESTIMATES:
        raise CheckpointError(f"{config_path}: age_estimate {model.age_estimate!r} must be one of "
                              f"{', '.join(AGE_ESTIMATES)}")
    model.to(device).to(memory_format=torch.channels_last).eval()  # matches `normalize`'s layout: ~1.6x on CPU
    return Checkpoint(model=model, meta=meta, path=folder)


TEMPERATURE_RANGE = (0.05, 20.0)


def _checked_temperatures(block: Any, heads: set[str], path: Path) -> dict[str, float]:
    """A checkpoint's calibration temperatures (`training.calibrate --checkpoint`): a head of the network each."""
    if block is None:
        return {}
    low, high = TEMPERATURE_RANGE
    if not isinstance(block, dict) or not all(
            head in heads and isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
            for head, value in block.items()):
        raise CheckpointError(f"{path}: temperatures {block!r} must map heads of the network ({', '.join(sorted(heads))}) "
                              f"to numbers in {low}-{high}")
    return {head: float(value) for head, value in block.items()}
