"""Cohorts, the error-analysis tree and label-noise triage on the synthetic bundle (Black women misgendered 50 %)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.cohorts import (
    COHORTS_FILE,
    Cohort,
    CohortError,
    Condition,
    delete_cohort,
    read_cohorts,
    save_cohort,
    select,
    with_outcomes,
)
from core.error_analysis import candidate_features, error_tree, errors_of, grow_tree
from core.suspects import mark_suspect, mark_suspects, read_suspects, suspect_index, with_and_without
from tests.bundle_fixture import seven_race_predictions, synthetic_predictions

MISGENDERED = Cohort("misgendered", (Condition("gender_error", "==", "wrong"),))


def test_conditions_on_labels_outcomes_and_numbers():
    frame = synthetic_predictions()
    wrong = frame[MISGENDERED.mask(frame)]
    assert len(wrong) == 12 and set(wrong["race"]) == {"Black"} and set(wrong["gender"]) == {"Female"}
    outcomes = with_outcomes(frame)
    assert outcomes["gender_confidence"].between(0.9, 1.0).all() and outcomes["age_error"].notna().all()
    young = Cohort("young non-white", (Condition("age_error", "<=", 2.0), Condition("race", "not in", ("White",))))
    chosen = frame[young.mask(frame)]
    assert len(chosen) and (chosen["race"] != "White").all()
    assert ((chosen["pred_age"] - chosen["age"].astype(float)).abs() <= 2.0).all()
    assert young.describe() == "age_error ≤ 2 and race not in {White}"
    with pytest.raises(CohortError, match="no column 'skin'"):
        Cohort("x", (Condition("skin", "==", "V"),)).mask(frame)
    with pytest.raises(CohortError, match="needs a number"):
        Condition("face_px", ">", "big")


def test_select_applies_filter_then_cohort_then_exclusions():
    frame = synthetic_predictions()
    first = select(frame, {"race": ["Black"]}, MISGENDERED).iloc[0]
    chosen = select(frame, {"race": ["Black"]}, MISGENDERED, leave_out=[f"{first['file']}#0", "gone.jpg#0"])
    assert len(chosen) == 11 and first["file"] not in set(chosen["file"])
    assert list(select(frame, {}).index) == list(frame.index)


def test_cohorts_are_saved_beside_the_bundle(tmp_path):
    assert read_cohorts(tmp_path) == []
    save_cohort(tmp_path, MISGENDERED)
    other = Cohort("Black women", (Condition("race", "==", "Black"), Condition("gender", "in", ("Female",))))
    save_cohort(tmp_path, other)
    save_cohort(tmp_path, Cohort("misgendered", (Condition("gender_error", "==", "wrong"),
                                                 Condition("gender_confidence", ">", 0.5))))  # replaces by name
    names = [cohort.name for cohort in read_cohorts(tmp_path)]
    assert names == ["Black women", "misgendered"]
    assert read_cohorts(tmp_path)[1].conditions[1] == Condition("gender_confidence", ">", 0.5)
    delete_cohort(tmp_path, "Black women")
    assert [cohort.name for cohort in read_cohorts(tmp_path)] == ["misgendered"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [COHORTS_FILE]  # no temporary file left
    with pytest.raises(CohortError, match="has no condition"):
        save_cohort(tmp_path, Cohort("empty", ()))


def test_bad_cohort_files_and_folders_say_so(tmp_path):
    (tmp_path / COHORTS_FILE).write_text("{not json")
    with pytest.raises(CohortError, match="is not a cohorts file"):
        read_cohorts(tmp_path)
    (tmp_path / COHORTS_FILE).write_text(json.dumps({"cohorts": [{"name": "x", "conditions": [
        {"column": "race", "op": "~", "value": "Black"}]}]}))
    with pytest.raises(CohortError, match="unknown operator '~'"):
        read_cohorts(tmp_path)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(CohortError, match="cannot save cohorts.json beside the bundle"):
        save_cohort(not_a_folder, MISGENDERED)


def test_error_tree_finds_the_misgendered_cohort_on_held_out_faces():
    frame = synthetic_predictions(n=1200)
    tree = error_tree(frame, "gender", max_depth=2, min_leaf=10)
    top = tree.leaves[0]
    conditions = {(c.column, c.op, c.value) for c in top.cohort.conditions}
    assert ("race", "==", "Black") in conditions or ("pred_race", "==", "Black") in conditions  # the same here
    assert ("gender", "==", "Female") in conditions or ("gender", "!=", "Male") in conditions
    assert top.ci_low < 0.5 < top.ci_high and top.errors > 0
    assert all(leaf.errors == 0 for leaf in tree.leaves[1:])
    assert sum(leaf.n for leaf in tree.leaves) == tree.n_measured and tree.n_grown + tree.n_measured == 1200
    assert "pred_gender" not in tree.features  # with the truth it would spell out the error
    # the cohort found selects the same faces when applied to the whole bundle
    assert errors_of(frame[top.cohort.mask(frame)], "gender").mean() == pytest.approx(0.5)


def test_error_tree_nodes_add_up_and_are_drawn_on_a_fixed_scale():
    from core.charts import error_tree_chart

    frame = synthetic_predictions(n=1200)
    tree = error_tree(frame, "gender", max_depth=3, min_leaf=10)
    root, nodes = tree.nodes[0], {node.id: node for node in tree.nodes}
    assert root.parent is None and root.n == tree.n_measured
    assert root.errors / root.n == pytest.approx(tree.overall_rate)
    for node in tree.nodes:  # each parent's faces and errors are its two children's
        below = [child for child in tree.nodes if child.parent == node.id]
        assert (len(below) == 0) == node.leaf
        if below:
            assert (sum(c.n for c in below), sum(c.errors for c in below)) == (node.n, node.errors)
            assert all(nodes[c.parent] is node for c in below)
    assert sorted((n.n, n.errors) for n in tree.nodes if n.leaf) == sorted((leaf.n, leaf.errors) for leaf in tree.leaves)
    _, points = error_tree_chart(tree).data
    assert len(points.x) == len(tree.nodes) and (points.marker.cmin, points.marker.cmax) == (0, 1)
    assert points.text[0].startswith("all faces<br>") and f"{tree.overall_rate:.0%} of {root.n:,}" in points.text[0]
    assert any("== Black" in text or "!= Black" in text for text in points.text)


def _impurity(y: np.ndarray) -> float:  # a side's Gini impurity times its rows, over 2
    return float(y.sum() * (len(y) - y.sum()) / len(y)) if len(y) else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_grow_tree_splits_as_scikit_learn(seed):
    """Each split is the best one scikit-learn finds for the same rows; where several are as good it may pick another."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(seed)
    design = np.column_stack([rng.normal(size=800), rng.integers(0, 2, 800), rng.uniform(size=800).round(2),
                              rng.integers(0, 2, 800), rng.integers(1, 5, 800)]).astype(float)
    outcome = (((design[:, 0] > 0.3) & (design[:, 1] == 1)) | (rng.uniform(size=800) < 0.2)).astype(float)
    ours = grow_tree(design, outcome, max_depth=4, min_leaf=20)
    fitted = DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, random_state=0).fit(design, outcome)
    theirs, paths = fitted.tree_, fitted.decision_path(design).toarray().astype(bool)
    for node in np.flatnonzero(theirs.children_left != -1):  # their split vs our best split of the same rows
        rows = paths[:, node]
        best = grow_tree(design[rows], outcome[rows], max_depth=1, min_leaf=20)
        left = design[rows, best.feature[0]] <= best.threshold[0]
        assert _impurity(outcome[rows][left]) + _impurity(outcome[rows][~left]) == pytest.approx(
            _impurity(outcome[paths[:, theirs.children_left[node]]]) + _impurity(outcome[paths[:, theirs.children_right[node]]]))
    visits, leaves = ours.visits(design), np.array(ours.children_left) == -1
    assert (visits[:, leaves].sum(axis=1) == 1).all() and (visits[np.arange(800), ours.apply(design)]).all()
    assert visits[:, leaves].sum(axis=0).min() >= 20  # every leaf keeps min_leaf rows
    assert sum(_impurity(outcome[visits[:, i]]) for i in np.flatnonzero(leaves)) == pytest.approx(
        sum(_impurity(outcome[paths[:, i]]) for i in np.flatnonzero(theirs.children_left == -1)))


