"""Saliency by group: where the model looks, on average, for each cohort."""

import numpy as np
import streamlit as st
from PIL import Image

from core.bundle import imported_from
from core.heatmap import colour_bar, overlay
from core.saliency import SALIENCY_FILE
from pages import _cached

st.title("Where the model looks, per group")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
path = bundle.path / SALIENCY_FILE if bundle.path else None
if imported := imported_from(bundle.metrics):
    st.info(f"Per-group saliency needs the model's gradients; this bundle holds {imported}, so there is none.")
    st.stop()
if path is None or not path.is_file():
    st.info(f"This bundle has no per-group saliency yet. Compute it with "
            f"`python -m training.saliency --bundle {bundle.path}`.")
    st.stop()

maps = _cached.saliency(path)
heads = sorted({key.split("|")[0] for key in maps})
head = st.radio("Head (each face explains its true class)", heads, horizontal=True, key="saliency_head")
cohorts = [key.split("|")[1] for key in maps if key.startswith(f"{head}|")]
defaults = [c for c in ("Black / Female", "White / Male", "Asian / Female", "age 0-2", "age 60-69") if c in cohorts]
chosen = st.multiselect("Cohorts, side by side", cohorts, default=defaults or cohorts[:4], key="saliency_cohorts")
st.caption("Mean Grad-CAM over up to 150 aligned test faces per cohort, each map normalised to sum 1, drawn over "
           "UTKFace's mean face. Differences between cohorts show where the model's evidence shifts by group.")
face = _cached.mean_face()
columns = st.columns(max(len(chosen), 1))
peak = max((maps[f"{head}|{c}"][0].max() for c in chosen), default=1.0)
for column, cohort in zip(columns, chosen):
    saliency, n = maps[f"{head}|{cohort}"]
    size = saliency.shape[0]
    base = face if face.shape[0] == size else np.asarray(Image.fromarray(face).resize((size, size)))
    column.image(overlay(base, saliency, scale=peak), caption=f"{cohort} (n={n})", width="stretch")
st.image(colour_bar(), width=240)
st.caption("Colour: mean evidence, from none (transparent) to the highest peak among the cohorts shown (red). The scale "
           "is shared by the cohorts side by side, so both where and how much can be compared.")
