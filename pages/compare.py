"""Compare: two bundles' subgroup metrics side by side, e.g. a model before and after a mitigation."""

import plotly.graph_objects as go
import streamlit as st

from core.bundle import GROUP_COLUMNS
from core.charts import group_label
from core.fairness import METRICS, filter_frame, subgroup_metrics
from core.mitigation import compare_tables
from pages import _cached

st.title("Compare two bundles")
choices = _cached.bundle_choices()
if len(choices) < 2:
    st.info("Comparing needs two bundles in the model's audits folder (e.g. the test split before and after "
            "`python -m training.mitigate`).")
    st.stop()
names = list(choices)
left, right = st.columns(2)
name_a = left.selectbox("Bundle A", names, index=0, key="compare_a")
name_b = right.selectbox("Bundle B", names, index=min(1, len(names) - 1), key="compare_b")
by = left.multiselect("Group by", list(GROUP_COLUMNS), default=["race"], key="compare_by")
metric = right.selectbox("Metric", list(METRICS), key="compare_metric")
if not by:
    st.stop()
bundles = {}
for name in (name_a, name_b):
    bundles[name] = _cached.load_bundle_at(choices[name])
    if bundles[name] is None:
        st.stop()
frames = [filter_frame(bundles[n].predictions, _cached.filters()) for n in (name_a, name_b)]
tables = [subgroup_metrics(frame, by, [metric]).table for frame in frames]
overall = [subgroup_metrics(frame, by, [metric], rounds=1).overall[metric] for frame in frames]
st.write(f"Overall {metric}: A {overall[0]:.4f} · B {overall[1]:.4f} · delta {overall[1] - overall[0]:+.4f}")
figure = go.Figure()
for label, table in (("A: " + name_a, tables[0]), ("B: " + name_b, tables[1])):
    figure.add_bar(name=label, x=[group_label(k) for k in table.index], y=table[metric],
                   error_y={"type": "data", "symmetric": False, "array": table[f"{metric}_ci_high"] - table[metric],
                            "arrayminus": table[metric] - table[f"{metric}_ci_low"]})
figure.update_layout(barmode="group", yaxis_title=metric, height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10})
st.plotly_chart(figure, key="compare_chart")
table = compare_tables(tables[0], tables[1], metric).reset_index()
table.insert(0, "group", [group_label(tuple(row)) if len(by) > 1 else str(row[0]) for row in table[by].itertuples(index=False)])
st.dataframe(table.drop(columns=by), hide_index=True)
