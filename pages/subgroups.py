"""Subgroup metrics over chosen groups (the values fairlearn's MetricFrame gives), with intervals and gaps."""

import streamlit as st

from core.charts import forest_plot, intersection_heatmap
from core.fairness import (
    MAX_GROUP_VALUES,
    SMALL_N,
    available_metrics,
    cluster_column,
    group_keys,
    group_label,
    grouping_columns,
    interval_note,
    race_x_gender,
    subgroup_metrics,
    with_race7,
    worst_group,
)
from core.glossary import explain_term, plain_name
from pages import _cached

st.title("Subgroup metrics")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
if frame.empty:
    st.warning("The sidebar filter leaves no faces.")
    st.stop()

group_options = grouping_columns(frame)
_cached.keep_choices("subgroups_by", group_options)
left, right = st.columns(2)
by = left.multiselect("Group by (up to three: their intersections)", group_options,
                      default=[c for c in race_x_gender(frame)[:1] if c in group_options], max_selections=3,
                      key="subgroups_by",
                      help="The labels, the dataset's own columns (e.g. skin, expression) and detection columns "
                           f"(n_faces, multi_face) with at most {MAX_GROUP_VALUES} values.")
metric_names = right.multiselect("Metrics", available_metrics(frame),
                                 default=with_race7(["gender_accuracy", "race_accuracy", "age_mae", "signed_age_error"],
                                                    frame),
                                 key="subgroups_metrics",
                                 format_func=plain_name, help="See About → Glossary for what each one means.")
if not by or not metric_names:
    st.info("Pick at least one grouping column and one metric.")
    st.stop()


@st.cache_data(max_entries=32, show_spinner="Computing subgroup metrics with bootstrap intervals…")
def compute(bundle_key: str, filters: str, by: tuple, metrics: tuple, reference: object):
    return subgroup_metrics(frame, list(by), list(metrics), reference=reference)


groups = group_keys(frame, by)
reference_label = st.selectbox("Compare with", ["overall"] + [group_label(g) for g in groups], key="subgroups_reference")
reference = None if reference_label == "overall" else groups[[group_label(g) for g in groups].index(reference_label)]
result = compute(str(bundle.path), str(_cached.frozen_filters()), tuple(by), tuple(metric_names), reference)
table = result.table

st.caption(f"Groups with n < {SMALL_N} are grey: their estimates are unstable. {interval_note(cluster_column(frame))} "
           f"diff and ratio compare each group with {reference_label}.")
worst_lines = []
for name in metric_names:
    worst = worst_group(table, name)
    if worst is not None:
        worst_lines.append(f"- **{plain_name(name)}** ({explain_term(name)}): worst {_cached.plain(' × '.join(by))} group **{_cached.plain(worst['label'])}**: "
                           f"{worst['value']:.3f} "
                           f"(95 % CI {worst['ci_low']:.3f}–{worst['ci_high']:.3f}), n = {worst['n']:,}")
if worst_lines:
    st.markdown(f"Worst groups among those with n ≥ {SMALL_N}:\n" + "\n".join(worst_lines))
if len(by) == 2:  # two columns: their intersections at a glance
    for name in metric_names:
        if table[name].notna().any():
            st.plotly_chart(intersection_heatmap(table, name), key=f"heatmap_{name}")
for name in metric_names:
    if table[name].notna().any():
        st.plotly_chart(forest_plot(table, name, overall=float(result.overall[name])), key=f"forest_{name}")
    else:
        st.write(f"**{plain_name(name)}**: nothing to measure in this selection (no labels for it, or the model "
                 "does not predict it).")

shown = table.reset_index()
shown.insert(0, "group", [group_label(k) for k in table.index])
columns = ["group", "n", "small_n"] + [c for name in metric_names for c in (name, f"{name}_ci_low", f"{name}_ci_high",
                                                                           f"{name}_diff", f"{name}_ratio")]
st.dataframe(shown[columns].style.apply(
    lambda row: ["color: #adb5bd" if row["small_n"] else "" for _ in row], axis=1).format(precision=3),
    hide_index=True)
