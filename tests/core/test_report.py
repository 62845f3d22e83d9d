import html
import io
import json
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import plotly
import pytest

from benchmarks._server import CHROMIUM, launch_chromium
from core import labels
from core.bundle import compute_metrics
from core.compare import bundle_note, compare_bundles
from core.report import (
    PLOTLY_JS_FILE,
    REPORT_SCHEMA,
    html_to_pdf,
    report_csv_zip,
    report_extras,
    report_html,
    report_json,
    report_tables,
)
from tests.bundle_fixture import mitigated_bundle, synthetic_bundle

HOSTILE = "<script>alert('x')</script>"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self.scripts_with_alert, self.current = [], 0, None

    def handle_starttag(self, tag, attrs):
        self.current = tag

    def handle_data(self, data):
        if self.current in ("h1", "h2", "h3"):
            self.headings.append(data)
        if self.current == "script" and data.strip() == "alert('x')":  # a script element injected by data text
            self.scripts_with_alert += 1


@pytest.fixture(scope="module")
def bundle():
    bundle = synthetic_bundle(600)  # Black women: n = 60, half misgendered
    bundle.metrics["dataset"] = HOSTILE
    frame = bundle.predictions
    frame["file"] = frame["file"].where(frame.index != 6, HOSTILE + ".jpg")  # a misgendered Black woman's file
    return bundle


def test_html_parses_has_sections_and_escapes_data_text(bundle):
    gallery, panels, _ = report_extras(bundle.predictions, bundle.metrics, None, thumbnails=30)  # all 30 mistakes
    assert gallery and all(uri.startswith("data:image/jpeg;base64,") for _, uri in gallery)
    assert any(caption.startswith(HOSTILE) for caption, _ in gallery)  # captions name the file, to find the image
    text = report_html(bundle.predictions, bundle.metrics, {"model": {"backbone": "test"}}, {"race": [HOSTILE]},
                       gallery=gallery, explanations=[("panel", np.zeros((8, 8, 3), np.uint8))])
    parser = _Collector()
    parser.feed(text)
    for section in ("Model card", "Headline metrics (95 % intervals)", "subgroups race x gender",
                    "Intersections: race × age bin",
                    "Confusion: gender", "Worst cohort: most confident mistakes", "Explanations",
                    "Our numbers beside public anchors"):
        assert section in parser.headings, section
    assert HOSTILE not in text and "&lt;script&gt;" in text
    assert parser.scripts_with_alert == 0
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=[\"']https?:", text)  # self-contained: nothing fetched


def test_json_validates_against_its_schema(bundle):
    report = json.loads(report_json(bundle.predictions, bundle.metrics, {}))
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["n"] == 600 and {"subgroups_race_x_gender", "subgroups_race_x_age_bin"} <= set(report["tables"])


def test_csv_zip_has_one_file_per_table(bundle):
    names = zipfile.ZipFile(io.BytesIO(report_csv_zip(bundle.predictions))).namelist()
    assert {"headline.csv", "subgroups_race.csv", "subgroups_race_x_gender.csv"} <= set(names)


def test_comparison_section_in_every_format(bundle):
    fixed = mitigated_bundle(600)
    comparison = compare_bundles({HOSTILE: bundle.predictions, "fixed": fixed.predictions},
                                 notes={HOSTILE: bundle_note(bundle.metrics), "fixed": bundle_note(fixed.metrics)})
    text = report_html(bundle.predictions, bundle.metrics, {}, {}, comparison=comparison)
    parser = _Collector()
    parser.feed(text)
    assert "Bundles compared" in parser.headings
    assert "Gender accuracy: share of faces whose gender is predicted right (higher is better)" in parser.headings
    assert HOSTILE not in text and parser.scripts_with_alert == 0
    assert "+0.250 (" in text  # Black: 30 of 120 misgendered before the fix, none after
    assert "mitigation: test fix" in text
    report = json.loads(report_json(bundle.predictions, bundle.metrics, {}, comparison))
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["compared_with"] == ["fixed"]
    black = next(r for r in report["tables"]["compare_by_race_gender_accuracy"] if r["race"] == "Black")
    assert black["delta fixed"] == pytest.approx(0.25) and black["delta fixed ci_low"] > 0
    names = zipfile.ZipFile(io.BytesIO(report_csv_zip(bundle.predictions, comparison))).namelist()
    assert {"compare_overall.csv", "compare_by_race_gender_accuracy.csv"} <= set(names)


