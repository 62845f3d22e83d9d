"""Error gallery: thumbnails of misclassified faces, filterable, most confident mistakes first."""

import pandas as pd
import streamlit as st

from core import labels
from core.bundle import chosen_box, resolve_image
from core.gallery import face_thumbnail, mistakes
from pages import _cached

PER_PAGE = 24
st.title("Error gallery")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)

left, middle, right = st.columns(3)
head = left.radio("Mistakes in", ["gender", "race", "age_bin", "age"], horizontal=True, key="gallery_head")
sort = right.selectbox("Sort", ["most confident", "largest age error", "file"], key="gallery_sort")
true_values = predicted_values = None
if head in labels.CLASSES:
    names = list(labels.CLASSES[head])
    true_values = middle.multiselect(f"true {head}", names, key=f"gallery_true_{head}", placeholder="any")
    predicted_values = middle.multiselect(f"predicted {head}", names, key=f"gallery_pred_{head}",
                                          placeholder="any")
low, high = st.slider("Confidence", 0.0, 1.0, (0.0, 1.0), key="gallery_confidence")
min_error = st.slider("Minimum age error (years)", 0, 40, 5 if head == "age" else 0, key="gallery_min_error")
wrong = mistakes(frame, head, true_values=true_values, predicted_values=predicted_values, min_age_error=min_error,
                 confidence=(low, high), sort=sort)
st.caption(f"{len(wrong):,} mistakes among {len(frame):,} faces")
if wrong.empty:
    st.stop()

shown = wrong.head(PER_PAGE)
paths = [resolve_image(row, bundle.metrics, _cached.settings().data_dir) for _, row in shown.iterrows()]
if all(path is None for path in paths):
    expected = bundle.metrics.get("image_root") or shown["path"].iloc[0]
    st.warning(f"The images of this bundle are not on this machine. They were expected under {expected}"
               + (f" (inside the data folder: {bundle.metrics['image_root_in_data']})" if bundle.metrics.get("image_root_in_data") else "")
               + ". Set FACEAUDIT_DATA to the data folder that holds them and restart.")
columns = st.columns(6)
for index, ((_, row), path) in enumerate(zip(shown.iterrows(), paths)):
    true_age = row["age_bin"] if pd.isna(row["age"]) else row["age"]
    caption = (f"true {true_age} {row['gender']} {row['race']} → {row['pred_age']:.0f} {row['pred_gender']} "
               f"{row['pred_race']} ({row['confidence']:.2f})")
    if row.get("n_faces", 1) > 1 and "face_index" in row.index:
        caption += f" · face {int(row['face_index']) + 1} of {int(row['n_faces'])} (outlined)"
    if row.get("face_flags", "none") not in ("none", ""):
        caption += f" · ⚠ {row['face_flags']}"
    with columns[index % 6]:
        if path is not None:
            st.image(face_thumbnail(path, chosen_box(row)), caption=caption, width="stretch")
        else:
            st.caption(caption)

st.subheader("Full record")
file = st.selectbox("Face", shown["file"].tolist(), key="gallery_record")
record = shown[shown["file"] == file].iloc[0]
st.json({key: (None if str(value) in ("<NA>", "nan") else value if isinstance(value, (int, float, str, bool)) else str(value))
         for key, value in record.items()})
