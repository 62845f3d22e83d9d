"""Exportable bias reports of an audit bundle: JSON (versioned), CSV per table, self-contained HTML."""

from __future__ import annotations

import base64
import html
import io
import json
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image

from core import labels
from core.bundle import (
    bundle_title,
    checkpoint_id,
    chosen_box,
    csv_safe,
    imported_from,
    provenance,
    resolve_image,
)
from core.calibration import calibrated_heads, calibration_table
from core.charts import comparison_bars, confusion_heatmap, delta_chart, forest_plot, intersection_heatmap
from core.compare import Comparison, describe, verdict
from core.fairness import (
    CONFUSION_TITLES,
    CONFUSIONS,
    HEADLINE_METRICS,
    MAX_GROUP_VALUES,
    METRIC_TERMS,
    SMALL_N,
    SelectionError,
    cluster_column,
    confusion,
    confusion_heads,
    group_label,
    grouping_columns,
    headline_metrics,
    interval_note,
    overall_metrics,
    race_x_gender,
    subgroup_metrics,
    with_race7,
    worst_group,
)
from core.gallery import face_thumbnail, mistakes
from core.glossary import glossary, plain_name

__all__ = ["REPORT_SCHEMA_VERSION", "REPORT_SCHEMA", "PUBLIC_ANCHORS", "report_tables", "report_json", "report_csv_zip", "report_html",
           "thumbnail", "CHROMIUM", "missing_chromium", "html_to_pdf", "report_extras", "groupings", "PLOTLY_JS_FILE"]

REPORT_SCHEMA_VERSION = "faceaudit-report/1"
# plotly.js's "cartesian" bundle (bar, scatter, heatmap; MIT, see plotly-cartesian.LICENSE), the same version as
# plotly.py's full bundle at a third of its size: reports embed it once and stay self-contained.
PLOTLY_JS_FILE = Path(__file__).with_name("assets") / "plotly-cartesian.min.js"
# JSON Schema of `report_json`'s output.
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "dataset", "model_id", "filters", "n", "empty", "tables"],
    "properties": {
        "schema": {"const": REPORT_SCHEMA_VERSION},
        "dataset": {"type": ["string", "null"]},
        "model_id": {"type": ["string", "null"]},
        "filters": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "n": {"type": "integer", "minimum": 0},
        "empty": {"type": "boolean"},
        "tables": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}},
        "compared_with": {"type": "array", "items": {"type": "string"}},
        "group_by": {"type": "array", "items": {"type": "string"}},
        "intervals": {"type": "string"},
        "provenance": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
# Published numbers to read ours against, with how their protocol differs from ours.
PUBLIC_ANCHORS = [
    ("UTKFace age MAE, best published", "3.87", "other splits and crops; not our duplicate-aware split"),
    ("UTKFace age MAE, ResNet-50", "4.38", "other split; 224 px input"),
    ("UTKFace, earlier FaceAudit seeds", "4.7 MAE / 92 % gender / 81 % race", "random split, duplicates could straddle it"),
    ("EfficientNet-Lite0, 5 epochs, 128 px, CPU", "4.61 / 93.6 % / 85.6 %", "random split, flip TTA"),
]
_SUBGROUP = ["gender_accuracy", "race_accuracy", "age_bin_accuracy", "age_mae", "signed_age_error",
             "false_female_rate", "false_male_rate"]
REPORT_TEMPLATE = "plotly_white"  # reports never use the template of the process that writes them (see `_chart`)
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; used for PDF export (and the browser tests)


# FairFace's seven races (`fairface_race`) where the data has them: "Others" of the five describes no single group
_DEFAULT_GROUPINGS = (["race"], ["fairface_race"], ["gender"], ["age_bin"], ["race", "gender"], ["fairface_race", "gender"],
                      ["race", "age_bin"])


def subgroup_metric_names(frame: pd.DataFrame) -> list[str]:
    """The report's per-group metrics: race-7 accuracy too where the model predicts the seven and the data has them."""
    return with_race7(_SUBGROUP, frame)