def test_no_heatmap_when_every_intersection_is_small(bundle):
    text = report_html(bundle.predictions.iloc[:200], bundle.metrics, {}, {})  # under 30 faces per race x age bin
    assert "too few for a heatmap" in text
    assert text.count("Plotly.newPlot") == 2 + 3  # forest plots and confusion heatmaps, no intersection heatmaps
    assert report_html(bundle.predictions, bundle.metrics, {}, {}).count("Plotly.newPlot") == 2 + 3 + 3


def test_empty_selection_says_so(bundle):
    empty = bundle.predictions.iloc[0:0]
    assert "The selection is empty" in report_html(empty, bundle.metrics, {}, {"race": ["Nobody"]})
    report = json.loads(report_json(empty, bundle.metrics, {"race": ["Nobody"]}))
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["empty"] and report["tables"] == {}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_pdf_export(bundle, tmp_path):
    path = html_to_pdf(report_html(bundle.predictions, bundle.metrics, {}, {}), tmp_path / "r.pdf")
    assert path.read_bytes()[:5] == b"%PDF-" and path.stat().st_size > 10_000


def test_embedded_plotly_js_is_the_version_plotly_py_writes_for():
    bundled = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()[:200]
    version = re.search(r"plotly\.js v([\d.]+)", bundled).group(1)
    assert f"plotly.js (cartesian - minified) v{version}\n" in PLOTLY_JS_FILE.read_text()[:200], (
        f"plotly.py writes for plotly.js {version}: update core/assets/plotly-cartesian.min.js to that version")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_every_chart_draws_offline(bundle, tmp_path):
    from playwright.sync_api import sync_playwright

    comparison = compare_bundles({"before": bundle.predictions, "fixed": mitigated_bundle(600).predictions})
    path = tmp_path / "report.html"
    path.write_text(report_html(bundle.predictions, bundle.metrics, {}, {}, comparison=comparison))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        charts = page.locator(".plotly-graph-div").count()
        drawn = page.evaluate("document.querySelectorAll('.plotly-graph-div .main-svg').length > 0 && "
                              "[...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('.main-svg')).length")
        browser.close()
    assert not errors, errors
    # forest plots, race x age-bin heatmaps, confusion heatmaps, per compared metric its bars and its changes
    assert charts == 2 + 3 + 3 + 5 + 5 and drawn == charts


CHART_LABELS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(plot => {
  const frame = plot.querySelector('.main-svg').getBoundingClientRect();
  const labels = [...plot.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')].map(t => {
    const box = t.getBoundingClientRect();
    return {text: t.textContent, inside: box.left >= frame.left - 1 && box.right <= frame.right + 1
            && box.top >= frame.top - 1 && box.bottom <= frame.bottom + 1};
  });
  return {labels, xtitle: (plot.querySelector('.g-xtitle text') || {}).textContent || '',
          ytitle: (plot.querySelector('.g-ytitle text') || {}).textContent || '',
          bars: [...plot.querySelectorAll('.trace.bars')].map(t => getComputedStyle(t.querySelector('.point path')).fill)};
})"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_every_chart_is_readable_when_written_under_streamlit(bundle, tmp_path, monkeypatch):
    """The dashboard writes reports in a process where plotly's default template is Streamlit's."""
    import plotly.io as pio
    import streamlit  # noqa: F401  (registers its template)
    from playwright.sync_api import sync_playwright

    monkeypatch.setattr(pio.templates, "default", "streamlit")
    comparison = compare_bundles({"before": bundle.predictions, "fixed": mitigated_bundle(600).predictions,
                                  "also": mitigated_bundle(600).predictions})
    path = tmp_path / "report.html"
    path.write_text(report_html(bundle.predictions, bundle.metrics, {}, {}, comparison=comparison))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        charts = page.evaluate(CHART_LABELS)
        browser.close()
    clipped = [label["text"] for chart in charts for label in chart["labels"] if not label["inside"]]
    assert not clipped  # e.g. forest-plot groups cut to two letters
    assert all(chart["labels"] for chart in charts)
    confusions = [chart for chart in charts if chart["ytitle"].startswith("true ")]
    assert [c["ytitle"] for c in confusions] == ["true gender", "true race", "true age bin"]
    race = {label["text"] for label in confusions[1]["labels"]}
    assert {"White", "Black", "Asian", "Indian", "Others"} <= race  # class names on the axes
    bars = [chart["bars"] for chart in charts if chart["bars"]]
    assert bars and all(len(set(fills)) == 3 and "rgb(0, 0, 0)" not in fills for fills in bars)  # three bundles, three colours


