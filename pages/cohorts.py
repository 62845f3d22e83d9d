"""Cohorts: name a set of faces by conditions on any column, prediction, confidence or error; compare two side by side."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core.cohorts import (
    OPS,
    Cohort,
    CohortError,
    Condition,
    delete_cohort,
    outcome_columns,
    parse_value,
    save_cohort,
)
from core.fairness import HEADLINE_METRICS, PROPORTIONS, SHORT_NAMES, available_metrics, filter_frame
from pages import _cached

st.title("Cohorts")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
saved = _cached.cohorts(bundle.path)
made = st.session_state.get("session_cohorts", {})
known = {cohort.name: cohort for cohort in [*made.values(), *saved]}  # saved ones win a shared name
frame = filter_frame(bundle.predictions, _cached.filters())  # the sidebar filter; cohorts are applied here
st.caption(f"Cohorts are saved in `{Path(bundle.path).name}/cohorts.json` beside the bundle (never in it) and "
           f"offered in the sidebar on every page and in reports. {len(frame):,} faces under the sidebar filter.")

st.subheader("New cohort")
columns = [c for c in bundle.predictions.columns if not c.startswith("p_")] + [
    c for c in outcome_columns() if not c.startswith("race7_") or "pred_race7" in bundle.predictions]  # its heads
rows = st.data_editor(
    pd.DataFrame({"column": ["race_error"], "op": ["=="], "value": ["wrong"]}), num_rows="dynamic", key="cohort_rows",
    width="stretch", hide_index=True, column_config={
        "column": st.column_config.SelectboxColumn(options=columns, required=True,
                                                   help="A column of the bundle, or an outcome: <head>_error "
                                                        "(right/wrong), <head>_confidence, age_error (years)"),
        "op": st.column_config.SelectboxColumn(options=list(OPS), required=True),
        "value": st.column_config.TextColumn(help="A number for ≤ and >; values separated by commas for in / not in")})
name = st.text_input("Name", key="cohort_new_name", placeholder="e.g. confident race mistakes")
try:
    conditions = tuple(Condition(row.column, row.op, parse_value(row.op, row.value or ""))
                       for row in rows.dropna(subset=["column", "op"]).itertuples())
    draft = Cohort(name.strip() or "draft", conditions)
    draft_mask = draft.mask(frame)
except CohortError as error:
    st.error(f"This cohort cannot be applied: {error}")
    st.stop()
st.write(f"**{int(draft_mask.sum()):,}** of {len(frame):,} faces: {_cached.plain(draft.describe())}")
if st.button("Save cohort", type="primary", key="cohort_save", disabled=not name.strip() or not conditions):
    try:
        save_cohort(bundle.path, draft)
        st.success(f"Saved “{draft.name}”. Pick it in the sidebar to apply it on every page.")
        saved = _cached.cohorts(bundle.path)
        known[draft.name] = draft
    except CohortError as error:
        st.error(str(error))

if saved:
    st.subheader("Saved cohorts")
    for cohort in saved:
        text, count, remove = st.columns([6, 1, 1])
        text.markdown(f"**{_cached.plain(cohort.name)}**: {_cached.plain(cohort.describe())}")
        try:
            count.write(f"{int(cohort.mask(frame).sum()):,} faces")
        except CohortError as error:
            count.caption(f"not applicable: {error}")
        if remove.button("Delete", key=f"cohort_delete_{cohort.name}"):
            delete_cohort(bundle.path, cohort.name)
            st.rerun()

st.subheader("Two cohorts side by side")
choices = [None, *known]
left, right = st.columns(2)
a_name = left.selectbox("A", choices, key="cohort_a", format_func=lambda n: "all faces" if n is None else n)
b_name = right.selectbox("B", choices, index=min(1, len(choices) - 1), key="cohort_b",
                         format_func=lambda n: "all faces" if n is None else n)
metrics = st.multiselect("Metrics", available_metrics(frame), default=list(HEADLINE_METRICS), format_func=SHORT_NAMES.get,
                         key="cohort_metrics")
if not metrics:
    st.stop()
try:
    table, shared = _cached.cohorts_side_by_side(bundle, known.get(a_name), known.get(b_name), metrics)
except CohortError as error:
    st.error(str(error))
    st.stop()


def shown(value: float, low: float, high: float, metric: str, signed: bool = False) -> str:
    if pd.isna(value):
        return "n/a"
    scale, unit = (100, " %") if metric in PROPORTIONS else (1, " y")
    sign = "+" if signed else ""
    return f"{scale * value:{sign}.1f}{unit} ({scale * low:{sign}.1f} to {scale * high:{sign}.1f})"


a_label, b_label = (n or "all faces" for n in (a_name, b_name))
st.dataframe(pd.DataFrame({
    "metric": [SHORT_NAMES[m] for m in table.index],
    f"A: {a_label}": [shown(r.a, r.a_low, r.a_high, m) + f", n={int(r.a_n)}" for m, r in table.iterrows()],
    f"B: {b_label}": [shown(r.b, r.b_low, r.b_high, m) + f", n={int(r.b_n)}" for m, r in table.iterrows()],
    "B − A": [shown(r.b_minus_a, r.diff_low, r.diff_high, m, signed=True) for m, r in table.iterrows()],
}), hide_index=True, width="stretch")
st.caption("Values with 95 % intervals. " + (f"The cohorts share {shared:,} faces: the interval of B − A treats them "
                                             "as independent, so it is too wide for overlapping cohorts."
                                             if shared else "The cohorts share no face."))