def groupings(frame: pd.DataFrame, group_by: list[str] | None = None) -> list[list[str]]:
    """The groupings a report holds: the labels' five, then each `group_by` column and their intersection.

    Raises:
        SelectionError: a `group_by` column the audit cannot group by, naming those it can.
    """
    valid = grouping_columns(frame)
    unknown = [column for column in group_by or [] if column not in valid]
    if unknown:
        raise SelectionError(f"cannot group by {', '.join(map(repr, unknown))}; columns with at most "
                             f"{MAX_GROUP_VALUES} values: {', '.join(valid)}")
    chosen = [by for by in _DEFAULT_GROUPINGS if all(frame[c].notna().any() for c in by if c in frame.columns)
              and all(c in frame.columns for c in by)]
    extra = [[column] for column in group_by or []]
    if group_by and len(group_by) > 1:
        extra.append(list(group_by[:3]))  # intersections of up to three columns
    return chosen + [by for by in extra if by not in chosen]


def _name(by: list[str]) -> str:
    return "subgroups_" + "_x_".join(by)


def report_tables(frame: pd.DataFrame, comparison: Comparison | None = None,
                  group_by: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Headline metrics, one subgroup table per grouping (see `groupings`) and the worst group of each.

    With a `comparison` (whose reference is `frame`): `compare_overall` and one `compare_by_<by>_<metric>` per metric.
    """
    if frame.empty:
        return {}
    tables = {"headline": overall_metrics(frame, headline_metrics(frame))}
    worst_rows, metrics = [], subgroup_metric_names(frame)
    for by in groupings(frame, group_by):
        table = subgroup_metrics(frame, by, metrics, rounds=200).table
        tables[_name(by)] = table
        for metric in metrics:
            worst = worst_group(table, metric)
            if worst is not None:
                worst_rows.append({"grouping": " × ".join(by), "metric": metric, "worst group": worst["label"],
                                   "value": worst["value"], "ci_low": worst["ci_low"], "ci_high": worst["ci_high"],
                                   "n": worst["n"]})
    tables["worst_groups"] = pd.DataFrame(worst_rows, columns=["grouping", "metric", "worst group", "value", "ci_low",
                                                               "ci_high", "n"])
    calibrated = calibrated_heads(frame)
    if calibrated:
        tables["calibration_overall"] = pd.concat([calibration_table(frame, head).assign(head=head).set_index("head")
                                                   for head in calibrated])
        for head in calibrated:  # race × gender; by FairFace's seven too where the data has them (`race_x_gender`)
            for by in dict.fromkeys(map(tuple, (["race", "gender"], race_x_gender(frame)))):
                tables[f"calibration_{head}_by_{'_x_'.join(by)}"] = calibration_table(frame, head, list(by))
    if comparison is not None:
        tables["compare_overall"] = comparison.overall
        by = "_x_".join(comparison.by)
        for metric, table in comparison.by_group.items():
            tables[f"compare_by_{by}_{metric}"] = table
    return tables


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    flat = table.reset_index()
    flat.columns = [str(c) for c in flat.columns]
    return json.loads(flat.to_json(orient="records"))


def report_json(frame: pd.DataFrame, bundle_metrics: dict[str, Any], filters: dict[str, list[str]],
                comparison: Comparison | None = None, group_by: list[str] | None = None) -> str:
    """Every metric of the report as JSON (`schema`: REPORT_SCHEMA_VERSION), with the bundle's provenance."""
    tables = report_tables(frame, comparison, group_by)
    report = {
        "schema": REPORT_SCHEMA_VERSION, "dataset": bundle_metrics.get("dataset"), "model_id": bundle_metrics.get("model_id"),
        "provenance": provenance(bundle_metrics), "filters": filters, "group_by": list(group_by or []),
        "intervals": interval_note(cluster_column(frame)), "n": len(frame), "empty": frame.empty,
        "tables": {name: _records(table) for name, table in tables.items()},
    }
    if comparison is not None:
        report["compared_with"] = comparison.names[1:]
    return json.dumps(report, indent=2)


def report_csv_zip(frame: pd.DataFrame, comparison: Comparison | None = None, group_by: list[str] | None = None) -> bytes:
    """A zip with one CSV per report table."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, table in report_tables(frame, comparison, group_by).items():
            archive.writestr(f"{name}.csv", csv_safe(table.reset_index()).to_csv(index=False))
    return buffer.getvalue()


def _cell(value: float, low: float | None = None, high: float | None = None) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    if low is None or pd.isna(low):
        return f"{value:.3f}"
    return f"{value:.3f} ({low:.3f}–{high:.3f})"


def _table_html(table: pd.DataFrame, metrics: list[str]) -> str:
    """One column per metric, each cell 'value (95 % CI)'; n and the small-n flag first."""
    shown = pd.DataFrame(index=[group_label(k) for k in table.index])
    if "n" in table.columns:
        shown["n"] = table["n"].astype(int).to_numpy()
    if "small_n" in table.columns:
        shown["small n"] = np.where(table["small_n"], "yes", "")
    for metric in metrics:
        if metric in table.columns:
            low, high = table.get(f"{metric}_ci_low"), table.get(f"{metric}_ci_high")
            shown[plain_name(metric)] = [_cell(v, None if low is None else low.iloc[i], None if high is None else high.iloc[i])
                             for i, v in enumerate(table[metric])]
    return shown.to_html(escape=True, classes="metrics")


def thumbnail(path: str | Path, side: int = 96, box: tuple[float, float, float, float] | None = None) -> str:
    """A small JPEG of an image as a data URI, for embedding in the HTML report; `box` (x, y, w, h) is outlined."""
    image = Image.fromarray(face_thumbnail(path, box, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def report_html(frame: pd.DataFrame, bundle_metrics: dict[str, Any], model_meta: dict[str, Any],
                filters: dict[str, list[str]], *, gallery: list[tuple[str, str]] | None = None,
                explanations: list[tuple[str, np.ndarray]] | None = None, comparison: Comparison | None = None,
                group_by: list[str] | None = None, explanation_note: str = "") -> str:
    """A self-contained HTML report (charts embedded, plotly.js inlined, works offline). Data text is escaped.

    Args:
        model_meta: The loaded model's config.json; used only where the bundle predates its own model card and
            the loaded model is the one that made it.
        group_by: The auditor's own grouping columns (e.g. `["skin", "gender"]`): a table for each, their
            intersection, its worst cell, a forest plot and (for two columns) heatmaps.
        gallery: (caption, data URI) thumbnails of the worst cohort's most confident mistakes.
        explanations: (caption, RGB overlay array) explanation panels.
        explanation_note: What the panels show or why there are none (`report_extras`).
        comparison: Other bundles against this one (`core.compare.compare_bundles`, this frame first): a
            "Bundles compared" section.
    """
    esc = html.escape
    title = f"FaceAudit report — {bundle_title(bundle_metrics)}"
    chosen = "; ".join(f"{k}: {', '.join(v)}" for k, v in filters.items() if v) or "none"
    card = bundle_metrics.get("model") or {}
    if not card.get("trained_on") and checkpoint_id(model_meta) == bundle_metrics.get("model_id"):
        card = {"trained_on": model_meta.get("trained_on")}  # an older bundle: the loaded model is the one that made it
    origin = provenance(bundle_metrics)
    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>Filters: {esc(chosen)}; {len(frame):,} faces, {bundle_metrics.get('n_rejected', 0):,} images rejected. "
             f"{esc(interval_note(cluster_column(frame)))}</p>",
             "<h2>Provenance</h2><table class='metrics'>" + "".join(
                 f"<tr><th>{esc(key)}</th><td style='text-align:left'>{esc(value)}</td></tr>" for key, value in origin.items())
             + "</table>",
             "<h2>Model card</h2><ul>"
             f"<li><b>Model</b>: {esc(origin['model'])}, id <code>{esc(origin['model id'])}</code>; mitigation: "
             f"{esc(origin['mitigation'])}.</li>"
             "<li><b>Intended use</b>: assessing subgroup disparities of an age/gender/race classifier on labeled "
             "images before deployment; research and audit.</li>"
             "<li><b>Out of scope</b>: inferring anyone's gender or race identity; decisions about individuals; "
             "surveillance.</li>"
             f"<li><b>Training data</b>: {esc(str(card.get('trained_on') or 'not recorded in this bundle'))}"
             + (" — UTKFace skews White (42 %) and 20–39 years; Others is 7 %." if "UTKFace" in str(card.get("trained_on"))
                else "") + (" FairFace was collected balanced across its seven races." if "FairFace" in
                            str(card.get("trained_on")) else "") + "</li>"
             f"<li><b>Race labels</b>: {esc(labels.race_note('pred_race7' in frame))}</li>"
             "<li><b>Gender</b> is a binary label as annotated in the datasets, not a self-identified gender.</li></ul>"]
    if frame.empty:
        parts.append("<p><b>The selection is empty: no faces match the filters, so there are no metrics.</b></p>")
    else:
        tables = report_tables(frame, group_by=group_by)
        headline = tables["headline"].rename(columns={"ci_low": "value_ci_low", "ci_high": "value_ci_high"})
        parts.append("<h2>Headline metrics (95 % intervals)</h2>" + _table_html(headline, ["value"]))
        parts.append(_worst_html(tables["worst_groups"], group_by))
        for name, table in tables.items():
            if name.startswith("subgroups_") and name != "subgroups_race_x_age_bin":  # that one is shown as heatmaps
                parts.append(f"<div class='keep'><h2>{esc(name.replace('_', ' '))}</h2><p><small>value (95 % interval); "
                             f"small n: fewer than {SMALL_N} faces, unstable.</small></p>"
                             + _table_html(table, subgroup_metric_names(frame)) + "</div>")
        custom = list(group_by[:3]) if group_by else None  # the auditor's own columns, intersected
        for by in [race_x_gender(frame)] + ([custom] if custom and custom != race_x_gender(frame) else []):
            table = tables.get(_name(by))
            for metric in ("gender_accuracy", "age_mae"):
                if table is not None and table[metric].notna().any():
                    overall = float(tables["headline"].loc[metric, "value"])
                    parts.append(_chart(forest_plot(table, metric, overall=overall)))
        for by in [["race", "age_bin"]] + ([custom] if custom and len(custom) == 2 else []):
            if _name(by) in tables:
                parts.append(_heatmaps_html(tables[_name(by)], by))
        for head in confusion_heads(frame):  # with FairFace labels also their seven races
            if frame[CONFUSIONS[head][0]].notna().any():
                table = confusion(frame, head, normalize=True)
                parts.append(f"<h2>Confusion: {CONFUSION_TITLES[head]}</h2>" + _chart(confusion_heatmap(table, normalized=True)))
        if "calibration_overall" in tables:
            parts.append(_calibration_html(tables))
    if gallery:
        parts.append("<h2>Worst cohort: most confident mistakes</h2><div class='gallery'>" + "".join(
            f"<figure><img src='{uri}' alt=''><figcaption>{esc(caption)}</figcaption></figure>" for caption, uri in gallery)
            + f"</div><p><small>Thumbnails come from the audited dataset ({esc(str(bundle_metrics.get('dataset')))}) "
            "and remain under that dataset's licence and attribution.</small></p>")
    if explanations or (gallery and explanation_note):
        parts.append("<h2>Explanations</h2>" + (f"<p>{esc(explanation_note)}</p>" if explanation_note else "")
                     + "<p><small>Colour: evidence for the explained class, from none (left) to the map's strongest "
                     "(its 99th percentile, right); each map is scaled on its own.</small></p><div class='scale'></div>"
                     + "<div class='gallery'>")
        for caption, image in explanations or []:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            parts.append(f"<figure><img src='{uri}' alt=''><figcaption>{esc(caption)}</figcaption></figure>")
        parts.append("</div>")
    if comparison is not None and not frame.empty:
        parts.append(_comparison_html(comparison))
    ours = ", ".join(f"{name} {_cell(bundle_metrics.get(name))}" for name in HEADLINE_METRICS)
    anchors = [(f"this model on {bundle_metrics.get('dataset')}", ours, "FaceAudit's protocol (this report)"),
               *PUBLIC_ANCHORS]
    parts.append("<h2>Our numbers beside public anchors</h2><table class='metrics'><tr><th>anchor</th><th>result</th>"
                 "<th>protocol difference</th></tr>" + "".join(
                     f"<tr><td>{esc(a)}</td><td>{esc(b)}</td><td>{esc(c)}</td></tr>" for a, b, c in anchors)
                 + "</table><p>" + esc(_anchor_note(bundle_metrics)) + "</p>")
    terms = glossary()
    parts.append("<h2>Glossary</h2><table class='metrics glossary'><tr><th>term</th><th>meaning</th><th>better</th></tr>"
                 + "".join(f"<tr><td>{esc(t.name)}</td><td>{esc(t.definition)}</td><td>{esc(t.good or '—')}</td></tr>"
                           for t in terms.values()) + "</table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#212529}"
             "table.metrics{border-collapse:collapse;font-size:11px}table.metrics td,table.metrics th"
             "{border:1px solid #dee2e6;padding:3px 6px;text-align:right}"
             ".gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:110px;font-size:11px}"
             "figure img{width:100%}figcaption{overflow-wrap:anywhere}"
             ".scale{width:240px;height:10px;margin-bottom:8px;background:linear-gradient(to right,#00007f,#0000ff,"
             "#00ffff,#7fff7f,#ffff00,#ff0000,#7f0000)}figure{break-inside:avoid}h2,h3{break-after:avoid}table.metrics,.keep{break-inside:avoid}"
             "@media print{.js-plotly-plot{break-inside:avoid}.modebar{display:none}}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"<script>{PLOTLY_JS_FILE.read_text()}</script></head><body>{''.join(parts)}</body></html>")


def _anchor_note(bundle_metrics: dict[str, Any]) -> str:
    """How this bundle's numbers relate to the public anchors, which are all UTKFace numbers."""
    dataset = str(bundle_metrics.get("dataset"))
    if dataset == "utkface-test":
        return ("Ours are measured on FaceAudit's duplicate-aware, stratified UTKFace test split (splits/utkface.csv); "
                "published numbers use other splits, so differences of a few tenths of a year are within protocol noise.")
    return (f"Ours are measured on {dataset}, not on UTKFace: the anchors (UTKFace test sets) show the model's "
            "home ground, and a gap between the two rows is the cost of leaving it, not protocol noise.")


def _worst_html(worst: pd.DataFrame, group_by: list[str] | None) -> str:
    """The worst group of every grouping and metric (groups of at least SMALL_N faces), the auditor's first."""
    if worst.empty:
        return f"<h2>Worst groups</h2><p>No group has {SMALL_N} or more faces with labels.</p>"
    esc = html.escape
    custom = " × ".join(group_by or [])
    worst = worst.assign(first=worst["grouping"] != custom).sort_values("first", kind="stable")
    sentences = [f"<li>{esc(row['grouping'])}, {esc(row['metric'])}: worst <b>{esc(str(row['worst group']))}</b> "
                 f"{_cell(row['value'], row['ci_low'], row['ci_high'])}, n = {row['n']:,}</li>"
                 for _, row in worst.iterrows() if row["grouping"] == custom or row["metric"] in ("gender_accuracy", "age_mae")]
    return (f"<div class='keep'><h2>Worst groups</h2><p><small>Among groups of at least {SMALL_N} faces; value "
            "(95 % interval). Every grouping and metric is in the JSON/CSV table worst_groups.</small></p><ul>"
            + "".join(sentences) + "</ul></div>")


def _calibration_html(tables: dict[str, pd.DataFrame]) -> str:
    """Expected calibration error per head, and the three race × gender groups (n ≥ SMALL_N) furthest off: of
    FairFace's seven races where the report has them."""
    esc = html.escape
    rows = []
    for head, row in tables["calibration_overall"].iterrows():
        groups = tables.get(f"calibration_{head}_by_fairface_race_x_gender",
                            tables[f"calibration_{head}_by_race_x_gender"])
        worst = groups[~groups["small_n"]].sort_values("ece", ascending=False).head(3)
        furthest = "; ".join(f"{group_label(key)} {value['ece']:.3f} (n = {int(value['n']):,})" for key, value in worst.iterrows())
        rows.append(f"<tr><td>{esc(CONFUSION_TITLES.get(head, head))}</td>"
                    f"<td>{_cell(row['ece'], row['ece_ci_low'], row['ece_ci_high'])}</td>"
                    f"<td>{row['confidence']:.3f}</td><td>{row['accuracy']:.3f}</td><td>{esc(furthest or '—')}</td></tr>")
    return ("<div class='keep'><h2>Calibration</h2><p><small>Expected calibration error (15 confidence bins; 0 is "
            "perfect; biased upward in small groups) with a bootstrap interval (shifted down by the bootstrap's "
            "estimate of that bias), mean confidence against the share right, and the race × gender groups furthest "
            "off (by FairFace's seven races where the data has them).</small></p><table class='metrics'><tr>"
            "<th>head</th><th>ECE "
            "(95 % interval)</th><th>confidence</th><th>right</th><th>furthest off (ECE)</th></tr>" + "".join(rows)
            + "</table></div>")


def _heatmaps_html(table: pd.DataFrame, by: list[str]) -> str:
    """Heatmaps of a two-column intersection table, or a sentence when every cell is small."""
    title = " × ".join(by).replace("age_bin", "age bin")
    intro = (f"<h2>Intersections: {html.escape(title)}</h2><p><small>Cells with fewer than {SMALL_N} faces are grey; "
             "the CSV/JSON exports hold every cell with its interval.</small></p>")
    if table["small_n"].all():
        return (f"<div class='keep'>{intro}<p>Every {html.escape(title)} cell has fewer than {SMALL_N} faces (largest: "
                f"{table['n'].max()}), too few for a heatmap.</p></div>")
    heatmaps = [_chart(intersection_heatmap(table, metric)) for metric in ("gender_accuracy", "race_accuracy", "age_mae")
                if table[metric].notna().any()]
    return f"<div class='keep'>{intro}{heatmaps[0] if heatmaps else ''}</div>" + "".join(heatmaps[1:])


def _chart(figure) -> str:
    """A plotly figure as an HTML fragment; plotly.js itself is embedded once in the page head.

    The figure gets a self-contained template and room for its labels: under Streamlit, plotly's default
    template is Streamlit's, whose colours are placeholders its frontend fills in (in a file: black bars)
    and whose zero margins clip tick labels.
    """
    figure = go.Figure(figure).update_layout(template=REPORT_TEMPLATE)
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, config={"responsive": True})


