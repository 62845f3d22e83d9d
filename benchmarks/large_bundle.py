"""A million-row bundle in the dashboard: every page, opened by link in a real headless Chromium, timed until idle.

    python -m benchmarks.large_bundle [--rows 1000000] [--source fairface-test] [--rounds 2]

Makes a synthetic bundle of `--rows` faces by drawing rows (with replacement) from a shipped bundle of the default
model, each row a face of its own (its own file name and duplicate group; the photo is the drawn row's), written in
parts as the Ray engine writes them; its metrics.json and stored Overview are computed as an audit computes them
(timed). Then a dashboard on a model folder holding only that bundle. The first page (Overview) shows the stored
Overview and then reads the bundle's rows on a thread of its own; later pages find them cached.

A page's time runs from opening its link until the browser shows its run finished (target 3 s); "server idle" runs
until the server last used CPU before a quiet second (after the Overview: when its read of the rows ended). Each
page opens once the server is idle; then, on a fresh server, Data is opened at once after the Overview, not waiting
for that read. Also prints the server's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from benchmarks._server import dashboard, launch_chromium
from core.bundle import UNSHOWN_COLUMNS, Bundle, compute_metrics, read_bundle, write_bundle
from core.config import REPO_ROOT

# (url path, heading) of every page that reads the bundle, as app.py names them
PAGES = [("", "Overview"), ("data", "Data"), ("subgroups", "Subgroup metrics"), ("confusion", "Confusion"),
         ("calibration", "Calibration"), ("gallery", "Error gallery"), ("error_analysis", "Error analysis"),
         ("cohorts", "Cohorts"), ("saliency", "Where the model looks, per group"), ("compare", "Compare bundles"),
         ("report", "Report")]
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# The app's script run is over (Streamlit marks its root element with the run's state)
RUN_OVER = "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'"
NAME = "synthetic"


def synthetic_bundle(source: Bundle, rows: int, seed: int = 0) -> tuple[Bundle, float]:
    """`rows` faces drawn from `source`, each its own; and the seconds `compute_metrics` took on them."""
    picks = np.random.default_rng(seed).integers(0, len(source.predictions), rows)
    frame = source.predictions.iloc[picks].reset_index(drop=True)
    frame["file"] = [f"{index:07d}-{file}" for index, file in enumerate(frame["file"])]
    frame = frame.assign(dup_group=np.arange(rows), dup_group_size=1, label_conflict=False)
    started = time.perf_counter()
    metrics = compute_metrics(frame, rows)
    seconds = time.perf_counter() - started
    keep = ("model_id", "model", "model_backbone", "image_root", "input_kind", "face_rule")
    metrics |= {key: source.metrics.get(key) for key in keep} | {
        "dataset": f"{NAME} ({rows:,} rows drawn from {source.metrics.get('dataset')})", "notes": [],
        "multi_face_images": int(frame["multi_face"].sum()), "command": "python -m benchmarks.large_bundle"}
    return Bundle(predictions=frame, metrics=metrics, rejects=source.rejects.iloc[0:0]), seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, quiet: float = 1.0) -> float:
    """Wait until the server has used no CPU for `quiet` seconds; return when it was last busy. (The browser may
    look idle before the server has finished a run, and a closed tab's run goes on: both would skew a page's time.)"""
    last, busy = _cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() - busy < quiet:
        time.sleep(0.1)
        now = _cpu_seconds(pid)
        if now - last > 0.02:
            busy = time.perf_counter()
        last = now
    return busy


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_page(browser, url: str, path: str, title: str, timeout: float) -> tuple[float, str | None, Page]:
    """Open a page by link in a new tab: seconds until the browser shows its run over (inf if not within `timeout`),
    the text of an exception it shows if any, and the tab (the caller closes it)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.set_default_timeout(timeout * 1000)
    started = time.perf_counter()
    try:
        page.goto(f"{url}/{path}?bundle={NAME}")
        page.get_by_role("heading", level=1, name=title).wait_for()
        page.wait_for_function(RUN_OVER)
        page.wait_for_function(IDLE)
        seconds = time.perf_counter() - started
    except PlaywrightTimeout:
        seconds = float("inf")
    error = page.locator("[data-testid='stException']")
    return seconds, error.first.inner_text()[:300] if error.count() else None, page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--source", default="fairface-test", help="a bundle of models/default/audits to draw rows from")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a page counts as not rendering")
    args = parser.parse_args(argv)
    default = REPO_ROOT / "models" / "default"
    print(f"# {platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        model_dir = Path(folder) / "model"
        (model_dir / "audits").mkdir(parents=True)
        for file in default.iterdir():
            if file.is_file():
                (model_dir / file.name).symlink_to(file)
        bundle, seconds = synthetic_bundle(read_bundle(default / "audits" / args.source), args.rows)
        started = time.perf_counter()
        write_bundle(bundle, model_dir / "audits" / NAME, part_rows=100_000)
        written = time.perf_counter() - started
        reads = []
        for leave_out in ((), UNSHOWN_COLUMNS):  # whole, and as the dashboard reads it
            started = time.perf_counter()
            read_bundle(model_dir / "audits" / NAME, leave_out=leave_out)
            reads.append(time.perf_counter() - started)
        print(f"{args.rows:,} rows: metrics.json computed in {seconds:.1f} s; written with its Overview in "
              f"{written:.1f} s; read_bundle {reads[0]:.2f} s, without {', '.join(UNSHOWN_COLUMNS)} {reads[1]:.2f} s")
        rendered: dict[str, list[float]] = {title: [] for _, title in PAGES}
        idle: dict[str, list[float]] = {title: [] for _, title in PAGES}
        errors: dict[str, str] = {}
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            with dashboard({"FACEAUDIT_MODEL": str(model_dir)}) as (url, _, pid):
                for _ in range(args.rounds):
                    for path, title in PAGES:
                        wait_until_idle(pid)
                        started = time.perf_counter()
                        seconds, error, page = open_page(browser, url, path, title, args.timeout)
                        rendered[title].append(seconds)
                        idle[title].append(max(seconds, wait_until_idle(pid) - started))
                        if error:
                            errors[title] = error
                        print(f"{title}: {seconds:.2f} s (server idle {idle[title][-1]:.2f} s)", flush=True)
                        page.close()
                peak = _peak_mb(pid)
            with dashboard({"FACEAUDIT_MODEL": str(model_dir)}) as (url, _, pid):
                wait_until_idle(pid)
                first, _, overview_page = open_page(browser, url, "", "Overview", args.timeout)
                at_once, _, data_page = open_page(browser, url, "data", "Data", args.timeout)
                overview_page.close()
                data_page.close()
    print("| page | first open | server idle after it | median of later opens |")
    print("|---|---|---|---|")
    for title, values in rendered.items():
        later = statistics.median(values[1:]) if len(values) > 1 else float("nan")
        print(f"| {title} | {values[0]:.2f} s | {idle[title][0]:.2f} s | {later:.2f} s |")
    print(f"fresh server: Overview {first:.2f} s, then Data opened at once (waits for the read of the rows) "
          f"{at_once:.2f} s")
    print(f"server peak memory {peak:,.0f} MB")
    for title, error in errors.items():
        print(f"error on {title}: {json.dumps(error)}")


if __name__ == "__main__":
    main()
