"""Dashboard responsiveness in a real headless Chromium on this machine (medians).

    python -m benchmarks.dashboard [--rounds 3]

- first render: from starting `streamlit run` to the Overview showing its metrics;
- page switch: from clicking a page in the sidebar to that page finished rendering;
- upload -> prediction + Grad-CAM: from handing the browser a photo to the prediction and its Grad-CAM
  shown (LIME and IG run only on their button);
- on the UTKFace test bundle (opened by a link, `?bundle=utkface-test`): the Data page, from the link to
  the page finished; the Report page, from the link to its download buttons ready; then each of HTML and
  PDF from the click to the file received (built on the click).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from playwright.sync_api import sync_playwright

from benchmarks._server import dashboard, launch_chromium
from core.config import REPO_ROOT

PAGES = ["Data", "Subgroup metrics", "Confusion", "Error gallery", "Overview"]
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    first, switches, uploads, data, report, html, pdf = [], [], [], [], [], [], []
    photos = sorted((REPO_ROOT / "samples").glob("*.jpg"))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for _ in range(args.rounds):
            started = time.perf_counter()
            with dashboard() as (url, _, _):
                page = browser.new_page(viewport={"width": 1400, "height": 1200})
                page.set_default_timeout(120_000)
                page.goto(url)
                page.get_by_text("faces audited").first.wait_for()
                page.get_by_text("Worst groups at a glance").wait_for()
                first.append(time.perf_counter() - started)
                page.wait_for_function(IDLE)
                for title in PAGES:
                    clicked = time.perf_counter()
                    page.get_by_role("link", name=title, exact=True).click()
                    page.get_by_role("heading", level=1, name=title if title != "Subgroup metrics" else "Subgroup metrics").wait_for()
                    page.wait_for_function(IDLE)
                    switches.append(time.perf_counter() - clicked)
                page.get_by_role("link", name="Inspect a photo", exact=True).click()
                page.get_by_role("heading", level=1, name="Inspect a photo").wait_for()
                page.wait_for_function(IDLE)
                for photo in photos:
                    handed = time.perf_counter()
                    page.locator("input[type='file']").set_input_files(str(photo))
                    page.get_by_text(f"{photo.name}: 1 face(s)").wait_for()
                    page.get_by_text("Explained value on this chip").wait_for()  # Grad-CAM is drawn above it
                    uploads.append(time.perf_counter() - handed)
                    page.wait_for_function(IDLE)
                page.close()
                page = browser.new_page(viewport={"width": 1400, "height": 1200}, accept_downloads=True)
                page.set_default_timeout(180_000)
                for name, times in (("data", data), ("report", report)):
                    opened = time.perf_counter()
                    page.goto(f"{url}/{name}?bundle=utkface-test")
                    page.get_by_role("heading", level=1, name=name.title()).wait_for()
                    page.get_by_role("button", name="Download PDF").wait_for() if name == "report" else None
                    page.wait_for_function(IDLE)
                    times.append(time.perf_counter() - opened)
                for label, times in (("Download HTML", html), ("Download PDF", pdf)):
                    clicked = time.perf_counter()
                    with page.expect_download() as download:
                        page.get_by_role("button", name=label).click()
                    download.value.path()  # the whole file received
                    times.append(time.perf_counter() - clicked)
                page.close()
        browser.close()
    print(f"first render of Overview (server start -> metrics shown): median {statistics.median(first):.2f} s "
          f"over {len(first)} starts")
    print(f"page switch: median {statistics.median(switches):.2f} s over {len(switches)} switches "
          f"(max {max(switches):.2f} s)")
    print(f"upload -> prediction + Grad-CAM: median {statistics.median(uploads):.2f} s over {len(uploads)} uploads")
    for name, times in (("Data page, utkface-test (by link)", data), ("Report page interactive, utkface-test (by link)", report),
                        ("HTML report built and received, utkface-test", html),
                        ("PDF report built and received, utkface-test", pdf)):
        print(f"{name}: median {statistics.median(times):.2f} s over {len(times)}")
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
