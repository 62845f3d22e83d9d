import numpy as np

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


def test_intersection_heatmap_blanks_cells_with_few_faces():
    cells = _heatmap(200)  # 20 faces per cell, under SMALL_N
    assert np.isnan(np.asarray(cells.z, dtype=float)).all()
    assert {text for row in cells.text for text in row} == {"n=20"}
