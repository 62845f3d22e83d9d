"""Plotly figures from tables: forest plots of subgroup metrics, confusion heatmaps, distributions, comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.compare import Comparison
from core.error_analysis import ErrorTree
from core.fairness import (
    METRIC_TERMS,
    METRICS,
    PROPORTIONS,
    SMALL_N,
    class_positions,
    distinct_text,
    group_label,
    race_x_gender,
    taxonomy,
    value_order,
    wilson_interval,
)

__all__ = ["value_range", "forest_plot", "confusion_heatmap", "distribution_bar", "strata_heatmap", "comparison_bars",
           "delta_chart", "intersection_heatmap", "reliability_chart", "error_tree_chart"]

_GREY, _BLUE = "#adb5bd", "#3b5bdb"


def value_range(metric: str, highs: pd.Series, lows: pd.Series | None = None) -> list[float]:
    """The axis range of a metric's values, one convention everywhere: shares on 0–1, age errors from 0.

    Values are never zoomed, so a gap looks as large as it is; differences get their own chart
    (`delta_chart`) centred on 0. The signed age error spans both sides of 0 symmetrically.
    """
    if metric in PROPORTIONS:
        return [0.0, 1.02]
    top = float(np.nanmax(np.abs(highs))) if len(highs) else 1.0
    if metric == "signed_age_error":
        bottom = float(np.nanmax(np.abs(lows))) if lows is not None and len(lows) else top
        edge = 1.05 * max(top, bottom, 1.0)
        return [-edge, edge]
    return [0.0, 1.05 * max(top, 1.0)]


def forest_plot(table: pd.DataFrame, metric: str, overall: float | None = None) -> go.Figure:
    """One point per group with its 95 % interval; groups with small n in grey."""
    names = [group_label(key) for key in table.index]
    colors = [_GREY if small else _BLUE for small in table["small_n"]]
    value = table[metric]
    figure = go.Figure(go.Scatter(
        x=value, y=names, mode="markers", marker={"color": colors, "size": 10},
        error_x={"type": "data", "symmetric": False, "array": table[f"{metric}_ci_high"] - value,
                 "arrayminus": value - table[f"{metric}_ci_low"], "color": "#868e96"},
        customdata=table["n"], hovertemplate="%{y}: %{x:.3f} (n=%{customdata})<extra></extra>"))
    if overall is not None:
        figure.add_vline(x=overall, line_dash="dash", line_color="#e8590c", annotation_text="overall")
    term = METRIC_TERMS[metric]
    figure.update_layout(title=f"{term.name}: {term.help()}", xaxis_title=term.name,
                         yaxis={"autorange": "reversed", "type": "category"},  # groups '1'…'10' are not a scale
                         xaxis={"range": value_range(metric, table[f"{metric}_ci_high"], table[f"{metric}_ci_low"])},
                         height=max(300, 28 * len(names) + 120), margin={"l": 10, "r": 10, "t": 50, "b": 40})
    return figure


def confusion_heatmap(table: pd.DataFrame, *, normalized: bool) -> go.Figure:
    """Heatmap of a confusion table (rows true, columns predicted)."""
    figure = px.imshow(table.fillna(0).to_numpy(), x=[str(c) for c in table.columns], y=[str(i) for i in table.index],
                       text_auto=".2f" if normalized else "d", color_continuous_scale="Blues", aspect="auto",
                       labels={"x": table.columns.name, "y": table.index.name, "color": "share" if normalized else "count"})
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=120 + 45 * len(table))
    return figure


def distribution_bar(frame: pd.DataFrame, column: str) -> go.Figure:
    """Counts of a label column in taxonomy order, missing values included."""
    order = taxonomy(column)
    codes, text = distinct_text(frame[column])
    text = [*text, "(missing)"]
    counts = pd.Series(np.bincount(codes + 1, minlength=len(text))[[*range(1, len(text)), 0]], index=text)
    counts = counts[counts > 0].groupby(level=0, sort=False).sum().sort_values(ascending=False, kind="stable")
    index = [name for name in (order or []) if name in counts.index] + [n for n in counts.index if n not in (order or [])]
    counts = counts.reindex(index)
    figure = px.bar(x=counts.index, y=counts.to_numpy(), labels={"x": column, "y": "faces"}, text=counts.to_numpy())
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=300)
    return figure


def strata_heatmap(frame: pd.DataFrame) -> go.Figure:
    """Counts per race x gender (rows; FairFace's seven races where the data has them: `race_x_gender`) and age bin
    (columns), the races in their taxonomy's order."""
    columns = (*race_x_gender(frame), "age_bin")
    races, genders, bins = (taxonomy(column) for column in columns)
    r, g, b = (class_positions(frame[column], names) for column, names in zip(columns, (races, genders, bins)))
    cells = ((r * len(genders) + g) * len(bins) + b)[(r >= 0) & (g >= 0) & (b >= 0)]
    counts = np.bincount(cells, minlength=len(races) * len(genders) * len(bins)).reshape(-1, len(bins))
    figure = px.imshow(counts, x=list(bins), y=[f"{race} / {gender}" for race in races for gender in genders],
                       text_auto="d", color_continuous_scale="Blues", aspect="auto",
                       labels={"x": "age bin", "y": f"{columns[0].replace('_', ' ')} / gender", "color": "faces"})
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=140 + 30 * len(counts))
    return figure