def _delta_cell(delta: float, low: float, high: float) -> str:
    if pd.isna(delta):
        return "n/a"
    if pd.isna(low):
        return f"{delta:+.3f}"
    return f"{delta:+.3f} ({low:+.3f} to {high:+.3f})" + ("" if low <= 0 <= high else " *")


def _comparison_html(comparison: Comparison) -> str:
    """The "Bundles compared" section: findings, then per metric an overall table, a group table and bars."""
    esc = html.escape
    reference, others = comparison.names[0], comparison.names[1:]
    by = " × ".join(comparison.by)
    pairing = "; ".join(f"{name}: {'paired, same images' if comparison.paired[name] else 'unpaired, different images'}"
                        for name in others)
    parts = [f"<h2>Bundles compared</h2><p>Reference <b>{esc(reference)}</b> against {esc(', '.join(others))}, "
             f"on the same filter. Deltas are other − reference with 95 % bootstrap intervals ({esc(pairing)}); "
             "* marks an interval that excludes 0. Spread: largest minus smallest value across "
             f"{esc(by)} groups of at least 30 faces.</p><ul>"
             + "".join(f"<li>{esc(sentence)}</li>" for sentence in describe(comparison)) + "</ul>"]
    if comparison.notes:
        parts.append("<p>The bundles:</p><ul>" + "".join(
            f"<li><b>{esc(name)}</b>: {esc(note)}</li>" for name, note in comparison.notes.items()) + "</ul>")
    for metric, groups in comparison.by_group.items():
        rows = comparison.overall.xs(metric, level="metric").rename_axis(None)
        deltas = [(r["delta"], r["delta_ci_low"], r["delta_ci_high"]) for _, r in rows.iterrows()]
        is_reference = rows.index == reference
        overall = pd.DataFrame({
            "value": [f"{v:.3f}" for v in rows["value"]],
            "delta (95 % CI)": ["" if ref else _delta_cell(*d) for ref, d in zip(is_reference, deltas)],
            "verdict": ["reference" if ref else verdict(metric, *d) for ref, d in zip(is_reference, deltas)],
            f"spread across {by}": [f"{v:.3f}" for v in rows["spread"]],
            "worst group": [f"{g} ({v:.3f})" if g else "n/a" for g, v in zip(rows["worst_group"], rows["worst_value"])],
        }, index=rows.index)
        by_group = pd.DataFrame({"n": groups["n"].astype(int)}, index=[group_label(key) for key in groups.index])
        for name in comparison.names:
            by_group[name] = list(map(_cell, groups[name], groups[f"{name} ci_low"], groups[f"{name} ci_high"]))
        for name in others:
            by_group[f"delta {name}"] = list(map(_delta_cell, groups[f"delta {name}"], groups[f"delta {name} ci_low"],
                                                 groups[f"delta {name} ci_high"]))
        parts += [f"<div class='keep'><h3>{esc(METRIC_TERMS[metric].name)}: {esc(METRIC_TERMS[metric].help())}</h3>",
                  overall.to_html(escape=True, classes="metrics"), "<br>", by_group.to_html(escape=True, classes="metrics"),
                  "</div>", _chart(comparison_bars(comparison, metric)), _chart(delta_chart(comparison, metric))]
    return "".join(parts)


