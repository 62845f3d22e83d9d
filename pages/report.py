"""Report: export the current selection as HTML, PDF, JSON or CSV."""

import tempfile
from pathlib import Path

import streamlit as st

from core.report import html_to_pdf, report_csv_zip, report_extras, report_html, report_json
from pages import _cached

st.title("Report")
bundle = _cached.current_bundle()
checkpoint = _cached.model()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
filters = _cached.filters()
st.write(f"The report covers **{bundle.metrics.get('dataset')}** with the sidebar filter ({len(frame):,} faces): "
         "model card, headline metrics with intervals, subgroup tables, heatmaps, the worst cohort's most confident "
         "mistakes with Grad-CAM panels, and public anchors. HTML is one self-contained file that works offline.")
if frame.empty:
    st.warning("The selection is empty: the report will say so instead of listing metrics.")


@st.cache_data(max_entries=8, show_spinner="Building the report…")
def build(bundle_key: str, filters_key: str) -> tuple[str, str, bytes]:
    model = checkpoint.model if checkpoint is not None else None
    gallery, panels = report_extras(frame, bundle.metrics, _cached.settings().data_dir, model=model,
                                    detector=_cached.detector() if model is not None else None)
    meta = checkpoint.meta if checkpoint is not None else {}
    return (report_html(frame, bundle.metrics, meta, filters, gallery=gallery, explanations=panels),
            report_json(frame, bundle.metrics, filters), report_csv_zip(frame))


html_text, json_text, csv_zip = build(str(bundle.path), str(filters))
name = f"faceaudit-{bundle.metrics.get('dataset', 'report')}"
columns = st.columns(4)
columns[0].download_button("Download HTML", html_text, file_name=f"{name}.html", mime="text/html", key="report_html")
columns[1].download_button("Download JSON", json_text, file_name=f"{name}.json", mime="application/json",
                           key="report_json")
columns[2].download_button("Download CSV (zip)", csv_zip, file_name=f"{name}-csv.zip", mime="application/zip",
                           key="report_csv")
if columns[3].button("Prepare PDF", key="report_pdf_prepare"):
    with st.spinner("Printing the report with headless Chromium…"), tempfile.TemporaryDirectory() as folder:
        try:
            st.session_state["report_pdf"] = html_to_pdf(html_text, Path(folder) / "report.pdf").read_bytes()
        except (FileNotFoundError, RuntimeError) as error:
            st.error(str(error))
if st.session_state.get("report_pdf"):
    columns[3].download_button("Download PDF", st.session_state["report_pdf"], file_name=f"{name}.pdf",
                               mime="application/pdf", key="report_pdf")
