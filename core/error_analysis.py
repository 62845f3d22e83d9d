"""Error analysis: a shallow decision tree over a bundle's metadata that finds the cohorts with the most errors.

The tree is grown on one half of the faces and its leaves are measured on the other half ("honest"
estimates): a cohort picked because it looked bad on the same faces would look worse than it is.
Photos of one person (a `dup_group` or identity column) stay in one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from core import labels
from core.cohorts import Cohort, Condition, with_outcomes
from core.fairness import MISSING, cluster_column, grouping_columns, wilson_interval
from core.gallery import HEADS

__all__ = ["HEADS", "NUMERIC_FEATURES", "Leaf", "Node", "ErrorTree", "errors_of", "candidate_features", "error_tree", "MAX_TREE_FACES"]

AGE_TOLERANCE = 5.0  # head "age": an error is more than this many years off (1 − CS@5)
NUMERIC_FEATURES = ("n_faces", "face_px", "face_score", "image_width")
PREDICTED = ("pred_gender", "pred_race", "pred_age_bin")


@dataclass(frozen=True)
class Leaf:
    """One cohort of the tree, measured on the held-out half."""

    cohort: Cohort
    n: int  # held-out faces in the cohort
    errors: int
    rate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Node:
    """A node of the tree as drawn, measured on the held-out half like the leaves."""

    id: int
    parent: int | None
    split: str  # the condition that leads here from the parent ("" at the root)
    n: int
    errors: int
    leaf: bool


@dataclass(frozen=True)
class ErrorTree:
    head: str
    leaves: list[Leaf]  # highest error rate first
    overall_rate: float
    n_grown: int  # faces the tree was grown on
    n_measured: int  # faces its leaves were measured on
    features: list[str]
    sampled_from: int | None = None  # faces in the selection, when the tree saw a random `MAX_TREE_FACES` of them
    nodes: tuple[Node, ...] = ()  # every node, root first, parents before children


def errors_of(frame: pd.DataFrame, head: str) -> pd.Series:
    """1.0 where the prediction for `head` is wrong, 0.0 where right, NaN where the truth is unknown."""
    return _errors(with_outcomes(frame), head)


def _errors(outcomes: pd.DataFrame, head: str) -> pd.Series:
    """`errors_of` from a frame `with_outcomes` has already extended."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    if head == "age":
        error = outcomes["age_error"]
        return (error > AGE_TOLERANCE).astype("float64").where(error.notna())
    return outcomes[f"{head}_error"].map({"right": 0.0, "wrong": 1.0}).astype("float64")


def candidate_features(frame: pd.DataFrame, head: str) -> list[str]:
    """Columns a tree may split on: the groups, the other heads' predictions, face geometry and the head's confidence.

    The head's own prediction is left out: with the true label it spells out the error itself.
    """
    groups = [c for c in grouping_columns(frame) if c not in NUMERIC_FEATURES]
    predicted = [c for c in PREDICTED if c in frame and c != f"pred_{head}"]  # truth + own prediction = the error
    numeric = [c for c in NUMERIC_FEATURES if c in frame and frame[c].nunique() > 1]
    confidence = [f"{head}_confidence"] if head in labels.CLASSES else []
    return list(dict.fromkeys(groups + predicted + numeric + confidence))


def _design(frame: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, list[tuple[str, str | None]]]:
    """A numeric matrix for the tree: numbers as they are (missing: −1), text one-hot; and what each column means."""
    columns, meaning = [], []
    for feature in features:
        series = frame[feature]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            columns.append(pd.to_numeric(series, errors="coerce").astype("float64").fillna(-1.0).to_numpy())
            meaning.append((feature, None))
            continue
        text = series.astype("string").fillna(MISSING)
        for value in sorted(text.unique()):
            columns.append((text == value).to_numpy(dtype=float))
            meaning.append((feature, str(value)))
    return np.column_stack(columns) if columns else np.zeros((len(frame), 0)), meaning


