"""Error analysis: a shallow tree over the bundle's metadata finds the cohorts with the most errors."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.charts import error_tree_chart
from core.cohorts import Cohort, CohortError, save_cohort
from core.error_analysis import AGE_TOLERANCE, MAX_TREE_FACES, candidate_features, error_tree
from core.fairness import SMALL_N, wilson_interval
from core.gallery import available_heads
from pages import _cached

HEAD_NAMES = {"gender": "gender", "race": "race", "age_bin": "age bin", "race7": "race (FairFace's 7)",
              "age": f"age (off by > {AGE_TOLERANCE:g} years)"}

if st.session_state.pop("errors_goto_gallery", False):  # set by "Show its mistakes in the gallery"
    st.switch_page("pages/gallery.py")
st.title("Error analysis")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
left, middle, right = st.columns([2, 1, 1])
heads = available_heads(frame)  # those with labels and predictions
if not heads:
    st.info("No face in this selection has both a true label and the model's prediction to compare.")
    st.stop()
head = left.radio("Errors in", heads, horizontal=True, format_func=HEAD_NAMES.get, key="errors_head")
depth = middle.slider("Tree depth", 1, 4, 3, key="errors_depth", help="Each level adds one condition to a cohort.")
min_leaf = right.slider("Smallest cohort", 5, 200, SMALL_N, step=5, key="errors_min_leaf",
                        help="Faces a cohort needs in the half the tree is grown on.")
options = candidate_features(frame, head)
features_key = f"errors_features_{head}"  # each head has its own confidence column
_cached.keep_choices(features_key, options)
st.session_state.setdefault(features_key, options)
features = st.multiselect("Split on", options, key=features_key,
                          help="The bundle's groups, the other heads' predictions, face size and detector score, "
                               "and the model's confidence.")


@st.cache_data(max_entries=16, show_spinner="Growing the tree…")
def grow(selection: str, head: str, features: tuple, depth: int, min_leaf: int):
    return error_tree(frame, head, features=list(features), max_depth=depth, min_leaf=min_leaf)


try:
    tree = grow(f"{bundle.path}{_cached.frozen_filters()}", head, tuple(features), depth, min_leaf)
except ValueError as error:
    st.info(f"No tree: {error}.")
    st.stop()
low, high = wilson_interval(tree.overall_rate * tree.n_measured, tree.n_measured)
sample = f" (of a random {MAX_TREE_FACES:,} of the {tree.sampled_from:,} faces)" if tree.sampled_from else ""
st.caption(f"Grown on {tree.n_grown:,} faces, measured on the other {tree.n_measured:,}{sample} (photos of one person stay "
           f"in one half), so a cohort's error rate is not flattered by having been picked for it. Overall error "
           f"rate {tree.overall_rate:.1%} (95 % {low:.1%}–{high:.1%}); Wilson intervals.")

table = pd.DataFrame([{"cohort": leaf.cohort.name, "faces": leaf.n, "errors": leaf.errors, "error rate": leaf.rate,
                       "95 % low": leaf.ci_low, "95 % high": leaf.ci_high} for leaf in tree.leaves])
chart = go.Figure(go.Bar(
    x=table["error rate"], y=table["cohort"], orientation="h", marker_color="#c0392b",
    error_x={"type": "data", "symmetric": False, "array": table["95 % high"] - table["error rate"],
             "arrayminus": table["error rate"] - table["95 % low"]},
    hovertemplate="%{y}<br>error rate %{x:.1%}<extra></extra>"))
chart.add_vline(x=tree.overall_rate, line_dash="dash", annotation_text="overall")
chart.update_layout(height=80 + 34 * len(table), xaxis={"range": [0, 1.02], "tickformat": ".0%", "title": "error rate"},
                    yaxis={"autorange": "reversed", "automargin": True}, margin={"l": 10, "r": 10, "t": 30, "b": 40})
diagram, bars = st.tabs(["Tree", "Cohorts by error rate"])
diagram.plotly_chart(error_tree_chart(tree), width="stretch", key="errors_tree_chart")
bars.plotly_chart(chart, width="stretch")
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "error rate": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
    "95 % low": st.column_config.NumberColumn(format="percent"),
    "95 % high": st.column_config.NumberColumn(format="percent")})

st.subheader("Look closer")
leaves = {leaf.cohort.name: leaf for leaf in tree.leaves}
chosen = st.selectbox("Cohort", list(leaves), key=f"errors_leaf_{head}",
                      format_func=lambda name: f"{leaves[name].rate:.0%} · {name}")
leaf = leaves[chosen]


def open_in_gallery() -> None:
    """Make the cohort this session's, pick it in the sidebar and go to its mistakes."""
    st.session_state.setdefault("session_cohorts", {})[leaf.cohort.name] = leaf.cohort
    st.session_state["cohort_name"] = leaf.cohort.name
    st.session_state["gallery_head"] = head
    st.session_state["errors_goto_gallery"] = True
    _cached.keep_sidebar()


def save() -> None:
    name = st.session_state.get("errors_cohort_name", "").strip() or leaf.cohort.name
    try:
        save_cohort(bundle.path, Cohort(name, leaf.cohort.conditions))
        st.session_state["errors_saved"] = f"Saved cohort “{name}” beside the bundle."
    except CohortError as error:
        st.session_state["errors_saved"] = f"Not saved: {error}"


one, two, three = st.columns([1, 2, 1])
one.button("Show its mistakes in the gallery", on_click=open_in_gallery, type="primary", key="errors_open")
two.text_input("Name", placeholder=leaf.cohort.name, key="errors_cohort_name", label_visibility="collapsed")
three.button("Save as cohort", on_click=save, key="errors_save")
if message := st.session_state.pop("errors_saved", None):
    (st.success if message.startswith("Saved") else st.error)(message)
