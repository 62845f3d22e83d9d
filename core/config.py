"""Where FaceAudit finds its data and model, and which device it runs on: one place, set by environment.

| setting | environment variable | default |
|---|---|---|
| data folder | `FACEAUDIT_DATA` | `../shared/data` beside the repository, if it exists |
| model folder | `FACEAUDIT_MODEL` | `models/default` in the repository |
| device | `FACEAUDIT_DEVICE` | `auto` (CUDA when available, else CPU) |

Command-line entry points accept `--data` / `--model` / `--device` flags that override these
(`add_settings_arguments` adds them, with `--threads`, in one wording everywhere).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import FaceAuditError

__all__ = ["REPO_ROOT", "SPLIT_FILE", "FAIRFACE_SPLIT_FILE", "FAIRFACE_MEN_EXCLUDED", "Settings", "DataNotFoundError", "add_settings_arguments"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SPLIT_FILE = REPO_ROOT / "splits" / "utkface.csv"
FAIRFACE_SPLIT_FILE = REPO_ROOT / "splits" / "fairface.csv"  # FairFace val in train / val / test parts
# FairFace's train photos of men that have an evaluated twin (training.fairface_split --fairface-men): never trained on
FAIRFACE_MEN_EXCLUDED = REPO_ROOT / "splits" / "fairface_men_excluded.csv"


class DataNotFoundError(FaceAuditError, FileNotFoundError):
    """The data folder (or a dataset inside it) is not where the settings say."""


@dataclass(frozen=True)
class Settings:
    """Resolved locations and device.

    Attributes:
        data_dir: Folder holding `utkface/UTKFace`, `fairface_sample/`, `london_set/`; None if unknown.
        model_dir: Folder of the model checkpoint to audit.
        device: `"auto"`, `"cpu"` or a torch device string such as `"cuda:0"`.
    """

    data_dir: Path | None
    model_dir: Path
    device: str = "auto"

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        """Build settings from `FACEAUDIT_*` environment variables and the defaults above."""
        env = os.environ if environ is None else environ
        if env.get("FACEAUDIT_DATA"):
            data_dir: Path | None = Path(env["FACEAUDIT_DATA"]).expanduser()
        else:
            beside_repo = REPO_ROOT.parent / "shared" / "data"
            data_dir = beside_repo if beside_repo.is_dir() else None
        model_dir = Path(env.get("FACEAUDIT_MODEL") or REPO_ROOT / "models" / "default").expanduser()
        return cls(data_dir=data_dir, model_dir=model_dir, device=env.get("FACEAUDIT_DEVICE") or "auto")

    def with_overrides(self, *, data: str | Path | None = None, model: str | Path | None = None,
                       device: str | None = None) -> Settings:
        """Return a copy with the non-None command-line overrides applied."""
        return replace(
            self,
            data_dir=Path(data).expanduser() if data is not None else self.data_dir,
            model_dir=Path(model).expanduser() if model is not None else self.model_dir,
            device=device or self.device,
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """Settings from the environment, overridden by whichever of `--data/--model/--device` `args` has."""
        return cls.from_env().with_overrides(data=getattr(args, "data", None), model=getattr(args, "model", None),
                                             device=getattr(args, "device", None))

    def dataset_dir(self, *parts: str) -> Path:
        """Return `data_dir/parts...`, or raise a message that says how to point FaceAudit at the data.

        Raises:
            DataNotFoundError: no data folder is configured, or the dataset is missing in it.
        """
        if self.data_dir is None:
            raise DataNotFoundError(
                "no data folder configured: set FACEAUDIT_DATA (or pass --data) to the folder that "
                "holds utkface/, fairface_sample/ and london_set/"
            )
        path = self.data_dir.joinpath(*parts)
        if not path.exists():
            raise DataNotFoundError(f"{path} does not exist (data folder: {self.data_dir}; set FACEAUDIT_DATA)")
        return path


def add_settings_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *names: str) -> None:
    """Add the shared flags among `data`, `model`, `device`, `threads` (read them back with `Settings.from_args`)."""
    flags = {
        "data": {"help": "data folder (default: FACEAUDIT_DATA or ../shared/data)"},
        "model": {"help": "checkpoint folder (default: FACEAUDIT_MODEL or models/default)"},
        "device": {"help": "auto, cpu, cuda (default: FACEAUDIT_DEVICE or auto)"},
        "threads": {"type": int, "default": len(os.sched_getaffinity(0)),
                    "help": "CPU threads (default: the cores this process may use)"},
    }
    for name in names:
        parser.add_argument(f"--{name}", **flags[name])
