"""Report: export the current selection as HTML, PDF, JSON or CSV."""

import tempfile
from functools import partial
from pathlib import Path

import streamlit as st

from core import labels
from core.bundle import bundle_model_dir, export_name, imported_from
from core.compare import COMPARE_METRICS, Comparison, describe, related_bundles
from core.report import CHROMIUM, html_to_pdf, missing_chromium, report_csv_zip, report_extras, report_html, report_json
from pages import _cached

st.title("Report")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
# explanations come from the model that made the bundle, or none; it is loaded (torch) only to build a report
has_model = bundle_model_dir(bundle.metrics, _cached.settings().model_dir) is not None
frame = _cached.filtered_predictions(bundle)
filters = _cached.selection_label()
st.write(f"The report covers **{_cached.plain(bundle.metrics.get('dataset'))}** with the sidebar filter "
         f"({len(frame):,} faces): provenance, model card, headline metrics with intervals, the worst groups, subgroup "
         "tables, heatmaps, the worst cohort's most confident mistakes with Grad-CAM panels, and public anchors. "
         "HTML is one self-contained file that works offline.")
if frame.empty:
    st.warning("The selection is empty: the report will say so instead of listing metrics.")
columns = _cached.filter_options(bundle)  # the dataset's own columns first, then the labels
group_options = [c for c in columns if c not in labels.CLASSES] + [c for c in labels.CLASSES if c in columns]
_cached.keep_choices("report_group_by", group_options)
group_by = st.multiselect("Also group by (each alone and intersected, up to three)", group_options,
                          key="report_group_by", max_selections=3,
                          help="The dataset's own columns, e.g. skin × gender for a Gender Shades-style audit.")
name = _cached.current_bundle_name()
others = [other for other in _cached.bundle_choices() if other != name]
compared = st.multiselect("Compare with (adds a “Bundles compared” section)", others,
                          default=related_bundles(name, others), key="report_compare",
                          help="Other bundles, e.g. this split after a mitigation: deltas per race (FairFace's seven "
                               "where the data has them) with paired intervals.")
sources = _cached.comparison_inputs([name, *compared]) if compared and not frame.empty else None
frozen = _cached.frozen_filters()


def comparison_of() -> Comparison | None:
    """The comparison, computed only when a report or the preview needs it (bootstraps take seconds)."""
    # no grouping given: compare_bundles' own, as the command's (race; FairFace's seven where the data has them)
    return _cached.compare_inputs(sources, frozen, [], COMPARE_METRICS) if sources else None


if sources and st.toggle("Preview what the “Bundles compared” section will say", key="report_preview"):
    st.markdown("\n".join(f"- {_cached.plain(sentence)}" for sentence in describe(comparison_of())))
if imported := imported_from(bundle.metrics):
    st.caption(f"Explanation panels: unavailable, this bundle holds {imported}; explaining needs the model itself.")
elif not has_model:
    st.caption(f"Explanation panels: unavailable, the model that made this bundle ({bundle.metrics.get('model_id')}) "
               "is not on this machine.")


# Each format is built when its button is clicked (Streamlit runs `data` then, on its own thread), once per selection.
report_key = (str(bundle.path), frozen, tuple(compared) if sources else (), tuple(group_by))


@st.cache_data(max_entries=8, show_spinner=False)
def build_html(key: tuple) -> str:
    checkpoint = _cached.bundle_model(bundle)
    gallery, panels, note = report_extras(frame, bundle.metrics, _cached.settings().data_dir, checkpoint=checkpoint,
                                          detector=_cached.detector() if checkpoint is not None else None)
    return report_html(frame, bundle.metrics, checkpoint.meta if checkpoint is not None else {}, filters,
                       gallery=gallery, explanations=panels, comparison=comparison_of(), group_by=list(key[3]),
                       explanation_note=note)


@st.cache_data(max_entries=8, show_spinner=False)
def build_json(key: tuple) -> str:
    return report_json(frame, bundle.metrics, filters, comparison_of(), list(key[3]))


@st.cache_data(max_entries=8, show_spinner=False)
def build_csv(key: tuple) -> bytes:
    return report_csv_zip(frame, comparison_of(), list(key[3]))


@st.cache_data(max_entries=4, show_spinner=False)
def build_pdf(key: tuple) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return html_to_pdf(build_html(key), Path(folder) / "report.pdf").read_bytes()


stem = export_name(Path(bundle.path).name, _cached.selection_label(describe=False), *(f"by-{'+'.join(group_by)}",) if group_by else ())
formats = {"HTML": (build_html, ".html", "text/html"), "JSON": (build_json, ".json", "application/json"),
           "CSV (zip)": (build_csv, "-csv.zip", "application/zip"), "PDF": (build_pdf, ".pdf", "application/pdf")}
st.caption(f"Files are named `{stem}.…` and built when you click (HTML and PDF take a few seconds).")
for column, (label, (builder, suffix, mime)) in zip(st.columns(4), formats.items()):
    unavailable = label == "PDF" and not CHROMIUM.exists()
    column.download_button(f"Download {label}", partial(builder, report_key), file_name=f"{stem}{suffix}", mime=mime,
                           key=f"report_{suffix.strip('.-').split('.')[0]}", on_click="ignore", disabled=unavailable,
                           help=missing_chromium(CHROMIUM) if unavailable else None)
