"""Error gallery: thumbnails of misclassified faces, filterable and paged, most confident mistakes first."""

from functools import partial
from pathlib import Path

import streamlit as st

from core import labels
from core.bundle import chosen_box, export_name, resolve_image
from core.cohorts import CohortError, face_keys
from core.gallery import available_heads, face_thumbnail, mistakes_csv, tile_caption
from core.suspects import SUSPECTS_FILE, mark_suspect, mark_suspects, suspect_index
from pages import _cached

PER_PAGE = 24
HEAD_NAMES = {"gender": "gender", "race": "race", "age_bin": "age bin", "race7": "race (FairFace's 7)",
              "age": "age (years)"}
st.title("Error gallery")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
heads = available_heads(frame)
if not heads:
    st.info("No face in this selection has a true label to compare with.")
    st.stop()

left, middle, right = st.columns(3)
head = left.radio("Mistakes in", heads, horizontal=True, key="gallery_head", format_func=HEAD_NAMES.get,
                  help=None if "age" in heads else "No exact ages in this selection (only age bins, as in FairFace).")
sort = right.selectbox("Sort", ["most confident", "largest age error", "file"], key="gallery_sort")
true_values = predicted_values = None
if head in labels.HEAD_CLASSES:
    names = list(labels.HEAD_CLASSES[head])
    true_values = middle.multiselect(f"true {HEAD_NAMES[head]}", names, key=f"gallery_true_{head}", placeholder="any")
    predicted_values = middle.multiselect(f"predicted {HEAD_NAMES[head]}", names, key=f"gallery_pred_{head}",
                                          placeholder="any")
low, high = st.slider("Confidence", 0.0, 1.0, (0.0, 1.0), key="gallery_confidence",
                      help="The probability of the predicted class; for age, 1 / (1 + predicted spread in years).")
min_error = (st.slider("Minimum age error (years)", 0, 40, 5 if head == "age" else 0, key="gallery_min_error")
             if "age" in heads else 0)  # no exact ages (FairFace, a vendor's bins): any minimum would hide every face
wrong = _cached.gallery_mistakes(bundle, head, true_values=true_values, predicted_values=predicted_values,
                                min_age_error=min_error, confidence=(low, high), sort=sort)
pages = wrong.pages(PER_PAGE)
if st.session_state.get("gallery_page", 1) > pages:  # fewer pages after a filter change
    st.session_state["gallery_page"] = pages
counts, paging, export = st.columns([2, 1, 1])
page = paging.number_input(f"Page (of {pages})", 1, pages, key="gallery_page")
shown = wrong.page(page, PER_PAGE)
first = (page - 1) * PER_PAGE
counts.caption(f"{len(wrong):,} mistakes among {len(frame):,} faces"
               + (f" · showing {first + 1:,}–{first + len(shown):,}" if len(wrong) else ""))
export.download_button(f"Download these {len(wrong):,} faces (CSV)", partial(mistakes_csv, wrong, bundle.path), mime="text/csv",
                       file_name=f"{export_name(Path(bundle.path).name, _cached.selection_label(describe=False), head, 'mistakes')}.csv",
                       key="gallery_csv", disabled=not len(wrong), on_click="ignore",  # built on the click
                       help="One row per face with every column of the bundle, plus confidence and age error.")
if not len(wrong):
    st.stop()

paths = [resolve_image(row, bundle.metrics, _cached.settings().data_dir) for _, row in shown.iterrows()]
if all(path is None for path in paths):
    expected = bundle.metrics.get("image_root") or shown["path"].iloc[0]
    st.warning(f"The images of this bundle are not on this machine. They were expected under {expected}"
               + (f" (inside the data folder: {bundle.metrics['image_root_in_data']})" if bundle.metrics.get("image_root_in_data") else "")
               + ". Set FACEAUDIT_DATA to the data folder that holds them and restart.")
marked = suspect_index(shown, _cached.suspects_at(bundle.path))


def face_name(i: int) -> str:
    """The i-th face of this page as its tile and the lists below number it."""
    return f"{first + i + 1}. {shown['file'].iloc[i]}" + (" · ⚑ label suspect" if shown.index[i] in marked else "")


columns = st.columns(6)
for index, ((label, row), path) in enumerate(zip(shown.iterrows(), paths)):
    caption = f"{first + index + 1}. " + tile_caption(row, head) + (" · ⚑ label suspect" if label in marked else "")
    with columns[index % 6]:
        if path is not None:
            st.image(face_thumbnail(path, chosen_box(row)), caption=caption, width="stretch")
        else:
            st.caption(caption)

if notice := st.session_state.pop("gallery_suspects_notice", None):
    st.success(notice)
with (st.expander("Mark several faces of this page as label suspects"),
      st.form("gallery_bulk_suspects", clear_on_submit=True, border=False)):
    chosen = st.multiselect("Faces", range(len(shown)), format_func=face_name, placeholder="choose faces by number",
                            key="gallery_bulk_faces")
    every = st.checkbox(f"All {len(shown)} faces of this page", key="gallery_bulk_all")
    note = st.text_input("Note (optional)", placeholder="e.g. the labelled gender looks swapped", key="gallery_bulk_note")
    mark_column, unmark_column = st.columns(2)
    mark = mark_column.form_submit_button("Mark as label suspects", key="gallery_bulk_mark")
    unmark = unmark_column.form_submit_button("Remove their mark", key="gallery_bulk_unmark")
if mark or unmark:
    rows = shown if every else shown.iloc[chosen]
    if rows.empty:
        st.warning("Choose faces (or all faces of this page) first.")
    else:
        try:
            changed = mark_suspects(bundle.path, rows, mark, head=head, note=note)
            st.session_state["gallery_suspects_notice"] = (
                f"{changed:,} of {len(rows):,} faces {'marked' if mark else 'unmarked'} in {SUSPECTS_FILE} beside the bundle.")
            st.rerun()
        except CohortError as error:
            st.error(str(error))

st.subheader("Full record")
position = st.selectbox("Face", range(len(shown)), key=f"gallery_record_{page}", format_func=face_name)
record = shown.iloc[position]
suspect_key = f"gallery_suspect_{face_keys(shown.iloc[[position]]).iloc[0]}"
st.session_state[suspect_key] = shown.index[position] in marked  # the file decides: marks also change in bulk


def _save_mark(row=record, key=suspect_key, folder=bundle.path, head=head) -> None:
    """The toggle's callback: runs before the next run, with the values of the run that drew the toggle."""
    try:
        mark_suspect(folder, row, st.session_state[key], head=head)
    except CohortError as error:
        st.session_state["gallery_suspects_error"] = str(error)


st.toggle("Label suspect: the true label looks wrong", key=suspect_key, on_change=_save_mark,
          help=f"Saved beside the bundle in {SUSPECTS_FILE}, never in it. The Overview shows every headline "
               "metric with and without marked faces; the sidebar can leave them out everywhere.")
if error := st.session_state.pop("gallery_suspects_error", None):
    st.error(error)
st.json({key: (None if str(value) in ("<NA>", "nan") else value if isinstance(value, (int, float, str, bool)) else str(value))
         for key, value in record.items()})
