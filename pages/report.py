"""Report: export the current selection as HTML, JSON or CSV."""

import streamlit as st

from core.report import report_csv_zip, report_html, report_json
from pages import _cached

st.title("Report")
bundle = _cached.current_bundle()
checkpoint = _cached.model()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
filters = _cached.filters()
st.write(f"The report covers **{bundle.metrics.get('dataset')}** with the sidebar filter "
         f"({len(frame):,} faces). HTML is one self-contained file that works offline.")
if frame.empty:
    st.warning("The selection is empty: the report will say so instead of listing metrics.")


@st.cache_data(max_entries=8, show_spinner="Building the report…")
def build(bundle_key: str, filters_key: str) -> tuple[str, str, bytes]:
    meta = checkpoint.meta if checkpoint is not None else {}
    return (report_html(frame, bundle.metrics, meta, filters), report_json(frame, bundle.metrics, filters),
            report_csv_zip(frame))


html_text, json_text, csv_zip = build(str(bundle.path), str(filters))
name = f"faceaudit-{bundle.metrics.get('dataset', 'report')}"
left, middle, right = st.columns(3)
left.download_button("Download HTML", html_text, file_name=f"{name}.html", mime="text/html", key="report_html")
middle.download_button("Download JSON", json_text, file_name=f"{name}.json", mime="application/json", key="report_json")
right.download_button("Download CSV (zip)", csv_zip, file_name=f"{name}-csv.zip", mime="application/zip", key="report_csv")
