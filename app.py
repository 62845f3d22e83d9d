"""FaceAudit: the Streamlit entry point. A router and frame only; pages live in pages/."""

import streamlit as st

from core.config import REPO_ROOT
from pages import _cached

# A local icon: a Material or emoji page icon is fetched from Google's or a CDN's servers by the browser.
st.set_page_config(page_title="FaceAudit", page_icon=str(REPO_ROOT / "core" / "assets" / "favicon.png"), layout="wide")

navigation = st.navigation([
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/table:"),
    st.Page("pages/subgroups.py", title="Subgroup metrics", icon=":material/balance:"),
    st.Page("pages/confusion.py", title="Confusion", icon=":material/grid_on:"),
    st.Page("pages/calibration.py", title="Calibration", icon=":material/tune:"),
    st.Page("pages/gallery.py", title="Error gallery", icon=":material/photo_library:"),
    st.Page("pages/error_analysis.py", title="Error analysis", icon=":material/account_tree:"),
    st.Page("pages/cohorts.py", title="Cohorts", icon=":material/group_work:"),
    st.Page("pages/saliency.py", title="Saliency by group", icon=":material/visibility:"),
    st.Page("pages/inspect_photo.py", title="Inspect a photo", icon=":material/center_focus_strong:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/report.py", title="Report", icon=":material/download:"),
    st.Page("pages/about.py", title="About", icon=":material/info:"),
], expanded=True)  # every page listed (beyond ten Streamlit folds the rest under "View more")
_cached.sidebar()
navigation.run()
