"""Memory of the dashboard's server process while a user uploads photos in a real headless Chromium.

    python -m benchmarks.memory [--uploads 10]

Each upload goes through the Inspect page: decoding, detection, prediction, and the page's
explanations (Grad-CAM, Integrated Gradients, LIME with 1,000 samples). For each upload kind the
script prints the server's peak resident memory during that upload (Linux VmHWM, reset before each
upload) and its resident memory once the page is idle; then the same after `--uploads` photos in a row.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from benchmarks._server import dashboard, launch_chromium
from core.config import REPO_ROOT

IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# What the Inspect page finally shows for each outcome of an upload.
OUTCOMES = {"refused": "Cannot use", "no face": "No face found", "explained": "Explained value on this chip"}
EMPTY = "Upload a photo or pick a sample."


def _status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def upload_kinds(folder: Path) -> dict[str, Path]:
    """Files for each upload kind, made from a CC BY sample portrait (the faces stay findable)."""
    portrait = Image.open(sorted((REPO_ROOT / "samples").glob("*.jpg"))[0]).convert("RGB")
    files = {}

    def save(name: str, image: Image.Image, **options) -> None:
        files[name] = folder / name.split(" ")[-1].strip("()")
        image.save(files[name], **options)

    save("portrait JPEG (sample.jpg)", portrait, quality=95)
    save("24 MP JPEG (24mp.jpg)", portrait.resize((6000, 4000)), quality=85)
    save("48 MP JPEG (48mp.jpg)", portrait.resize((8000, 6000)), quality=70)
    grey = np.asarray(portrait.convert("L").resize((6000, 6000)), dtype=np.uint16) * 257
    save("36 MP 16-bit PNG (36mp16.png)", Image.fromarray(grey), compress_level=1)
    ramp = (np.add.outer(np.arange(10_900, dtype=np.uint32), np.arange(10_900)) % 65536).astype(np.uint16)
    save("119 MP 16-bit PNG, the issue's case (119mp16.png)", Image.fromarray(ramp))
    float_grey = np.asarray(portrait.convert("L").resize((2000, 1500)), dtype=np.float32) / 255
    save("3 MP 32-bit float TIFF (float.tif)", Image.fromarray(float_grey, "F"))
    return files


def _upload(page, pid: int, path: Path) -> tuple[str, dict[str, float]]:
    """Upload `path` on a cleared Inspect page; wait until the page has finished with it."""
    remove = page.locator("[data-testid='stFileChipDeleteBtn'] button")
    if remove.count():
        remove.first.click()
    page.get_by_text(EMPTY).wait_for()
    page.wait_for_function(IDLE)
    _reset_peak(pid)
    page.locator("input[type='file']").set_input_files(str(path))
    page.wait_for_function("texts => texts.some(text => document.body.innerText.includes(text))",
                           arg=list(OUTCOMES.values()))
    page.wait_for_function(IDLE)
    text = page.locator("body").inner_text()
    return next(outcome for outcome, shown in OUTCOMES.items() if shown in text), _status(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=10)
    args = parser.parse_args()
    london = sorted((REPO_ROOT.parent / "shared" / "data" / "london_set" / "neutral_front").glob("*.jpg"))
    photos = (london or sorted((REPO_ROOT / "samples").glob("*.jpg")))[: args.uploads]
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        kinds = upload_kinds(Path(folder))
        browser = launch_chromium(playwright)
        with dashboard() as (url, _, pid):
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(300_000)
            page.goto(url)
            page.get_by_role("link", name="Inspect a photo", exact=True).click()
            page.get_by_role("heading", level=1, name="Inspect a photo").wait_for()
            page.wait_for_function(IDLE)
            start = _status(pid)["VmRSS"]
            print(f"server resident memory with the Inspect page open: {start:,.0f} MB")
            print(f"{'upload kind':52} {'file MB':>8} {'outcome':>10} {'peak MB':>8} {'after MB':>9} {'seconds':>8}")
            for name, path in kinds.items():
                started = time.perf_counter()
                outcome, status = _upload(page, pid, path)
                print(f"{name:52} {path.stat().st_size / 1e6:8.1f} {outcome:>10} {status['VmHWM']:8,.0f} "
                      f"{status['VmRSS']:9,.0f} {time.perf_counter() - started:8.1f}")
            _reset_peak(pid)
            before = _status(pid)["VmRSS"]
            peaks = []
            for photo in photos:
                outcome, status = _upload(page, pid, photo)
                peaks.append(status["VmHWM"])
            after = _status(pid)
            print(f"{len(photos)} London-set uploads in a row, each explained: resident {before:,.0f} -> "
                  f"{after['VmRSS']:,.0f} MB, peak {max(peaks):,.0f} MB")
            page.close()
        browser.close()
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
