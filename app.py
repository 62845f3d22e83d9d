"""FaceAudit: the Streamlit entry point. A router and frame only; pages live in pages/."""

import streamlit as st

st.set_page_config(page_title="FaceAudit", page_icon=":material/face:", layout="wide")

navigation = st.navigation([
    st.Page("pages/about.py", title="About", icon=":material/info:", default=True),
])
navigation.run()
