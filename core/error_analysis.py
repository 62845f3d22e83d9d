"""Error analysis: a shallow decision tree over a bundle's metadata that finds the cohorts with the most errors.

The tree is grown on one half of the faces and its leaves are measured on the other half ("honest"
estimates): a cohort picked because it looked bad on the same faces would look worse than it is.
Photos of one person (a `dup_group` or identity column) stay in one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import labels
from core.cohorts import Cohort, Condition, with_outcomes
from core.fairness import MISSING, cluster_column, grouping_columns, wilson_interval
from core.gallery import HEADS

__all__ = ["HEADS", "NUMERIC_FEATURES", "Leaf", "Node", "ErrorTree", "errors_of", "candidate_features", "error_tree", "grow_tree", "MAX_TREE_FACES"]

AGE_TOLERANCE = 5.0  # head "age": an error is more than this many years off (1 − CS@5)
NUMERIC_FEATURES = ("n_faces", "face_px", "face_score", "image_width")
PREDICTED = ("pred_gender", "pred_race", "pred_age_bin", "pred_race7")
# Heads whose predictions are one another's: race-5 is race-7 summed, so with the truth either spells out the error
_SAME_HEAD = {"race": ("pred_race", "pred_race7"), "race7": ("pred_race", "pred_race7")}


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
    own = _SAME_HEAD.get(head, (f"pred_{head}",))  # truth + own prediction = the error
    predicted = [c for c in PREDICTED if c in frame and c not in own]
    numeric = [c for c in NUMERIC_FEATURES if c in frame and frame[c].nunique() > 1]
    confidence = [f"{head}_confidence"] if head in labels.HEAD_CLASSES else []
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


@dataclass(frozen=True)
class _Tree:
    """A fitted classification tree, laid out like scikit-learn's `tree_`: node 0 is the root, a node's children come
    after it, a leaf's children are -1; rows with `design[:, feature] <= threshold` go left."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    children_left: tuple[int, ...]
    children_right: tuple[int, ...]

    def visits(self, design: np.ndarray) -> np.ndarray:
        """Rows x nodes: True where a row passes through the node."""
        design = design.astype(np.float32, copy=False)  # compared as the tree was grown
        passes = np.zeros((len(design), len(self.feature)), dtype=bool)
        passes[:, 0] = True
        for node, left in enumerate(self.children_left):
            if left != -1:
                goes_left = design[:, self.feature[node]] <= self.threshold[node]
                passes[:, left] = passes[:, node] & goes_left
                passes[:, self.children_right[node]] = passes[:, node] & ~goes_left
        return passes

    def apply(self, design: np.ndarray) -> np.ndarray:
        """Each row's leaf."""
        return self.leaves_of(self.visits(design))

    def leaves_of(self, visits: np.ndarray) -> np.ndarray:
        """Each row's leaf, from its `visits`."""
        return np.argmax(visits & (np.array(self.children_left) == -1), axis=1)


