"""How an audit's images are processed: in chunks, by this process or by Ray Data actors, each finished chunk kept
on disk so that a stopped audit resumes where it stopped.

A chunk is `CHUNK_ROWS` consecutive images of the dataset, detected, the labelled face chosen and aligned, predicted
and hashed for duplicate grouping (`audit_chunk`). Both engines run `audit_chunk` on the same chunks, so they give
the same bundle; `core.audit.run_audit` joins the chunks into it.

Ray starts locally by default (this machine's cores, loopback only, no dashboard, no usage reporting); with
`ray_address` the chunks run on that cluster, whose nodes must see the images at the same paths. Ray's workers get
FaceAudit's code, and a user's `--predictor` module when it is neither in FaceAudit's folder nor installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import pickle
import shutil
import site
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from core.chips import Box, chips_from_photos, chips_from_utkface
from core.config import REPO_ROOT
from core.dedup import HASH_COLUMNS, image_hashes
from core.errors import FaceAuditError
from core.model import Checkpoint
from core.onnx_model import CallableModel
from core.trainer import CPU, predict

__all__ = ["CHUNK_ROWS", "ENGINES", "ChunkResult", "ChunkStore", "ResumeError", "audit_chunk", "audit_key",
           "run_chunks", "model_size", "actor_threads"]

CHUNK_ROWS = 128  # images per chunk: the unit of work, of resuming, and of a Ray task
ENGINES = ("local", "ray")
CPUS = len(os.sched_getaffinity(0))
LOOPBACK_RAY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray on one machine, on 127.0.0.1 (despite the name, any OS)


class ResumeError(FaceAuditError, RuntimeError):
    """The folder of finished chunks belongs to another audit (other images, model or settings)."""


def model_size(model: Any) -> int:
    """The chip side in pixels the model takes."""
    return model.model.config.input_size if isinstance(model, Checkpoint) else model.size


@dataclass
class ChunkResult:
    """What one chunk of images gave: per image its error ("" when a face was predicted), detection record and
    `HASH_COLUMNS`; model outputs (`core.trainer.predict`'s) for the images without error, in order."""

    errors: list[str]
    records: list[dict]
    hashes: pd.DataFrame
    outputs: dict[str, np.ndarray]

    def to_bytes(self) -> bytes:
        """The chunk as an `.npz` file's bytes (no pickled objects)."""
        buffer = io.BytesIO()
        np.savez(buffer, errors=np.array(self.errors, dtype=str),
                 records=np.array([json.dumps(record) for record in self.records], dtype=str),
                 **{f"hash_{column}": self.hashes[column].to_numpy(dtype=str) for column in HASH_COLUMNS},
                 **{f"out_{head}": value for head, value in self.outputs.items()})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ChunkResult:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(errors=arrays["errors"].tolist(), records=[json.loads(text) for text in arrays["records"]],
                       hashes=pd.DataFrame({column: arrays[f"hash_{column}"].tolist() for column in HASH_COLUMNS},
                                           dtype=str),
                       outputs={name.removeprefix("out_"): arrays[name] for name in arrays.files
                                if name.startswith("out_")})

    @staticmethod
    def join(chunks: Sequence[ChunkResult]) -> ChunkResult:
        """The chunks as one, in order (a chunk without a face adds no outputs)."""
        with_outputs = [chunk.outputs for chunk in chunks if len(next(iter(chunk.outputs.values()), []))]
        outputs = ({head: np.concatenate([part[head] for part in with_outputs]) for head in with_outputs[0]}
                   if with_outputs else (chunks[0].outputs if chunks else {}))
        return ChunkResult(errors=[error for chunk in chunks for error in chunk.errors],
                           records=[record for chunk in chunks for record in chunk.records],
                           hashes=pd.concat([chunk.hashes for chunk in chunks], ignore_index=True) if chunks
                           else pd.DataFrame(columns=list(HASH_COLUMNS), dtype=str),
                           outputs=outputs)


def audit_chunk(model: Any, paths: Sequence[str], *, input_kind: str, face_rule: str, batch_size: int = 64,
                device: torch.device = CPU, threads: int = 2, boxes: Sequence[Box | None] | None = None) -> ChunkResult:
    """Detect, choose, align, predict and hash one chunk of images (`model` as `core.audit.run_audit` takes it);
    `boxes`: per image, its labelled face's box, or None to choose by `face_rule`."""
    options = {"size": model_size(model), "face_rule": face_rule, "workers": threads,
               "margin": getattr(model, "margin", None)}  # an ONNX model trained on plain crops
    batch = (chips_from_utkface(list(paths), **options) if input_kind == "aligned-chips"  # boxes: refused by run_audit
             else chips_from_photos(list(paths), boxes=boxes, **options))
    ok = np.array([error == "" for error in batch.errors], dtype=bool)
    outputs = (predict(model.model, batch.chips[ok], batch_size=batch_size, device=device)
               if isinstance(model, Checkpoint) else model.predict(batch.chips[ok], batch_size=batch_size))
    hashes = image_hashes([path for path, good in zip(paths, ok) if good], workers=threads,
                          boxes=[box for box, good in zip(boxes, ok) if good] if boxes else None)
    all_hashes = pd.DataFrame("", index=range(len(paths)), columns=list(HASH_COLUMNS), dtype=str)
    all_hashes.loc[np.flatnonzero(ok)] = hashes.to_numpy()
    return ChunkResult(errors=batch.errors, records=batch.records, hashes=all_hashes, outputs=outputs)


class ChunkStore:
    """Finished chunks of one audit in a folder (`chunk-00012.npz`), and which audit they belong to (`audit.json`).

    Raises:
        ResumeError: the folder holds chunks of another audit.
    """

    def __init__(self, folder: str | Path, key: dict[str, Any]) -> None:
        self.folder, self.key = Path(folder), key
        recorded = self.folder / "audit.json"
        if recorded.is_file():
            try:
                theirs = json.loads(recorded.read_text())
            except (OSError, ValueError):
                theirs = None
            if theirs != key:
                differ = sorted(name for name in key if not isinstance(theirs, dict) or theirs.get(name) != key[name])
                raise ResumeError(f"{self.folder} holds the finished chunks of another audit (it differs in "
                                  f"{', '.join(differ) or 'audit.json'}); pass --restart to discard them, or choose "
                                  "another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(key, indent=2))

    def _file(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.npz"

    def done(self, count: int) -> dict[int, ChunkResult]:
        """The finished chunks among the first `count`; an unreadable one (a crash while writing) is done again."""
        found = {}
        for index in range(count):
            try:
                found[index] = ChunkResult.from_bytes(self._file(index).read_bytes())
            except (OSError, ValueError, KeyError):
                continue
        return found

    def save(self, index: int, data: bytes) -> None:
        partial = self._file(index).with_suffix(".tmp")
        partial.write_bytes(data)
        os.replace(partial, self._file(index))  # a chunk file is whole or absent

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def audit_key(model_id: str, paths: Sequence[str], **settings: Any) -> dict[str, Any]:
    """What makes two audits the same work: model, images in order, and the settings that change a chunk."""
    digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()
    return {"model_id": model_id, "images": len(paths), "images_sha256": digest, "chunk_rows": CHUNK_ROWS, **settings}


@contextlib.contextmanager
def _one_opencv_thread() -> Iterator[None]:
    """OpenCV without a thread pool of its own while inside: a chunk already spreads its images over `threads`
    workers, and OpenCV's pool on top of them oversubscribes the cores (on FairFace val photos 6,000-7,535, two Ray
    actors of one core each audited 12 % fewer photos a second with it, one process of two threads 4 % fewer; the
    detections are the same)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def actor_threads(workers: int) -> int:
    """Threads each of `workers` Ray actors runs on: its share of this machine's cores, at least one."""
    return max(1, CPUS // workers)


def _local_chunks(model: Any, chunks: dict[int, list[str]], options: dict[str, Any],
                  boxes: dict[int, list[Box | None]]) -> Iterator[tuple[int, bytes]]:
    with _one_opencv_thread():
        for index, paths in chunks.items():
            yield index, audit_chunk(model, paths, boxes=boxes.get(index), **options).to_bytes()


class _ChunkActor:
    """A Ray Data actor holding one copy of the model; audits one chunk per call.

    What one process would refuse with a `FaceAuditError` (a model this worker cannot load, such as an ONNX file
    missing on its node; a user's function that returns the wrong shapes) comes back as the chunk's `refusal`, for
    the driver to stop with that message instead of Ray's traceback of it.
    """

    def __init__(self, model: bytes, options: dict[str, Any]) -> None:
        torch.set_num_threads(options["threads"])
        cv2.setNumThreads(1)  # as `_one_opencv_thread`, for the life of this worker process (it holds only this actor)
        self.model, self.options, self.refusal = None, options, ""
        try:  # loaded here rather than by Ray as an argument, where its refusal would kill the actor
            self.model = pickle.loads(model)  # the driver's own model, pickled by `_ray_chunks`
        except FaceAuditError as error:
            self.refusal = str(error)

    def _audit(self, paths: Sequence[str], boxes: str) -> tuple[bytes, str]:
        if self.refusal:
            return b"", self.refusal
        try:
            return audit_chunk(self.model, [str(path) for path in paths], boxes=json.loads(boxes),
                               **self.options).to_bytes(), ""
        except FaceAuditError as error:
            return b"", str(error)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads, refusals = zip(*(self._audit(paths, boxes) for paths, boxes in zip(batch["paths"], batch["boxes"])),
                                 strict=True)
        return {"chunk": batch["chunk"], "payload": np.array(payloads, dtype=object), "refusal": np.array(refusals)}


def _is_loopback(address: str) -> bool:
    return _head_address(address).removeprefix("ray://").rpartition(":")[0] in ("127.0.0.1", "localhost")


def _head_address(address: str) -> str:
    """The cluster `auto` names, found as Ray finds it on a head node: `RAY_ADDRESS`, else the address the last
    `ray start` left in Ray's temp folder; `auto` when neither is there, any other address as given."""
    if address != "auto":
        return address
    temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    left = Path(temp, "ray", "ray_current_cluster")
    return os.environ.get("RAY_ADDRESS") or (left.read_text().strip() if left.is_file() else address)


def _modules_to_ship(model: Any) -> list[ModuleType]:
    """A user's `--predictor` module, for Ray to send to its workers, unless they import it already: from
    FaceAudit's folder (theirs too) or from the installed packages (each node's environment)."""
    if not isinstance(model, CallableModel):
        return []
    module = model.top_module
    source = Path(module.__file__ or next(iter(module.__path__))).resolve()
    shared = [REPO_ROOT, *map(Path, site.getsitepackages()), Path(site.getusersitepackages())]
    return [] if any(source.is_relative_to(folder.resolve()) for folder in shared) else [module]


def _connect(ray: Any, address: str, modules: list[ModuleType]) -> None:
    """Join the Ray cluster at `address` (its workers get FaceAudit's code and `modules`), or say what to check."""
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise FaceAuditError(f"--ray-address {address} needs Ray Client: pip install 'ray[client]', or run the audit "
                             "on the cluster's head node with --ray-address auto")
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env={
            "working_dir": str(REPO_ROOT), "excludes": [".git", ".venv", "runs", "artifacts", "models", "samples"],
            **({"py_modules": modules} if modules else {})})
    except ConnectionError as error:
        if "AuthToken" in f"{error} {error.__cause__}":
            raise FaceAuditError(f"the Ray cluster at {address} refused this process's authentication token: set "
                                 "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file "
                                 "~/.ray/auth_token) as on its nodes") from None
        raise FaceAuditError(f"no Ray cluster answered at {address}: check the address (host:6379 on the head "
                             "node, ray://host:10001 elsewhere) and that the cluster is up (ray status)") from None


def _ray_chunks(model: Any, chunks: dict[int, list[str]], options: dict[str, Any], workers: int,
                address: str | None, boxes: dict[int, list[Box | None]]) -> Iterator[tuple[int, bytes]]:
    """Each chunk as a Ray Data row, audited by `workers` actors; chunks come back as they finish."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address or _is_loopback(address):  # Ray's single-machine mode (its default on macOS and Windows): every
        os.environ.setdefault(LOOPBACK_RAY, "0")  # port on 127.0.0.1, read at import
    try:
        import ray
        import ray.cloudpickle
        import ray.data
    except ImportError:
        raise FaceAuditError("--engine ray needs Ray Data: pip install 'ray[data]'") from None
    started, modules = not ray.is_initialized(), _modules_to_ship(model)
    if started and address:  # a cluster: ship FaceAudit's code (not its models, data or environment) to the nodes
        _connect(ray, address, modules)
    elif started:
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)},
                              **({"py_modules": modules} if modules else {})})
        if (node := ray.util.get_node_ip_address()) != "127.0.0.1":  # Ray was imported before it could be kept local
            ray.shutdown()
            raise FaceAuditError(f"a local Ray would listen on {node}, beyond this machine: set {LOOPBACK_RAY}=0 "
                                 "before Python starts, or use --engine local")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = context.enable_auto_log_stats = False
    try:
        items = ray.data.from_items([{"chunk": index, "paths": paths, "boxes": json.dumps(boxes.get(index))}
                                     for index, paths in chunks.items()], override_num_blocks=len(chunks))
        # Two chunks in flight per actor, run one at a time: the next one waits at the actor instead of being sent
        # when the last returns (an actor idled 0.15-0.18 s between 128-photo chunks, 3 %; now 0.01 s)
        audited = items.map_batches(_ChunkActor, batch_size=1, num_cpus=options["threads"],  # Ray sets OMP threads by it
                                    compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
                                    fn_constructor_kwargs={"model": ray.cloudpickle.dumps(model), "options": options})
        for row in audited.iter_rows():
            if row["refusal"]:
                raise FaceAuditError(row["refusal"])
            yield int(row["chunk"]), row["payload"]
    finally:
        if started:
            ray.shutdown()


def _parameter_devices(model: Any) -> set[str]:
    """The device types a checkpoint's weights are on (none for an ONNX model or a user's function)."""
    return {p.device.type for p in model.model.parameters()} if isinstance(model, Checkpoint) else set()


def run_chunks(model: Any, paths: Sequence[str], *, input_kind: str, face_rule: str, batch_size: int = 64,
               device: torch.device = CPU, engine: str = "local", workers: int | None = None,
               ray_address: str | None = None, store: ChunkStore | None = None,
               progress: Callable[[Iterable, str, int], Iterable] | None = None,
               boxes: Sequence[Box | None] | None = None) -> ChunkResult:
    """Every image of `paths` through `audit_chunk`, by `engine`, as one `ChunkResult` in the order of `paths`.

    Args:
        boxes: Per image, its labelled face's box (x, y, w, h), or None to choose by `face_rule`.
        engine: "local" (this process) or "ray" (Ray Data actors, `workers` of them; all cores by default), which
            run on CPUs: a checkpoint on another device, or another `device`, is refused (ValueError).
        store: Where finished chunks are kept; those already there are not audited again.
        progress: Optional `(iterable, description, total) -> iterable` wrapper, moved one step per image.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "ray" and (devices := {device.type} | _parameter_devices(model)) != {"cpu"}:
        raise ValueError(f"engine 'ray' runs its actors on CPUs, so the model must be on the CPU and the device "
                         f"'cpu'; got {', '.join(sorted(devices))}: load the checkpoint with device=torch.device('cpu')")
    count = -(-len(paths) // CHUNK_ROWS)
    finished = store.done(count) if store else {}
    todo = {index: list(paths[index * CHUNK_ROWS : (index + 1) * CHUNK_ROWS]) for index in range(count)
            if index not in finished}
    todo_boxes = {index: list(boxes[index * CHUNK_ROWS : (index + 1) * CHUNK_ROWS]) for index in todo} if boxes else {}
    workers = workers or (CPUS if engine == "ray" else 1)
    threads = torch.get_num_threads() if engine == "local" else actor_threads(workers)
    options = {"input_kind": input_kind, "face_rule": face_rule, "batch_size": batch_size, "threads": threads,
               **({"device": device} if engine == "local" else {})}
    results = (_ray_chunks(model, todo, options, workers, ray_address, todo_boxes) if engine == "ray" and todo
               else _local_chunks(model, todo, options, todo_boxes))

    def per_image() -> Iterator[None]:  # a progress bar counts images, while the work comes back a chunk at a time
        for index, data in results:
            if store:
                store.save(index, data)
            finished[index] = ChunkResult.from_bytes(data)
            yield from (None for _ in finished[index].errors)

    remaining = sum(len(chunk) for chunk in todo.values())
    description = "auditing" + (f" (resumed: {len(paths) - remaining:,} of {len(paths):,} images done)"
                                if remaining < len(paths) else "")
    for _ in progress(per_image(), description, remaining) if progress else per_image():
        pass
    return ChunkResult.join([finished[index] for index in range(count)])
