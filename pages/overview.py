"""Overview: which model, which audit dataset, headline metrics with intervals, worst groups."""

import numpy as np
import pandas as pd
import streamlit as st

from core.bundle import bundle_title, checkpoint_id, provenance
from core.cohorts import face_keys
from core.fairness import (
    METRICS,
    SHORT_NAMES,
    SMALL_N,
    interval_note,
)
from core.suspects import suspect_index
from pages import _cached

st.title("Overview")
meta = _cached.model_meta()
if meta is None:
    st.error(f"No model at {_cached.settings().model_dir} (config.json missing): set FACEAUDIT_MODEL.")
else:
    training, model_config = meta.get("training", {}), meta.get("model", {})
    st.caption(
        f"Loaded model (live explanations on Inspect): **{model_config.get('backbone')}** at {model_config.get('input_size')} px · trained on "
        f"{meta.get('trained_on', 'unknown data')} ({training.get('train_images', '?')} images, epoch "
        f"{training.get('epoch', '?')}) · created {meta.get('created', '?')} · id `{checkpoint_id(meta)}`")
found = _cached.current_bundle_metrics()
if found is None:
    st.stop()
path, m = found
summary = _cached.page_overview(path)
if summary is None:
    st.stop()

st.subheader(f"Audit: {_cached.plain(bundle_title(m))}")
origin = provenance(m)
with st.expander("Provenance: what made these numbers"):
    st.table({"": list(origin), "value": list(origin.values())})
if m.get("training_overlap"):
    st.error(f"This audit includes images the model was trained on: {m.get('training_overlap_note')}. "
             "Its metrics flatter the model.")
st.write(f"{m['n']:,} faces audited · {m['n_rejected']:,} image{'s' if m['n_rejected'] != 1 else ''} rejected"
         + (f" · faces found in {100 * m['faces_found']:.1f} % of images" if m.get("faces_found") is not None else "")
         + (f" · {m['multi_face_images']:,} images with several faces (filter: multi_face)" if m.get("multi_face_images")
            else "")
         + (f" · **filtered to {summary.faces:,} faces**" if summary.faces != m["n"] else ""))
if not summary.faces:
    st.warning("The sidebar filter leaves no faces.")
    st.stop()

if all(row["n"] == 0 for row in summary.overall.values()):
    notes = [note for note in m.get("notes", []) if "no label column" in note]
    st.info("None of these faces has a label (a true age, gender or race), so no accuracy can be measured; the "
            "bundle's predictions.parquet holds what the model predicted. "
            + (f"{notes[0].rstrip('.')}." if notes else "The notes under Provenance say how the dataset was read."))
intervals = interval_note(summary.cluster)
for column, (name, row) in zip(st.columns(len(summary.overall)), summary.overall.items()):
    if row["n"] == 0:
        column.metric(SHORT_NAMES[name], "n/a", help="no labels for this metric in this dataset")
        continue
    scale, unit = (1, "") if name == "age_mae" else (100, " %")
    column.metric(SHORT_NAMES[name], f"{scale * row['value']:.1f}{unit}",
                  help=f"{METRICS[name][0]}; 95 % interval {scale * row['ci_low']:.1f}–{scale * row['ci_high']:.1f}{unit}, "
                       f"n={int(row['n'])}. {intervals}")
    column.caption(f"95 % CI {scale * row['ci_low']:.1f}–{scale * row['ci_high']:.1f}{unit}")

suspects = _cached.suspects_at(path)
bundle = _cached.load_bundle_at(path) if not suspects.empty else None  # the rows, only to mark suspects among them
if bundle is not None:
    selection = _cached.frozen_filters()[:2]  # filter and cohort, the suspects kept in
    with_suspects = _cached.select_frozen(bundle.predictions, (*selection, ()))
    marked = suspect_index(with_suspects, suspects)
    st.subheader(f"Label suspects: {len(marked):,} marked faces in this selection")
    st.caption("Faces marked in the error gallery because their true label looks wrong (saved beside the bundle). "
               "Each headline metric with and without them; the sidebar can leave them out on every page.")
    table = _cached.suspect_effect(str(bundle.path), selection, tuple(face_keys(suspects)),
                                   with_suspects, marked)
    st.dataframe(pd.DataFrame({
        "metric": [SHORT_NAMES[name] for name in table.index],
        "all faces": [f"{v:.3f} ({lo:.3f}–{hi:.3f}), n={int(n)}" for v, lo, hi, n in table[
            ["all faces value", "all faces ci_low", "all faces ci_high", "all faces n"]].to_numpy()],
        "without suspects": [f"{v:.3f} ({lo:.3f}–{hi:.3f}), n={int(n)}" for v, lo, hi, n in table[
            ["without suspects value", "without suspects ci_low", "without suspects ci_high", "without suspects n"]
        ].to_numpy()],
        "change": [f"{change:+.3f}" for change in table["change"]]}), hide_index=True)

st.subheader("Largest gaps")
if summary.gaps or summary.errors:
    st.markdown("\n".join(f"- {_cached.plain(text)}" for text in [gap.sentence() for gap in summary.gaps] + summary.errors))
    st.caption(f"Per metric, the grouping (gender, race, age bin, race × gender; FairFace's seven races where the "
               f"data has them) whose best and worst groups of at least {SMALL_N} faces differ most; 95 % intervals of "
               f"the gap combine the two groups' intervals. {intervals}")
else:
    st.write(f"No two groups of at least {SMALL_N} labelled faces to compare in this selection.")

worst_by = " × ".join(summary.worst_by)
st.subheader(f"Worst groups at a glance ({worst_by}, n ≥ {SMALL_N})")
if summary.worst is None:
    st.write(f"No {worst_by} group in this selection has labels for {SMALL_N} or more faces.")
else:
    shown = list(summary.worst.items())  # two tables a row: seven-race group names leave three no room for n
    pairs = [shown[start:start + 2] for start in range(0, len(shown), 2)]
    for column, (name, groups) in ((column, item) for pair in pairs for column, item in zip(st.columns(2), pair)):
        column.markdown(f"**{SHORT_NAMES[name]}** (overall {summary.overall[name]['value']:.3f})")
        column.dataframe({"group": [group["group"] for group in groups],
                          "value": np.round([group["value"] for group in groups], 3),
                          "95 % CI": [f"{group['ci_low']:.3f}–{group['ci_high']:.3f}" for group in groups],
                          "n": [group["n"] for group in groups]}, hide_index=True)
_cached.prefetch_bundle(path)  # last: the other pages need the rows, which this one did not read
