import numpy as np
import pandas as pd
import pytest

from core import labels
from core.charts import intersection_heatmap
from core.fairness import subgroup_metrics
from tests.bundle_fixture import synthetic_predictions


def _heatmap(n: int):
    table = subgroup_metrics(synthetic_predictions(n), ["race", "gender"], ["gender_accuracy"], rounds=1).table
    return intersection_heatmap(table, "gender_accuracy").data[0]


def test_intersection_heatmap_shows_the_planted_cell_in_taxonomy_order():
    cells = _heatmap(600)  # 60 faces per race x gender cell; half of the Black women misgendered
    assert list(cells.y) == list(labels.RACES) and list(cells.x) == list(labels.GENDERS)
    black, female = list(cells.y).index("Black"), list(cells.x).index("Female")
    assert cells.z[black][female] == 0.5 and cells.text[black][female] == "0.50<br>n=60"
    assert cells.z[black][1 - female] == 1.0


def test_intersection_heatmap_greys_cells_with_few_faces_and_still_shows_their_n():
    table = subgroup_metrics(synthetic_predictions(200), ["race", "gender"], ["gender_accuracy"], rounds=1).table
    cells, grey = intersection_heatmap(table, "gender_accuracy").data  # 20 faces per cell, under SMALL_N
    assert np.isnan(np.asarray(cells.z, dtype=float)).all()  # no colour on a handful of faces
    assert (np.asarray(grey.z, dtype=float) == 0).all() and not grey.showscale  # but a cell, where plotly writes text
    assert {text for row in grey.text for text in row} == {"n=20"}
    assert {text for row in cells.text for text in row} == {""}  # each cell written once, or plotly overprints it


def test_intersection_heatmap_of_a_numbered_column_keeps_its_values_as_categories():
    frame = synthetic_predictions(600)
    frame["monk"] = pd.Series(np.arange(600) % 10 + 1).astype(str).where(np.arange(600) % 7 > 0)  # '1'…'10', gaps
    table = subgroup_metrics(frame, ["gender", "monk"], ["gender_accuracy"], rounds=1).table
    figure = intersection_heatmap(table, "gender_accuracy")
    assert figure.layout.xaxis.type == "category" and figure.layout.yaxis.type == "category"
    assert list(figure.data[0].x) == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "(missing)"]
    from core.charts import forest_plot

    forest = forest_plot(subgroup_metrics(frame, ["monk"], ["gender_accuracy"], rounds=1).table, "gender_accuracy")
    assert forest.layout.yaxis.type == "category" and list(forest.data[0].y)[-2:] == ["10", "(missing)"]


def test_values_are_never_zoomed_and_changes_have_their_own_chart():
    from core.charts import comparison_bars, delta_chart, forest_plot, value_range
    from core.compare import compare_bundles
    from core.fairness import subgroup_metrics
    from tests.bundle_fixture import mitigated_bundle

    frame = synthetic_predictions(600)
    table = subgroup_metrics(frame, ["race"], ["gender_accuracy", "age_mae", "signed_age_error"]).table
    assert list(forest_plot(table, "gender_accuracy").layout.xaxis.range) == [0.0, 1.02]  # all groups are ≥ 0.75
    assert forest_plot(table, "age_mae").layout.xaxis.range[0] == 0.0
    low, high = value_range("signed_age_error", table["signed_age_error_ci_high"], table["signed_age_error_ci_low"])
    assert low == -high
    comparison = compare_bundles({"before": frame, "fixed": mitigated_bundle(600).predictions})
    assert list(comparison_bars(comparison, "gender_accuracy").layout.yaxis.range) == [0.0, 1.02]  # same convention
    delta = delta_chart(comparison, "gender_accuracy")
    [trace] = delta.data
    assert trace.name == "fixed − before" and list(trace.y) == ["White", "Black", "Asian", "Indian", "Others"]
    assert trace.x[1] == pytest.approx(0.25)  # Black: 0.75 → 1.0
    assert delta.layout.shapes[0].x0 == 0 and "better is right" in delta.layout.title.text


@pytest.mark.parametrize("metric", ["race_accuracy", "age_mae", "signed_age_error"])
def test_heatmap_colours_follow_the_one_scale_convention(metric):
    """Colours are not zoomed to the data: a cell of 1.00 everywhere is not painted mid-scale (plotly's 0.5-1.5 default
    for a single value), and two close shares are not painted at opposite ends."""
    from core.charts import value_range

    frame = synthetic_predictions(600)
    frame["pred_race"] = frame["race"]  # every race right: race accuracy 1.00 in every cell
    table = subgroup_metrics(frame, ["race", "gender"], [metric], rounds=20).table
    cells = intersection_heatmap(table, metric).data[0]
    expected = [0.0, 1.0] if metric == "race_accuracy" else value_range(metric, table[metric], table[metric])
    assert [cells.zmin, cells.zmax] == pytest.approx(expected)
    if metric == "signed_age_error":
        assert cells.zmin == -cells.zmax  # 0 (no bias) in the middle of the diverging scale


def test_the_distribution_of_fairfaces_seven_races_keeps_their_order():
    from core.charts import distribution_bar

    frame = pd.DataFrame({"fairface_race": ["Middle Eastern"] * 5 + ["White"] * 2 + ["Black"] * 3 + [None]})
    bars = distribution_bar(frame, "fairface_race").data[0]
    assert list(bars.x) == ["White", "Black", "Middle Eastern", "(missing)"] and list(bars.y) == [2, 3, 5, 1]


def test_the_strata_heatmap_counts_fairfaces_seven_races_where_the_data_has_them():
    from core.charts import strata_heatmap
    from tests.bundle_fixture import seven_race_predictions

    frame = seven_race_predictions()  # 50 faces per FairFace race × gender
    cells = strata_heatmap(frame).data[0]
    assert list(cells.y) == [f"{race} / {gender}" for race in labels.FAIRFACE_RACES for gender in labels.GENDERS]
    assert np.asarray(cells.z).sum(axis=1).tolist() == [50] * 14
    five = strata_heatmap(synthetic_predictions(240)).data[0]
    assert list(five.y) == [f"{race} / {gender}" for race in labels.RACES for gender in labels.GENDERS]