def comparison_bars(comparison: Comparison, metric: str) -> go.Figure:
    """Grouped bars: one bar per bundle in each group, with its 95 % interval."""
    table = comparison.by_group[metric]
    figure = go.Figure()
    for name in comparison.names:
        figure.add_bar(name=name, x=[group_label(key) for key in table.index], y=table[name],
                       error_y={"type": "data", "symmetric": False, "array": table[f"{name} ci_high"] - table[name],
                                "arrayminus": table[name] - table[f"{name} ci_low"]})
    figure.update_layout(barmode="group", yaxis_title=METRIC_TERMS[metric].name, height=380, xaxis={"type": "category"},
                         yaxis={"range": value_range(metric, table[[f"{n} ci_high" for n in comparison.names]].max(axis=1),
                                                     table[[f"{n} ci_low" for n in comparison.names]].min(axis=1))},
                         legend={"orientation": "h", "y": -0.15}, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def delta_chart(comparison: Comparison, metric: str) -> go.Figure:
    """Per group, each compared bundle's change from the reference (B − A) with its 95 % interval, around 0."""
    table, reference = comparison.by_group[metric], comparison.names[0]
    term = METRIC_TERMS[metric]
    figure = go.Figure()
    for name in comparison.names[1:]:
        delta = table[f"delta {name}"]
        figure.add_scatter(name=f"{name} − {reference}", mode="markers", marker={"size": 10},
                           x=delta, y=[group_label(key) for key in table.index],
                           error_x={"type": "data", "symmetric": False, "array": table[f"delta {name} ci_high"] - delta,
                                    "arrayminus": delta - table[f"delta {name} ci_low"]})
    figure.add_vline(x=0, line_color="#495057")
    better = {"higher": "right", "lower": "left", "closer to 0": "toward 0"}.get(term.good, "")
    figure.update_layout(title=f"Change in {term.name} (B − A)" + (f"; better is {better}" if better else ""),
                         xaxis_title=f"{term.name}: change", yaxis={"autorange": "reversed", "type": "category"},
                         height=max(260, 32 * len(table) * max(1, len(comparison.names) - 1) // 2 + 140),
                         legend={"orientation": "h", "y": -0.25}, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def intersection_heatmap(table: pd.DataFrame, metric: str) -> go.Figure:
    """A metric over the intersections of two columns (a `subgroup_metrics` table grouped by two columns).

    Cells with fewer than SMALL_N faces are grey with their n, so that no colour rests on a handful of faces.
    """
    rows, columns = (value_order(pd.Series(table.index.get_level_values(level), name=table.index.names[level]))
                     for level in (0, 1))  # the tables' order: taxonomy, numbers (Monk 1-10), text; (missing) last
    full = table.reindex(pd.MultiIndex.from_product([rows, columns], names=table.index.names))
    value = full[metric].where(~full["small_n"].fillna(True).astype(bool)).to_numpy().reshape(len(rows), len(columns))
    n = full["n"].fillna(0).astype(int).to_numpy().reshape(len(rows), len(columns))
    text = [[f"{v:.2f}<br>n={k}" if not np.isnan(v) else "" for v, k in zip(vs, ks)] for vs, ks in zip(value, n)]
    small = [[f"n={k}" if np.isnan(v) else "" for v, k in zip(vs, ks)] for vs, ks in zip(value, n)]  # each cell once
    higher_is_better = METRICS[metric][1]
    shown = pd.Series(value[~np.isnan(value)])
    low, high = value_range(metric, shown, shown)  # colours are not zoomed either; shares on exactly 0–1
    blank = np.where(np.isnan(value), 0.0, np.nan)  # plotly writes no text on a gap: small cells are a grey trace
    figure = go.Figure([
        go.Heatmap(z=value, x=columns, y=rows, text=text, texttemplate="%{text}", hoverongaps=False,
                   zmin=low, zmax=min(high, 1.0) if metric in PROPORTIONS else high,
                   colorscale="RdBu" if higher_is_better else "RdBu_r", colorbar={"title": METRIC_TERMS[metric].name},
                   hovertemplate="%{y} × %{x}: %{z:.3f}<extra></extra>"),
        go.Heatmap(z=blank, x=columns, y=rows, text=small, texttemplate="%{text}", hoverongaps=False, showscale=False,
                   colorscale=[[0, "#eeeeee"], [1, "#eeeeee"]], hovertemplate="%{y} × %{x}: %{text}<extra></extra>")])
    figure.update_layout(title=f"{METRIC_TERMS[metric].name} by {table.index.names[0]} × {table.index.names[1]} (grey: n < {SMALL_N})",
                         xaxis={"title": table.index.names[1], "type": "category"},  # '1'…'10' are values, not a scale
                         yaxis={"title": table.index.names[0], "type": "category", "autorange": "reversed"},
                         height=120 + 50 * len(rows), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def reliability_chart(curves: dict[str, pd.DataFrame], head: str) -> go.Figure:
    """Reliability diagram: per confidence bin, the share right (95 % Wilson interval) against the mean confidence,
    one line per group (`core.calibration.reliability` tables); the diagonal is perfect calibration."""
    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#868e96"},
                                  name="perfectly calibrated", hoverinfo="skip"))
    for name, curve in curves.items():
        figure.add_trace(go.Scatter(
            x=curve["confidence"], y=curve["accuracy"], mode="lines+markers", name=name, customdata=curve["n"],
            error_y={"type": "data", "symmetric": False, "array": curve["ci_high"] - curve["accuracy"],
                     "arrayminus": curve["accuracy"] - curve["ci_low"]},
            hovertemplate="confidence %{x:.2f}: right %{y:.2f} (n=%{customdata})<extra>" + name + "</extra>"))
    figure.update_layout(title=f"Reliability of the {head} head: below the diagonal = overconfident",
                         xaxis={"title": "confidence (probability of the predicted class)", "range": [0, 1]},
                         yaxis={"title": "share right", "range": [0, 1.02]}, height=460,
                         margin={"l": 10, "r": 10, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.2})
    return figure


def error_tree_chart(tree: ErrorTree) -> go.Figure:
    """The error tree as a diagram, root on the left: each node's error rate (colour on 0–100 %) and faces, measured
    on the held-out half, under the condition that leads to it; leaves top to bottom as the tree orders them."""
    children: dict[int | None, list] = {}
    for node in tree.nodes:
        children.setdefault(node.parent, []).append(node)
    place: dict[int, tuple[int, float]] = {}  # node id -> (depth, row)
    leaf_rows = iter(range(len(tree.nodes)))

    def lay_out(node, depth: int) -> float:  # leaves on rows 0, 1, 2, …; a parent level with its children's middle
        below = [lay_out(child, depth + 1) for child in children.get(node.id, [])]
        row = float(np.mean(below)) if below else float(next(leaf_rows))
        place[node.id] = (depth, row)
        return row

    lay_out(tree.nodes[0], 0)
    nodes = list(tree.nodes)
    depths, rows = [place[node.id][0] for node in nodes], [place[node.id][1] for node in nodes]
    rates = [node.errors / node.n if node.n else np.nan for node in nodes]
    share = [f"{rate:.0%} of {node.n:,}" if node.n else "no faces" for node, rate in zip(nodes, rates)]
    edges_x, edges_y = [], []
    for node in nodes[1:]:
        edges_x += [place[node.parent][0], place[node.id][0], None]
        edges_y += [place[node.parent][1], place[node.id][1], None]
    intervals = [wilson_interval(node.errors, node.n) for node in nodes]
    figure = go.Figure(go.Scatter(x=edges_x, y=edges_y, mode="lines", line={"color": "#adb5bd"}, hoverinfo="skip"))
    figure.add_trace(go.Scatter(
        x=depths, y=rows, mode="markers+text", textfont={"size": 11},
        text=[f"{node.split}  ·  {text}" if node.leaf else f"{node.split or 'all faces'}<br>{text}"
              for node, text in zip(nodes, share)],
        textposition=["middle right" if node.leaf else "top center" for node in nodes],
        marker={"size": 22, "color": rates, "cmin": 0, "cmax": 1, "colorscale": "Reds", "line": {"color": "#495057", "width": 1},
                "colorbar": {"title": "error rate", "tickformat": ".0%"}},
        customdata=[[node.split or "all faces", node.n, node.errors, low, high] for node, (low, high) in zip(nodes, intervals)],
        hovertemplate="%{customdata[0]}<br>error rate %{marker.color:.1%} (95 % %{customdata[3]:.1%}–%{customdata[4]:.1%})"
                      "<br>%{customdata[2]:,} errors among %{customdata[1]:,} faces<extra></extra>"))
    levels, leaves = max(depths) + 1, sum(node.leaf for node in nodes)
    figure.update_layout(showlegend=False, height=130 + 52 * leaves, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         plot_bgcolor="white", title="The tree: error rate of each node among its held-out faces",
                         xaxis={"visible": False, "range": [-0.5, levels - 1 + 1.9]},  # room for the leaves' text
                         yaxis={"visible": False, "range": [leaves - 0.4, -0.9]})  # the first leaf on top
    return figure