def _halves(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """True for the rows the tree is grown on: about half, whole clusters (one person's photos) together."""
    column = cluster_column(frame)
    if column is None:  # every row its own cluster
        clusters, count = np.arange(len(frame)), len(frame)
    else:  # a row without a value is its own cluster, named by its index
        keys = frame[column].astype("string").fillna(pd.Series(frame.index.astype(str), index=frame.index))
        clusters, unique = pd.factorize(keys)
        count = len(unique)
    chosen = np.zeros(count, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(count)[: count // 2]] = True
    return chosen[clusters]


def _leaf_conditions(tree: DecisionTreeClassifier, meaning: list[tuple[str, str | None]]) -> dict[int, tuple]:
    """Leaf node id -> the conditions on the path to it (one-hot splits read as == / != a value)."""
    inner = tree.tree_
    paths: dict[int, tuple] = {}

    def walk(node: int, conditions: tuple) -> None:
        if inner.children_left[node] == -1:
            paths[node] = conditions
            return
        feature, value = meaning[inner.feature[node]]
        threshold = float(inner.threshold[node])
        if value is None:
            left, right = Condition(feature, "<=", round(threshold, 4)), Condition(feature, ">", round(threshold, 4))
        else:
            left, right = Condition(feature, "!=", value), Condition(feature, "==", value)
        walk(inner.children_left[node], conditions + (left,))
        walk(inner.children_right[node], conditions + (right,))

    walk(0, ())
    return paths


def _nodes(tree: DecisionTreeClassifier, meaning: list[tuple[str, str | None]], design: np.ndarray,
           outcome: np.ndarray) -> tuple[Node, ...]:
    """Every node with the split that leads to it, and its faces and errors among the rows of `design`."""
    inner = tree.tree_
    visits = tree.decision_path(design)  # rows x nodes: 1 where a row passes through the node
    n = np.asarray(visits.sum(axis=0)).ravel().astype(int)
    errors = np.asarray(visits.T @ outcome).ravel().round().astype(int)
    nodes = [Node(0, None, "", int(n[0]), int(errors[0]), bool(inner.children_left[0] == -1))]
    for node in nodes:  # grows while it is read: breadth first
        if node.leaf:
            continue
        feature, value = meaning[inner.feature[node.id]]
        threshold = round(float(inner.threshold[node.id]), 4)
        splits = (f"{feature} <= {threshold:g}", f"{feature} > {threshold:g}") if value is None else \
            (f"{feature} != {value}", f"{feature} == {value}")
        for child, split in zip((inner.children_left[node.id], inner.children_right[node.id]), splits):
            nodes.append(Node(int(child), node.id, split, int(n[child]), int(errors[child]),
                              bool(inner.children_left[child] == -1)))
    return tuple(nodes)


def _simplify(conditions: tuple[Condition, ...]) -> tuple[Condition, ...]:
    """One condition per column and kind: == wins over !=, several != become one `not in`, bounds keep the tightest."""
    kept: dict[tuple[str, str], Condition] = {}
    for condition in conditions:
        column, op = condition.column, condition.op
        if op == "==":
            kept = {key: c for key, c in kept.items() if key[0] != column or key[1] in ("<=", ">")}
            kept[column, "=="] = condition
        elif op == "!=" and (column, "==") not in kept:
            before = kept.pop((column, "!="), None)
            earlier = () if before is None else before.value if before.op == "not in" else (before.value,)
            values = (*earlier, condition.value)
            kept[column, "!="] = Condition(column, "not in", tuple(values)) if len(values) > 1 else condition
        elif op in ("<=", ">"):
            before = kept.get((column, op))
            tighter = before is None or (condition.value < before.value if op == "<=" else condition.value > before.value)
            kept[column, op] = condition if tighter else before
    return tuple(kept.values())


MAX_TREE_FACES = 100_000  # a larger selection is sampled (seeded): half grows the tree, half measures it
_UNREAD = ("file", "path", "source", "faces", "face_reason")  # per-image text a tree never reads: not sampled


def error_tree(frame: pd.DataFrame, head: str, *, features: list[str] | None = None, max_depth: int = 3,
               min_leaf: int = 30, seed: int = 0) -> ErrorTree:
    """Grow a tree on half the faces with a true label for `head` (of a random `MAX_TREE_FACES` when there are more);
    measure its leaves on the other half.

    Raises:
        ValueError: fewer than 4 × `min_leaf` faces with a true label, or an unknown head.
    """
    sampled_from = len(frame) if len(frame) > MAX_TREE_FACES else None
    if sampled_from:  # a million-row bundle: a random sample keeps growing and measuring to about a second
        unread = [column for column in _UNREAD if column in frame and column not in (features or ())]
        frame = frame.drop(columns=unread).sample(MAX_TREE_FACES, random_state=seed)
    outcomes = with_outcomes(frame)
    errors = _errors(outcomes, head)
    known = frame[errors.notna()]
    if len(known) < 4 * min_leaf:
        raise ValueError(f"{len(known)} faces with a true {head}: too few to grow a tree with leaves of {min_leaf} "
                         f"or more on half of them (need {4 * min_leaf})")
    outcome = errors[errors.notna()].to_numpy()
    features = features if features is not None else candidate_features(known, head)
    design, meaning = _design(outcomes[errors.notna()], features)
    grow = _halves(known, seed)
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_leaf, random_state=seed)
    tree.fit(design[grow], outcome[grow])
    paths = _leaf_conditions(tree, meaning)
    measured_leaf = tree.apply(design[~grow])
    measured = outcome[~grow]
    leaves = []
    for node, conditions in paths.items():
        inside = measured_leaf == node
        n, wrong = int(inside.sum()), int(measured[inside].sum())
        low, high = wilson_interval(wrong, n)
        simple = _simplify(conditions)
        name = " and ".join(c.text() for c in simple) or "all faces"
        leaves.append(Leaf(Cohort(name, simple), n, wrong, wrong / n if n else np.nan, low, high))
    leaves.sort(key=lambda leaf: (-np.nan_to_num(leaf.rate, nan=-1.0), -leaf.n))
    return ErrorTree(head, leaves, float(measured.mean()), int(grow.sum()), int((~grow).sum()), features, sampled_from,
                     _nodes(tree, meaning, design[~grow], measured))
