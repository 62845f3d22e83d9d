"""Overview: which model, which audit dataset, headline metrics with intervals, worst groups."""

import pandas as pd
import streamlit as st

from core.bundle import HEADLINE_METRICS, bundle_title, checkpoint_id, provenance
from core.cohorts import face_keys
from core.fairness import (
    METRICS,
    SHORT_NAMES,
    SMALL_N,
    cluster_column,
    group_label,
    interval_note,
)
from core.suspects import suspect_index
from pages import _cached

st.title("Overview")
meta = _cached.model_meta()
bundle = _cached.current_bundle()
if meta is None:
    st.error(f"No model at {_cached.settings().model_dir} (config.json missing): set FACEAUDIT_MODEL.")
else:
    training, model_config = meta.get("training", {}), meta.get("model", {})
    st.caption(
        f"Loaded model (live explanations on Inspect): **{model_config.get('backbone')}** at {model_config.get('input_size')} px · trained on "
        f"{meta.get('trained_on', 'unknown data')} ({training.get('train_images', '?')} images, epoch "
        f"{training.get('epoch', '?')}) · created {meta.get('created', '?')} · id `{checkpoint_id(meta)}`")
if bundle is None:
    st.stop()

frame = _cached.filtered_predictions(bundle)
m = bundle.metrics
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
         + (f" · **filtered to {len(frame):,} faces**" if len(frame) != m["n"] else ""))
if frame.empty:
    st.warning("The sidebar filter leaves no faces.")
    st.stop()

headline = [*HEADLINE_METRICS, *(["race7_accuracy"] if "pred_race7" in frame else [])]  # a seven-class race head
overall = _cached.overall(bundle, headline)
intervals = interval_note(cluster_column(frame))
for column, name in zip(st.columns(len(headline)), headline):
    row = overall.loc[name]
    if row["n"] == 0:
        column.metric(SHORT_NAMES[name], "n/a", help="no labels for this metric in this dataset")
        continue
    scale, unit = (1, "") if name == "age_mae" else (100, " %")
    column.metric(SHORT_NAMES[name], f"{scale * row['value']:.1f}{unit}",
                  help=f"{METRICS[name][0]}; 95 % interval {scale * row['ci_low']:.1f}–{scale * row['ci_high']:.1f}{unit}, "
                       f"n={int(row['n'])}. {intervals}")
    column.caption(f"95 % CI {scale * row['ci_low']:.1f}–{scale * row['ci_high']:.1f}{unit}")

suspects = _cached.suspects_at(bundle.path)
if not suspects.empty:
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
gaps, errors = _cached.findings(bundle)
if gaps or errors:
    st.markdown("\n".join(f"- {_cached.plain(text)}" for text in [gap.sentence() for gap in gaps] + errors))
    st.caption(f"Per metric, the grouping (gender, race, age bin, race × gender) whose best and worst groups of at least "
               f"{SMALL_N} faces differ most; 95 % intervals of the gap combine the two groups' intervals. {intervals}")
else:
    st.write(f"No two groups of at least {SMALL_N} labelled faces to compare in this selection.")

st.subheader(f"Worst groups at a glance (race × gender, n ≥ {SMALL_N})")
available = [name for name in ("gender_accuracy", "race_accuracy", "age_mae") if overall.loc[name, "n"] > 0]
table = _cached.group_table(bundle, ["race", "gender"], available, rounds=200) if available else None
if table is None or table[~table["small_n"]].empty:
    st.write(f"No race × gender group in this selection has labels for {SMALL_N} or more faces.")
    st.stop()
table = table[~table["small_n"]]
for column, name in zip(st.columns(len(available)), available):
    worst = table[name].sort_values(ascending=METRICS[name][1]).head(3)
    column.markdown(f"**{SHORT_NAMES[name]}** (overall {overall.loc[name, 'value']:.3f})")
    low, high = table.loc[worst.index, f"{name}_ci_low"], table.loc[worst.index, f"{name}_ci_high"]
    column.dataframe({"group": [group_label(key) for key in worst.index], "value": worst.round(3).to_numpy(),
                      "95 % CI": [f"{a:.3f}–{b:.3f}" for a, b in zip(low, high)],
                      "n": table.loc[worst.index, "n"].to_numpy()}, hide_index=True)
