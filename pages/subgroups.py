"""Subgroup metrics: fairlearn MetricFrame over chosen groups, with intervals, differences and ratios."""

import streamlit as st

from core.bundle import GROUP_COLUMNS
from core.charts import forest_plot, intersection_heatmap
from core.fairness import METRICS, SMALL_N, group_keys, group_label, subgroup_metrics
from pages import _cached

st.title("Subgroup metrics")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
if frame.empty:
    st.warning("The sidebar filter leaves no faces.")
    st.stop()

extra = [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype) in ("string", "category")]
group_options = list(GROUP_COLUMNS) + [c for c in extra if c not in GROUP_COLUMNS and not c.startswith("pred_")
                                       and c not in ("file", "path", "source")]
left, right = st.columns(2)
by = left.multiselect("Group by (several: their intersections)", group_options, default=["race"], key="subgroups_by")
metric_names = right.multiselect("Metrics", list(METRICS), default=["gender_accuracy", "race_accuracy", "age_mae",
                                                                   "signed_age_error"], key="subgroups_metrics")
if not by or not metric_names:
    st.info("Pick at least one grouping column and one metric.")
    st.stop()


@st.cache_data(max_entries=32, show_spinner="Computing subgroup metrics with bootstrap intervals…")
def compute(bundle_key: str, filters: str, by: tuple, metrics: tuple, reference: object):
    return subgroup_metrics(frame, list(by), list(metrics), reference=reference)


groups = group_keys(frame, by)
reference_label = st.selectbox("Compare with", ["overall"] + [group_label(g) for g in groups], key="subgroups_reference")
reference = None if reference_label == "overall" else groups[[group_label(g) for g in groups].index(reference_label)]
result = compute(str(bundle.path), str(_cached.filters()), tuple(by), tuple(metric_names), reference)
table = result.table

st.caption(f"Groups with n < {SMALL_N} are grey: their estimates are unstable. Intervals: 95 % bootstrap. "
           f"diff and ratio compare each group with {reference_label}.")
if len(by) == 2:  # two columns: their intersections at a glance
    for name in metric_names:
        if table[name].notna().any():
            st.plotly_chart(intersection_heatmap(table, name), key=f"heatmap_{name}")
for name in metric_names:
    if table[name].notna().any():
        st.plotly_chart(forest_plot(table, name, overall=float(result.overall[name])), key=f"forest_{name}")
    else:
        st.write(f"**{name}**: no labels for it in this selection.")

shown = table.reset_index()
shown.insert(0, "group", [group_label(k) for k in table.index])
columns = ["group", "n", "small_n"] + [c for name in metric_names for c in (name, f"{name}_ci_low", f"{name}_ci_high",
                                                                           f"{name}_diff", f"{name}_ratio")]
st.dataframe(shown[columns].style.apply(
    lambda row: ["color: #adb5bd" if row["small_n"] else "" for _ in row], axis=1).format(precision=3),
    hide_index=True)
