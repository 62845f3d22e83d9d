"""Time to build a bias report of the UTKFace test split with its two mitigations compared (medians).

    python -m benchmarks.report [--rounds 3]

Steps timed separately: comparing the three bundles (paired bootstrap, 5 metrics x 5 races), the
HTML (tables with bootstrap intervals, charts; no thumbnails), JSON, and printing the HTML to PDF
with headless Chromium. Prints the sizes of the HTML and PDF too.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from core.bundle import read_bundle
from core.compare import bundle_note, compare_bundles
from core.config import Settings
from core.report import html_to_pdf, report_html, report_json

BUNDLES = ["utkface-test", "utkface-test-equalerror", "utkface-test-thresholdopt"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    audits = Settings.from_env().model_dir / "audits"
    bundles = {name: read_bundle(audits / name) for name in BUNDLES}
    reference = bundles[BUNDLES[0]]
    timings: dict[str, list[float]] = {"compare": [], "html": [], "json": [], "pdf": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        comparison = compare_bundles({name: b.predictions for name, b in bundles.items()},
                                     notes={name: bundle_note(b.metrics) for name, b in bundles.items()})
        timings["compare"].append(time.perf_counter() - started)
        started = time.perf_counter()
        html = report_html(reference.predictions, reference.metrics, {}, {}, comparison=comparison)
        timings["html"].append(time.perf_counter() - started)
        started = time.perf_counter()
        report_json(reference.predictions, reference.metrics, {}, comparison)
        timings["json"].append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            pdf = html_to_pdf(html, Path(folder) / "report.pdf")
            timings["pdf"].append(time.perf_counter() - started)
            pdf_size = pdf.stat().st_size
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"{len(reference.predictions):,} faces, {len(BUNDLES)} bundles, {args.rounds} rounds")
    for step, values in timings.items():
        print(f"{step:8s} median {statistics.median(values):6.2f} s   (all: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"sizes: HTML {len(html.encode()) / 1e6:.2f} MB, PDF {pdf_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