def test_reports_carry_calibration_per_head_and_the_groups_furthest_off():
    bundle = synthetic_bundle(600)
    report = json.loads(report_json(bundle.predictions, bundle.metrics, {}))
    jsonschema.validate(report, REPORT_SCHEMA)
    overall = {row["head"]: row for row in report["tables"]["calibration_overall"]}
    assert set(overall) == {"gender", "race", "age_bin"} and overall["gender"]["n"] == 600
    by_group = {(row["race"], row["gender"]): row for row in report["tables"]["calibration_gender_by_race_x_gender"]}
    assert max(by_group, key=lambda key: by_group[key]["ece"]) == ("Black", "Female")  # the planted overconfidence
    page = report_html(bundle.predictions, bundle.metrics, {}, {})
    calibration = page[page.index("<h2>Calibration</h2>"):]
    assert "Black / Female" in calibration[:calibration.index("</table>")]


def test_calibration_furthest_off_is_told_by_fairfaces_seven_races_where_the_data_has_them():
    frame = synthetic_bundle(700).predictions
    frame["fairface_race"] = [labels.FAIRFACE_RACES[i % 7] for i in range(700)]
    frame["race"] = pd.Categorical([labels.FAIRFACE_TO_RACE[name] for name in frame["fairface_race"]],
                                   categories=labels.RACES)
    frame["pred_race"], frame["pred_race7"] = frame["race"], frame["fairface_race"]
    middle_eastern_women = (frame["fairface_race"] == "Middle Eastern") & (frame["gender"] == "Female")
    frame["pred_gender"] = frame["pred_gender"].mask(middle_eastern_women, "Male")  # every one, with 0.9 confidence
    frame.loc[middle_eastern_women, ["p_gender_Male", "p_gender_Female"]] = [0.9, 0.1]
    tables = report_tables(frame)
    assert {"calibration_gender_by_race_x_gender", "calibration_gender_by_fairface_race_x_gender"} <= set(tables)
    calibration = report_html(frame, compute_metrics(frame, 700), {}, {}).split("<h2>Calibration</h2>")[1]
    assert "Middle Eastern / Female" in calibration[:calibration.index("</table>")]
    assert "Others / Female" not in calibration[:calibration.index("</table>")]


def test_the_model_card_names_a_seven_class_race_head_and_fairface_training_data(bundle):
    frame = bundle.predictions.copy()
    metrics = bundle.metrics | {"model": {"trained_on": "UTKFace train split"}}
    five = report_html(frame, metrics, {}, {})
    frame["pred_race7"] = pd.Categorical(["East Asian"] * len(frame), categories=labels.FAIRFACE_RACES)
    seven = report_html(frame, metrics | {"model": {"trained_on": "UTKFace train split + FairFace val's train part"}}, {}, {})
    assert html.escape(labels.RACE_MAPPING_NOTE) in five and html.escape(labels.RACE7_NOTE) not in five
    assert html.escape(labels.race_note(True)) in seven
    assert "UTKFace skews White" in five and "FairFace was collected balanced" not in five
    assert "UTKFace skews White" in seven and "FairFace was collected balanced" in seven


def test_data_with_fairface_races_is_reported_by_the_seven_too(bundle):
    frame = bundle.predictions.copy()
    five = report_tables(frame)
    frame["fairface_race"] = pd.Categorical(np.where(frame["race"] == "Others", "Middle Eastern", "White"),
                                            categories=labels.FAIRFACE_RACES)
    frame["pred_race7"] = pd.Categorical(["White"] * len(frame), categories=labels.FAIRFACE_RACES)
    seven = report_tables(frame)
    assert "subgroups_fairface_race" not in five and "race7_accuracy" not in five["subgroups_race"]
    by_seven = seven["subgroups_fairface_race"]
    assert list(by_seven.index) == ["White", "Middle Eastern"]  # FairFace's order, not the alphabet's
    assert by_seven.loc["White", "race7_accuracy"] == 1.0 and by_seven.loc["Middle Eastern", "race7_accuracy"] == 0.0
    assert "subgroups_fairface_race_x_gender" in seven and "race7_accuracy" in seven["subgroups_race"]
    page = report_html(frame, bundle.metrics, {}, {})
    assert "<h2>subgroups fairface race</h2>" in page and "Race-7 accuracy" in page