def missing_chromium(chromium: str | Path = CHROMIUM) -> str:
    """Why there is no PDF export on this machine."""
    return f"PDF export needs Chromium at {chromium} (apt-get install chromium)"


def html_to_pdf(html_text: str, out: str | Path, *, chromium: str | Path = CHROMIUM, timeout: float = 120) -> Path:
    """Print an HTML report to PDF with headless Chromium (charts render as in the browser).

    Raises:
        FileNotFoundError: Chromium is not installed.
        RuntimeError: Chromium failed; its message is included.
    """
    if not Path(chromium).exists():
        raise FileNotFoundError(missing_chromium(chromium))
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        page.write_text(html_text)
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={folder}/profile", "--no-pdf-header-footer",
             "--virtual-time-budget=10000", f"--print-to-pdf={out}", page.as_uri()],
            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"Chromium could not print the report: {result.stderr.strip()[-500:]}")
    return out


def report_extras(frame: pd.DataFrame, bundle_metrics: dict[str, Any], data_dir: Path | None, *, checkpoint=None,
                  detector=None, thumbnails: int = 12,
                  panels: int = 3) -> tuple[list[tuple[str, str]], list[tuple[str, np.ndarray]], str]:
    """Thumbnails of the worst cohort's most confident gender mistakes, Grad-CAM panels for a few, and a note.

    The worst cohort is the race x gender group (`race_x_gender`, n >= SMALL_N) with the lowest gender accuracy.
    Each thumbnail outlines the face the row is about; panels explain that face with the bundle's own model:
    `checkpoint` must be the one that made the bundle (same weights id), else there are no panels and the
    note says why. Images that are not on this machine are skipped.
    """
    from core.chips import faces_for_model
    from core.explain import explain
    from core.faces import choose_face, match_face

    note = ""
    if imported := imported_from(bundle_metrics):
        note = f"Explanations unavailable: this bundle holds {imported}; explaining them needs the model itself."
        checkpoint = None
    elif checkpoint is not None and checkpoint.model_id != bundle_metrics.get("model_id"):
        note = (f"Explanations unavailable: this bundle was made by model {bundle_metrics.get('model_id')}, and that "
                f"model is not on this machine (the loaded model is {checkpoint.model_id}).")
        checkpoint = None
    elif checkpoint is None:
        note = (f"Explanations unavailable: the model that made this bundle ({bundle_metrics.get('model_id')}) is not "
                "on this machine.")
    elif bundle_metrics.get("fitted_on") and not bundle_metrics.get("temperatures"):  # thresholds, not calibration
        note = ("Grad-CAM shows the model's evidence before the post-processing thresholds that decided this "
                "bundle's gender predictions.")
    by = race_x_gender(frame)
    if frame.empty or frame[by].isna().all().any():
        return [], [], note
    table = subgroup_metrics(frame, by, ["gender_accuracy"], rounds=1).table
    table = table[table["n"] >= SMALL_N]
    if table.empty:
        return [], [], note
    race, gender = table["gender_accuracy"].idxmin()
    cohort = frame[(frame[by[0]].astype("string") == race) & (frame["gender"].astype("string") == gender)]
    wrong = mistakes(cohort, "gender").head(thumbnails)
    gallery, explanations = [], []
    for _, row in wrong.iterrows():
        path = resolve_image(row, bundle_metrics, data_dir)
        if path is None:
            continue
        caption = f"{row['file']}: {race} {gender}, predicted {row['pred_gender']} (confidence {row['confidence']:.0%})"
        box = chosen_box(row)
        gallery.append((caption, thumbnail(path, box=box)))
        if checkpoint is not None and detector is not None and len(explanations) < panels:
            found = faces_for_model(str(path), checkpoint.model.config.input_size, detector)
            if not found.faces:
                continue
            height, width = found.image.shape[:2]
            index = match_face(found.faces, box) if box is not None else None
            if index is None:  # a bundle without recorded boxes: choose as it did
                index, _ = choose_face(found.faces, width, height, bundle_metrics.get("face_rule") or "largest")
            result = explain(checkpoint.model, found.chips[index], method="gradcam", head="gender",
                             target=str(row["pred_gender"]))
            explanations.append((f"Grad-CAM for '{row['pred_gender']}': {caption}", result.overlay))
    return gallery, explanations, note