def grow_tree(design: np.ndarray, outcome: np.ndarray, max_depth: int, min_leaf: int) -> _Tree:
    """A CART tree of 0/1 `outcome` on `design` (Gini impurity, best split, as scikit-learn's DecisionTreeClassifier).

    A node is split while it is impure, above `max_depth` and has 2 × `min_leaf` rows, at the split with the lowest
    impurity whose sides both keep `min_leaf` rows (ties: the first column, then the lowest threshold), at the midpoint
    between two neighbouring values. Written here because importing scikit-learn and SciPy takes 0.7–0.8 s on a 2-core CPU.
    """
    design = design.astype(np.float32)  # as scikit-learn grows its trees
    binary = ((design == 0) | (design == 1)).all(axis=0)  # one-hot columns: one split each, at 0.5, found together
    numeric = {index: np.unique(design[:, index], return_inverse=True) for index in np.flatnonzero(~binary)}
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []

    def children_impurity(n_left, e_left, n, errors):  # Gini of the two sides weighted by their rows, over 2
        n_right, e_right = n - n_left, errors - e_left
        with np.errstate(divide="ignore", invalid="ignore"):
            impurity = e_left * (n_left - e_left) / n_left + e_right * (n_right - e_right) / n_right
        return np.where((n_left >= max(min_leaf, 1)) & (n_right >= max(min_leaf, 1)), impurity, np.inf)

    def best_split(rows: np.ndarray, y: np.ndarray) -> tuple[int, float] | None:
        n, errors = len(rows), float(y.sum())
        impurity = np.full(design.shape[1], np.inf)
        thresholds = np.full(design.shape[1], 0.5)
        ones = design[np.ix_(rows, np.flatnonzero(binary))]
        impurity[binary] = children_impurity(n - ones.sum(axis=0), errors - y @ ones, n, errors)  # left: the zeros
        for index, (values, codes) in numeric.items():
            code = codes[rows]
            count = np.bincount(code, minlength=len(values))
            present = np.flatnonzero(count)
            if len(present) < 2:
                continue
            side = children_impurity(np.cumsum(count[present])[:-1],
                                     np.cumsum(np.bincount(code, weights=y, minlength=len(values))[present])[:-1], n, errors)
            position = int(np.argmin(side))
            low, high = float(values[present[position]]), float(values[present[position + 1]])
            middle = low / 2.0 + high / 2.0
            impurity[index], thresholds[index] = side[position], low if middle == high else middle
        index = int(np.argmin(impurity)) if len(impurity) else 0
        return None if not len(impurity) or np.isinf(impurity[index]) else (index, float(thresholds[index]))

    def grow(rows: np.ndarray, depth: int) -> int:
        node = len(feature)
        feature.append(-2)
        threshold.append(-2.0)
        left.append(-1)
        right.append(-1)
        y = outcome[rows]
        if depth >= max_depth or len(rows) < max(2 * min_leaf, 2) or y.min() == y.max():  # pure: nothing to split
            return node
        split = best_split(rows, y)
        if split is None:
            return node
        feature[node], threshold[node] = split
        goes_left = design[rows, split[0]] <= split[1]
        left[node] = grow(rows[goes_left], depth + 1)
        right[node] = grow(rows[~goes_left], depth + 1)
        return node

    grow(np.arange(len(design)), 0)
    return _Tree(tuple(feature), tuple(threshold), tuple(left), tuple(right))


def _conditions(inner: _Tree, meaning: list[tuple[str, str | None]]) -> dict[int, Condition]:
    """Each node but the root -> the condition that leads to it from its parent (one-hot splits read as != / ==)."""
    into: dict[int, Condition] = {}
    for node, (left, right) in enumerate(zip(inner.children_left, inner.children_right)):
        if left == -1:
            continue
        feature, value = meaning[inner.feature[node]]
        if value is None:
            threshold = round(float(inner.threshold[node]), 4)
            into[left], into[right] = Condition(feature, "<=", threshold), Condition(feature, ">", threshold)
        else:
            into[left], into[right] = Condition(feature, "!=", value), Condition(feature, "==", value)
    return into


def _leaf_conditions(inner: _Tree, into: dict[int, Condition]) -> dict[int, tuple]:
    """Leaf node id -> the conditions on the path to it, leaves left to right."""
    paths: dict[int, tuple] = {}

    def walk(node: int, conditions: tuple) -> None:
        if inner.children_left[node] == -1:
            paths[node] = conditions
            return
        for child in (inner.children_left[node], inner.children_right[node]):
            walk(child, conditions + (into[child],))

    walk(0, ())
    return paths


def _nodes(inner: _Tree, into: dict[int, Condition], visits: np.ndarray, outcome: np.ndarray) -> tuple[Node, ...]:
    """Every node with the split that leads to it, and its faces and errors among the rows of `visits`."""
    n = visits.sum(axis=0)
    errors = (outcome @ visits).round().astype(int)
    nodes = [Node(0, None, "", int(n[0]), int(errors[0]), bool(inner.children_left[0] == -1))]
    for node in nodes:  # grows while it is read: breadth first
        if node.leaf:
            continue
        for child in (inner.children_left[node.id], inner.children_right[node.id]):
            condition = into[child]
            value = f"{condition.value:g}" if isinstance(condition.value, float) else condition.value
            nodes.append(Node(int(child), node.id, f"{condition.column} {condition.op} {value}", int(n[child]),
                              int(errors[child]), bool(inner.children_left[child] == -1)))
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
        ValueError: fewer than 4 × `min_leaf` faces with a true label, an unknown head, or no feature to split on.
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
    if not features:
        raise ValueError("no column to split on: pick at least one")
    design, meaning = _design(outcomes[errors.notna()], features)
    grow = _halves(known, seed)
    tree = grow_tree(design[grow], outcome[grow], max_depth, min_leaf)
    into = _conditions(tree, meaning)
    paths = _leaf_conditions(tree, into)
    visits = tree.visits(design[~grow])  # the measuring half: its leaves, and every node's faces and errors
    measured_leaf = tree.leaves_of(visits)
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
                     _nodes(tree, into, visits, measured))
