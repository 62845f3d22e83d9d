"""Compare: bundles' subgroup metrics side by side, e.g. a model before and after a mitigation."""

import streamlit as st

from core.charts import comparison_bars, delta_chart
from core.compare import COMPARE_METRICS, describe, related_bundles
from core.fairness import available_metrics, group_label, race_x_gender
from core.glossary import explain_term, plain_name
from pages import _cached

st.title("Compare bundles")
choices = _cached.bundle_choices()
if len(choices) < 2:
    st.info("Comparing needs two bundles in the model's audits folder (e.g. the test split before and after "
            "`python -m training.mitigate`).")
    st.stop()
names = list(choices)
left, right = st.columns(2)
reference = left.selectbox("Reference bundle (A)", names, index=names.index(_cached.current_bundle_name()),
                           key="compare_a")
others = [name for name in names if name != reference]
chosen = right.multiselect("Compare with (B, …)", others, default=related_bundles(reference, others) or others[:1],
                           key="compare_b")
reference_bundle = _cached.load_bundle_at(choices[reference])
if reference_bundle is None:
    st.stop()
group_options = list(_cached.filter_options(reference_bundle))
_cached.keep_choices("compare_by", group_options)
by = left.multiselect("Group by", group_options, default=[c for c in race_x_gender(reference_bundle.predictions)[:1]
                                                           if c in group_options], max_selections=3,
                      key="compare_by")
metric_options = available_metrics(reference_bundle.predictions)
metric = right.selectbox("Metric", metric_options, index=metric_options.index("gender_accuracy"), key="compare_metric",
                         format_func=plain_name, help="See About → Glossary for what each one means.")
if not chosen or not by:
    st.info("Pick at least one bundle to compare with and one column to group by.")
    st.stop()
comparison = _cached.comparison([reference, *chosen], by, list(dict.fromkeys([metric, *COMPARE_METRICS])))
if comparison is None:
    st.stop()
st.caption("Deltas are B − A with 95 % bootstrap intervals, paired on the same images when both bundles hold the same "
           "files (two models of one dataset: on the faces both predicted), photos of one person resampled together; "
           "* marks an interval that excludes 0. Spread: largest minus smallest value over groups of ≥ 30 "
           "faces.")
with st.expander("What each bundle bought and what it cost", expanded=True):
    for name, note in comparison.notes.items():
        st.markdown(f"**{_cached.plain(name)}**: {_cached.plain(note)}")
    st.markdown("\n".join(f"- {_cached.plain(sentence)}" for sentence in describe(comparison)))
if metric not in comparison.by_group:
    st.info(f"{comparison.names[0]} has no labels for {plain_name(metric)}: pick another metric.")
    st.stop()
st.subheader(f"{plain_name(metric)} by {' × '.join(by)}")
st.caption(explain_term(metric))
left, right = st.columns(2)
left.plotly_chart(comparison_bars(comparison, metric), key="compare_chart")
right.plotly_chart(delta_chart(comparison, metric), key="compare_delta_chart")
st.caption("Values are drawn on their whole scale (shares 0–1, age errors from 0) on every page, never zoomed; "
           "changes have their own chart, centred on 0.")
overall = comparison.overall.xs(metric, level="metric").reset_index()
st.dataframe(overall.round(4), hide_index=True, key="compare_overall")
table = comparison.by_group[metric].reset_index(drop=True)
table.insert(0, "group", [group_label(key) for key in comparison.by_group[metric].index])
st.dataframe(table.round(4), hide_index=True, key="compare_groups")