def test_grow_tree_stops_at_pure_nodes_depth_and_leaf_size():
    design = np.array([[0.0], [0.0], [1.0], [1.0], [2.0], [2.0]])
    assert grow_tree(design, np.zeros(6), max_depth=3, min_leaf=1).children_left == (-1,)  # no errors: nothing to split
    split = grow_tree(design, np.array([0.0, 0, 0, 0, 1, 1]), max_depth=3, min_leaf=1)
    assert split.feature[0] == 0 and split.threshold[0] == 1.5 and len(split.feature) == 3  # two pure children
    assert grow_tree(design, np.array([0.0, 0, 0, 0, 1, 1]), max_depth=0, min_leaf=1).children_left == (-1,)
    assert grow_tree(design, np.array([0.0, 0, 0, 0, 1, 1]), max_depth=3, min_leaf=4).children_left == (-1,)
    assert grow_tree(design[:, :0], np.array([0.0, 0, 0, 0, 1, 1]), max_depth=3, min_leaf=1).children_left == (-1,)
    with pytest.raises(ValueError, match="no column to split on"):  # the page says so when every column is unticked
        error_tree(synthetic_predictions(n=600), "gender", features=[], min_leaf=10)


def test_error_tree_keeps_one_persons_photos_in_one_half():
    frame = synthetic_predictions(n=600).assign(dup_group=np.arange(600) // 3)
    tree = error_tree(frame, "gender", min_leaf=10)
    assert tree.n_grown % 3 == 0 and tree.n_measured % 3 == 0
    with pytest.raises(ValueError, match="too few"):
        error_tree(frame.iloc[:50], "gender", min_leaf=30)
    with pytest.raises(ValueError, match="unknown head"):
        errors_of(frame, "skin")


def test_label_suspects_round_trip_and_metrics_without_them(tmp_path):
    frame = synthetic_predictions().assign(face_index=0)
    frame.loc[0, "file"] = "=cmd.jpg"  # names a spreadsheet would take for a formula survive as written
    wrong = frame[MISGENDERED.mask(frame)]
    for _, row in wrong.iterrows():
        mark_suspect(tmp_path, row, True, head="gender")
    mark_suspect(tmp_path, frame.iloc[0], True)
    mark_suspect(tmp_path, frame.iloc[0], False)
    suspects = read_suspects(tmp_path)
    assert len(suspects) == 12 and set(suspects["head"]) == {"gender"}
    marked = suspect_index(frame, suspects)
    assert list(marked) == list(wrong.index)
    mark_suspect(tmp_path, frame.iloc[0], True, note="looks older")
    assert "=cmd.jpg" in set(read_suspects(tmp_path)["file"])
    table = with_and_without(frame, marked, rounds=50)
    gender = table.loc["gender_accuracy"]
    assert gender["all faces value"] == pytest.approx(1 - 12 / 240)
    assert gender["without suspects value"] == pytest.approx(1.0) and gender["without suspects n"] == 228
    assert gender["change"] == pytest.approx(12 / 240)
    assert isinstance(table, pd.DataFrame)


def test_many_faces_are_marked_and_unmarked_in_one_write(tmp_path):
    frame = synthetic_predictions().assign(face_index=0)
    frame.loc[5, "face_index"] = 1  # a second face of a photo is a face of its own
    frame.loc[5, "file"] = frame.loc[4, "file"]
    assert mark_suspects(tmp_path, frame.iloc[:10], True, head="race", note="labels look swapped") == 10
    assert mark_suspects(tmp_path, frame.iloc[[0, 1, 1]], True, head="gender") == 0  # already marked: note replaced
    suspects = read_suspects(tmp_path)
    assert len(suspects) == 10 and list(suspect_index(frame, suspects)) == list(frame.index[:10])
    assert (suspects["head"] == "gender").sum() == 2 and (suspects["note"] == "labels look swapped").sum() == 8
    assert mark_suspects(tmp_path, frame.iloc[3:20], False) == 7
    assert sorted(suspect_index(frame, read_suspects(tmp_path))) == [0, 1, 2]


def test_two_cohorts_side_by_side():
    from core.cohorts import parse_value, side_by_side

    frame = synthetic_predictions()
    black_women = Cohort("Black women", (Condition("race", "==", "Black"), Condition("gender", "==", "Female")))
    table, shared = side_by_side(frame, None, black_women, ["gender_accuracy"], rounds=50)
    row = table.loc["gender_accuracy"]
    assert row["a"] == pytest.approx(1 - 12 / 240) and row["b"] == pytest.approx(0.5) and row["b_n"] == 24
    assert row["diff_low"] < row["b_minus_a"] < row["diff_high"] < 0 and shared == 24
    assert parse_value("in", "White, Black,") == ("White", "Black") and parse_value(">", " 0.5") == 0.5
    with pytest.raises(CohortError, match="needs a number"):
        parse_value("<=", "old")


def test_error_tree_on_more_faces_than_it_grows_on_samples_them(monkeypatch):
    from core import error_analysis

    frame = synthetic_predictions(n=1200)
    monkeypatch.setattr(error_analysis, "MAX_TREE_FACES", 800)
    tree = error_tree(frame, "gender", max_depth=2, min_leaf=10)
    assert tree.sampled_from == 1200 and tree.n_grown + tree.n_measured == 800
    assert errors_of(frame[tree.leaves[0].cohort.mask(frame)], "gender").mean() == pytest.approx(0.5)  # still found
    assert error_tree(frame.iloc[:700], "gender", min_leaf=10).sampled_from is None


def test_race7_errors_are_an_outcome_and_a_tree_finds_the_seven_class_models_worst_cohort():
    frame = seven_race_predictions()  # every Middle Eastern woman called White, every other face right
    errors = errors_of(frame, "race7")
    assert errors.sum() == 50 and errors.notna().all()
    assert with_outcomes(frame.drop(columns="pred_race7"), ["race7_error"])["race7_error"].isna().all()  # five-class
    features = candidate_features(frame, "race7")
    assert "pred_race7" not in features and "pred_race" not in features  # with the truth, each spells the error
    assert {"fairface_race", "gender", "race7_confidence"} <= set(features)
    tree = error_tree(frame, "race7", features=["fairface_race", "gender"], max_depth=2, min_leaf=10)
    worst = max(tree.leaves, key=lambda leaf: leaf.rate)
    assert worst.rate == 1.0 and set(worst.cohort.conditions) == {
        Condition("fairface_race", "==", "Middle Eastern"), Condition("gender", "==", "Female")}
    assert Cohort("wrong race-7", (Condition("race7_error", "==", "wrong"),)).mask(frame).sum() == 50
