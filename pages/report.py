"""Report: export the current selection as HTML, PDF, JSON or CSV."""

import tempfile
from pathlib import Path

import streamlit as st

from core import labels
from core.compare import COMPARE_METRICS, describe, mitigations_of
from core.report import html_to_pdf, report_csv_zip, report_extras, report_html, report_json
from pages import _cached

st.title("Report")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
checkpoint = _cached.bundle_model(bundle)  # explanations come from the model that made the bundle, or none
frame = _cached.filtered_predictions(bundle)
filters = _cached.filters()
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
compared = st.multiselect("Compare with (adds a “Mitigations compared” section)", others,
                          default=mitigations_of(name, others), key="report_compare",
                          help="Other bundles, e.g. this split after a mitigation: deltas per race with paired "
                               "intervals.")
comparison = _cached.comparison([name, *compared], ["race"], COMPARE_METRICS) if compared and not frame.empty else None
if comparison is not None:
    with st.expander("Mitigations compared: what the section will say"):
        st.markdown("\n".join(f"- {_cached.plain(sentence)}" for sentence in describe(comparison)))
if checkpoint is None:
    st.caption(f"Explanation panels: unavailable, the model that made this bundle ({bundle.metrics.get('model_id')}) "
               "is not on this machine.")


@st.cache_data(max_entries=8, show_spinner="Building the report…")
def build(bundle_key: str, filters_key: str, compared_key: tuple[str, ...], group_key: tuple[str, ...]) -> tuple[str, str, bytes]:
    gallery, panels, note = report_extras(frame, bundle.metrics, _cached.settings().data_dir, checkpoint=checkpoint,
                                          detector=_cached.detector() if checkpoint is not None else None)
    meta = checkpoint.meta if checkpoint is not None else {}
    return (report_html(frame, bundle.metrics, meta, filters, gallery=gallery, explanations=panels,
                        comparison=comparison, group_by=list(group_key), explanation_note=note),
            report_json(frame, bundle.metrics, filters, comparison, list(group_key)),
            report_csv_zip(frame, comparison, list(group_key)))


report_key = (str(bundle.path), str(filters), tuple(compared) if comparison else (), tuple(group_by))
html_text, json_text, csv_zip = build(*report_key)
file_stem = f"faceaudit-{Path(bundle.path).name}"
columns = st.columns(4)
columns[0].download_button("Download HTML", html_text, file_name=f"{file_stem}.html", mime="text/html", key="report_html")
columns[1].download_button("Download JSON", json_text, file_name=f"{file_stem}.json", mime="application/json",
                           key="report_json")
columns[2].download_button("Download CSV (zip)", csv_zip, file_name=f"{file_stem}-csv.zip", mime="application/zip",
                           key="report_csv")
if columns[3].button("Prepare PDF", key="report_pdf_prepare"):
    with st.spinner("Printing the report with headless Chromium…"), tempfile.TemporaryDirectory() as folder:
        try:
            pdf = html_to_pdf(html_text, Path(folder) / "report.pdf").read_bytes()
            st.session_state["report_pdf_bytes"] = report_key, pdf
        except (FileNotFoundError, RuntimeError) as error:
            st.error(str(error))
pdf_key, pdf = st.session_state.get("report_pdf_bytes", (None, None))
if pdf_key == report_key:  # a PDF of an earlier selection is not offered for this one
    columns[3].download_button("Download PDF", pdf, file_name=f"{file_stem}.pdf",
                               mime="application/pdf", key="report_pdf")
