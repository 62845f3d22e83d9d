"""Confusion: heatmaps for gender, race and age bin (and FairFace's seven races where the data has them), for the
whole set or one subgroup."""

import streamlit as st

from core import labels
from core.charts import confusion_heatmap
from core.fairness import CONFUSION_TITLES, confusion, confusion_heads
from pages import _cached

st.title("Confusion")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)

left, middle, right = st.columns(3)
head = left.radio("Head", confusion_heads(frame), horizontal=True, key="confusion_head", format_func=CONFUSION_TITLES.get)
normalized = middle.toggle("Row-normalised", key="confusion_normalized")
options = ["whole set"] + [f"{column} = {value}" for column, names in labels.CLASSES.items() for value in names]
subgroup = right.selectbox("Subgroup", options, key="confusion_subgroup")
if subgroup != "whole set":
    column, value = subgroup.split(" = ", 1)
    frame = frame[frame[column].astype("string") == value]

table = confusion(frame, head, normalize=normalized)
total = int(confusion(frame, head).to_numpy().sum())
st.caption(f"{total:,} faces with a true {table.index.name.removeprefix('true ')} label in this selection")
if total == 0:
    st.warning(f"No faces with a true {table.index.name.removeprefix('true ')} label in this selection.")
else:
    st.plotly_chart(confusion_heatmap(table, normalized=normalized), key="confusion_heatmap")
