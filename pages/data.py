"""Data: what the audited set contains, what was rejected, duplicates, and the race mapping."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import labels
from core.bundle import chosen_box, resolve_image
from core.charts import distribution_bar, strata_heatmap
from core.fairness import has_fairface_races
from core.gallery import face_thumbnail
from pages import _cached

st.title("Data")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
st.caption(f"{bundle.metrics.get('dataset')}: {len(frame):,} faces after the sidebar filter")

if frame.empty:
    st.warning("No faces to describe: " + ("the sidebar filter leaves none." if len(bundle.predictions)
                                           else "no image of this audit produced a prediction; the rejects say why."))
else:
    columns = st.columns(3)
    for column, name in zip(columns, ("age_bin", "gender", "race")):
        column.plotly_chart(distribution_bar(frame, name), key=f"data_dist_{name}")
    if has_fairface_races(frame):  # the seven, which "race" merges to five
        st.plotly_chart(distribution_bar(frame, "fairface_race"), key="data_dist_fairface_race")
if not frame.empty and frame["race"].notna().any() and frame["gender"].notna().any():
    st.subheader(f"{'FairFace race' if has_fairface_races(frame) else 'Race'} × gender × age bin")
    st.plotly_chart(strata_heatmap(frame), key="data_strata")

st.subheader(f"Rejected images ({len(bundle.rejects)})")
if bundle.rejects.empty:
    st.write("None: every image produced a prediction.")
else:
    _cached.long_table(bundle.rejects[["file", "reason"]], f"{Path(bundle.path).name}-rejects", "data_rejects_csv")

if "dup_group_size" in frame.columns:
    duplicates = frame[frame["dup_group_size"] > 1]
    st.subheader(f"Duplicate groups ({duplicates['dup_group'].nunique()} groups, {len(duplicates)} faces)")
    conflicting = duplicates[duplicates["label_conflict"]]
    st.write(f"{conflicting['dup_group'].nunique()} groups have conflicting labels (the same or nearly the same image "
             "labelled differently): label noise that caps every metric.")
    if not duplicates.empty:
        _cached.long_table(duplicates.sort_values("dup_group")[["dup_group", "file", "age", "gender", "race", "label_conflict"]],
                           f"{Path(bundle.path).name}-duplicates", "data_duplicates_csv")
        groups = list(dict.fromkeys([*conflicting["dup_group"], *duplicates["dup_group"]]))[:_cached.SHOWN_ROWS]  # conflicting first
        group = st.selectbox("See a group", groups, key="data_dup_group",
                             format_func=lambda g: f"group {g}" + (" (conflicting labels)" if g in set(conflicting["dup_group"]) else ""))
        members = duplicates[duplicates["dup_group"] == group]
        for column, (_, row) in zip(st.columns(max(len(members), 4)), members.iterrows()):
            path = resolve_image(row, bundle.metrics, _cached.settings().data_dir)
            caption = f"{row['file']}: {row['age'] if pd.notna(row['age']) else row['age_bin']} {row['gender']} {row['race']}"
            if path is None:
                column.caption(f"{caption} (image not on this machine)")
            else:
                column.image(face_thumbnail(path, chosen_box(row), side=200), caption=caption, width="stretch")

st.subheader("Race labels: seven FairFace classes mapped onto five")
st.table({"FairFace race": list(labels.FAIRFACE_TO_RACE), "FaceAudit race": list(labels.FAIRFACE_TO_RACE.values())})
st.info(labels.race_note("pred_race7" in frame))
