"""Exportable bias reports of an audit bundle: JSON (versioned), CSV per table, self-contained HTML."""

from __future__ import annotations

import html
import io
import json
import zipfile
from typing import Any

import pandas as pd
import plotly.io as pio

from core import labels
from core.charts import confusion_heatmap, forest_plot
from core.fairness import confusion, overall_metrics, subgroup_metrics

__all__ = ["REPORT_SCHEMA_VERSION", "report_tables", "report_json", "report_csv_zip", "report_html"]

REPORT_SCHEMA_VERSION = "faceaudit-report/1"
_HEADLINE = ["age_mae", "cs5", "age_bin_accuracy", "gender_accuracy", "race_accuracy"]
_SUBGROUP = ["gender_accuracy", "race_accuracy", "age_bin_accuracy", "age_mae", "signed_age_error",
             "false_female_rate", "false_male_rate"]


def report_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Headline metrics and subgroup tables (race, gender, age bin, race x gender) of a predictions frame."""
    if frame.empty:
        return {}
    tables = {"headline": overall_metrics(frame, _HEADLINE)}
    for by in (["race"], ["gender"], ["age_bin"], ["race", "gender"]):
        table = subgroup_metrics(frame, by, _SUBGROUP, rounds=200).table
        tables["subgroups_" + "_x_".join(by)] = table
    return tables


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    flat = table.reset_index()
    flat.columns = [str(c) for c in flat.columns]
    return json.loads(flat.to_json(orient="records"))


def report_json(frame: pd.DataFrame, bundle_metrics: dict[str, Any], filters: dict[str, list[str]]) -> str:
    """Every metric of the report as JSON (`schema`: REPORT_SCHEMA_VERSION)."""
    tables = report_tables(frame)
    return json.dumps({
        "schema": REPORT_SCHEMA_VERSION, "dataset": bundle_metrics.get("dataset"), "model_id": bundle_metrics.get("model_id"),
        "filters": filters, "n": len(frame), "empty": frame.empty,
        "tables": {name: _records(table) for name, table in tables.items()},
    }, indent=2)


def report_csv_zip(frame: pd.DataFrame) -> bytes:
    """A zip with one CSV per report table."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, table in report_tables(frame).items():
            archive.writestr(f"{name}.csv", table.to_csv())
    return buffer.getvalue()


def _table_html(table: pd.DataFrame, columns: list[str]) -> str:
    shown = table[[c for c in columns if c in table.columns]].copy()
    shown.index = [" / ".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in shown.index]
    return shown.to_html(float_format=lambda v: f"{v:.3f}", escape=True, classes="metrics")


def report_html(frame: pd.DataFrame, bundle_metrics: dict[str, Any], model_meta: dict[str, Any],
                filters: dict[str, list[str]]) -> str:
    """A self-contained HTML report (charts embedded, plotly.js inlined, works offline). Data text is escaped."""
    esc = html.escape
    title = f"FaceAudit report — {bundle_metrics.get('dataset', 'dataset')}"
    chosen = "; ".join(f"{k}: {', '.join(v)}" for k, v in filters.items() if v) or "none"
    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>Model <code>{esc(str(model_meta.get('model', {}).get('backbone', '?')))}</code>, id "
             f"<code>{esc(str(bundle_metrics.get('model_id')))}</code>; filters: {esc(chosen)}; {len(frame):,} faces, "
             f"{bundle_metrics.get('n_rejected', 0):,} images rejected.</p>",
             "<h2>Model card</h2><ul>"
             "<li><b>Intended use</b>: assessing subgroup disparities of an age/gender/race classifier on labeled "
             "images before deployment; research and audit.</li>"
             "<li><b>Out of scope</b>: inferring anyone's gender or race identity; decisions about individuals; "
             "surveillance.</li>"
             f"<li><b>Training data</b>: {esc(str(model_meta.get('trained_on', 'unknown')))} — UTKFace skews White "
             "(42 %) and 20–39 years; Others is 7 %.</li>"
             f"<li><b>Race labels</b>: {esc(labels.RACE_MAPPING_NOTE)}</li>"
             "<li><b>Gender</b> is a binary label as annotated in the datasets, not a self-identified gender.</li></ul>"]
    if frame.empty:
        parts.append("<p><b>The selection is empty: no faces match the filters, so there are no metrics.</b></p>")
    else:
        tables = report_tables(frame)
        parts.append("<h2>Headline metrics (95 % bootstrap intervals)</h2>" + _table_html(
            tables["headline"], ["value", "ci_low", "ci_high", "n"]))
        for name, table in tables.items():
            if name == "headline":
                continue
            columns = ["n", "small_n"] + [c for m in _SUBGROUP for c in (m, f"{m}_ci_low", f"{m}_ci_high")]
            parts.append(f"<h2>{esc(name.replace('_', ' '))}</h2>" + _table_html(table, columns))
        race_gender = tables["subgroups_race_x_gender"]
        include = "inline"
        for metric in ("gender_accuracy", "age_mae"):
            if race_gender[metric].notna().any():
                figure = forest_plot(race_gender, metric, overall=float(tables["headline"].loc[metric, "value"]))
                parts.append(pio.to_html(figure, include_plotlyjs=include, full_html=False))
                include = False
        for head in ("gender", "race", "age_bin"):
            if frame[head].notna().any():
                parts.append(f"<h2>Confusion: {head}</h2>" + pio.to_html(
                    confusion_heatmap(confusion(frame, head, normalize=True), normalized=True),
                    include_plotlyjs=include, full_html=False))
                include = False
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#212529}"
             "table.metrics{border-collapse:collapse;font-size:13px}table.metrics td,table.metrics th"
             "{border:1px solid #dee2e6;padding:3px 6px;text-align:right}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
