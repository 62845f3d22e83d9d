"""Audit speed and memory of the two engines on FairFace's validation photos (detection + alignment + prediction,
duplicate grouping and writing the bundle: the whole `training.evaluate` command, timed from outside).

    python -m benchmarks.engines [--limit 2000] [--runs local ray:1 ray:2] [--nodes 10 100]

Each run is a fresh `python -m training.evaluate` process; its peak memory is the largest sum, over the process and
every process it started (Ray's raylet, object store and workers), of the proportional set size (shared pages split
between the processes that map them), sampled every 0.5 s. The start-up cost of each engine is its time on 16 photos;
its steady rate counts the photos of the chunks written after every worker's first chunk, until the last
(chunk files seen every 0.5 s); "after the last chunk" is what follows (shutting the engine down, duplicate grouping,
writing the bundle). An engine named more than once in --runs is compared by the means of its turns.
The projection for 1,000,000 photos assumes what the last lines print.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.config import REPO_ROOT, Settings, add_settings_arguments
from core.engine import CHUNK_ROWS, actor_threads


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _tree_pss_mb(pid: int) -> float:
    """Proportional set size of `pid` and all its descendants, in MB."""
    tree, todo, total = _children(), [pid], 0.0
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, []))
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def run(arguments: list[str], chunks: Path | None = None) -> tuple[float, float, list[float]]:
    """Wall seconds, peak memory (MB) and, when `chunks` names its chunk folder, the second at which each chunk
    was first seen there, of one `training.evaluate` run."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    start, peak, seen = time.perf_counter(), 0.0, {}
    process = subprocess.Popen([sys.executable, "-m", "training.evaluate", *arguments], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:
        peak = max(peak, _tree_pss_mb(process.pid))
        for chunk in chunks.glob("chunk-*.npz") if chunks else ():
            seen.setdefault(chunk.name, time.perf_counter() - start)
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"training.evaluate {' '.join(arguments)} failed:\n{process.stderr.read()[-3000:]}")
    return seconds, peak, sorted(seen.values())


def _manifest(settings: Settings, rows: int, folder: Path) -> Path:
    """The first `rows` FairFace validation photos as a manifest (absolute paths)."""
    root = settings.dataset_dir("fairface")
    labels = pd.read_csv(root / "fairface_label_val.csv").head(rows)
    path = folder / f"fairface-val-{rows}.csv"
    pd.DataFrame({"path": [str(root / file) for file in labels["file"]], "age_bin": labels["age"],
                  "gender": labels["gender"], "race": labels["race"]}).to_csv(path, index=False)
    return path


def _engine_flags(spec: str) -> list[str]:
    engine, _, workers = spec.partition(":")
    return ["--engine", engine, *(["--workers", workers] if workers else [])]


def _workers(spec: str, cores: int) -> int:
    """How many workers `engine[:workers]` runs (Ray's default: one per core)."""
    engine, _, workers = spec.partition(":")
    return int(workers or (cores if engine == "ray" else 1))


def _steady_rate(seen: list[float], images: int, workers: int) -> float:
    """Photos per second once every worker has finished its first chunk, until the last chunk (NaN below 4 chunks
    a worker: too few to tell from how Ray hands chunks back)."""
    if len(seen) < 4 * workers or seen[-1] <= seen[workers - 1]:
        return float("nan")
    return (images - workers * CHUNK_ROWS) / (seen[-1] - seen[workers - 1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="audit only the first N photos (default: all 10,954)")
    parser.add_argument("--runs", nargs="+", default=["local", "ray:1", "ray:2"], help="engine[:workers] to time")
    parser.add_argument("--nodes", nargs="+", type=int, default=[10, 100], help="cluster sizes for the projection")
    parser.add_argument("--cores-per-node", type=int, default=16)
    add_settings_arguments(parser, "data", "model")
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    cores = len(os.sched_getaffinity(0))
    print(f"# {platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        # speed only: the default model trained on part of FairFace val, which an audit otherwise refuses
        model = ["--model", str(settings.model_dir), "--data", str(settings.data_dir), "--allow-training-images"]
        images = (["--manifest", str(_manifest(settings, args.limit, folder))] if args.limit
                  else ["--dataset", "fairface-val"])
        n = args.limit or len(pd.read_csv(settings.dataset_dir("fairface") / "fairface_label_val.csv"))
        small = ["--manifest", str(_manifest(settings, 16, folder))]
        results: dict[str, list[tuple[float, float, float]]] = {}
        print("| engine | start-up (16 photos) | photos | wall | photos/s | steady photos/s | first chunk "
              "| after the last chunk | peak memory |")
        print("|---|---|---|---|---|---|---|---|---|")
        for spec in args.runs:
            startup, _, _ = run([*small, *model, *_engine_flags(spec), "--out", str(folder / f"small-{spec}")])
            seconds, peak, seen = run([*images, *model, *_engine_flags(spec), "--out", str(folder / spec)],
                                      chunks=folder / spec / ".chunks")
            steady = _steady_rate(seen, n, workers=_workers(spec, cores))
            results.setdefault(spec, []).append((startup, seconds, steady))
            first, last = (seen[0], seconds - seen[-1]) if seen else (float("nan"), float("nan"))
            print(f"| {spec} | {startup:.1f} s | {n:,} | {seconds:.0f} s | {n / seconds:.1f} | {steady:.1f} | "
                  f"{first:.0f} s | {last:.1f} s | {peak:,.0f} MB |", flush=True)
    means = {spec: [sum(values) / len(values) for values in zip(*turns)] for spec, turns in results.items()}
    if "local" in means:
        for spec, (startup, seconds, _) in means.items():
            if spec != "local":
                extra, extra_startup = seconds - means["local"][1], startup - means["local"][0]
                print(f"{spec} vs local: {extra:+.1f} s over {n:,} photos, start-up difference {extra_startup:+.1f} s, "
                      f"so {extra - extra_startup:+.1f} s beyond it (means of {len(results[spec])} and "
                      f"{len(results['local'])} turns)")
    ray_runs = {spec: value for spec, value in means.items() if spec.startswith("ray")}
    if ray_runs:
        spec, (_, _, steady) = max(ray_runs.items(), key=lambda item: _workers(item[0], cores))
        workers = _workers(spec, cores)
        per_core = steady / (workers * actor_threads(workers))
        print(f"\nProjection for 1,000,000 photos: {per_core:.1f} photos/s per core (from {spec}'s steady rate "
              f"here); every core audits at that rate, {args.cores_per_node} cores per node; images on storage every "
              "node reads as fast as they are audited; duplicate grouping not included (it runs on the "
              "driver afterwards: about 24 s for a million images, benchmarks/duplicate_scaling.py)")
        for nodes in args.nodes:
            hours = 1_000_000 / (per_core * args.cores_per_node * nodes) / 3600
            print(f"- {nodes} nodes ({nodes * args.cores_per_node} cores): {hours * 60:.1f} min + start-up")


if __name__ == "__main__":
    main()
