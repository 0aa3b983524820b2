"""Altair chart builders shared by the apps and notebooks.

Every chart function takes polars frames (or arrays) and returns an altair chart; nothing here
touches marimo, so notebooks use the same pictures as the apps. Column conventions follow the
run log (``paretopo.evaluation.runlog``): objectives are maximised, ranks are 1-based, completions are
numbered from 0 within their group. The frames they draw come from the run log, from
``paretopo.evaluation.evaluate.checkpoint_points`` and from the method replays of
``paretopo.evaluation.replay``; tables and transcripts are in ``paretopo.evaluation.display``.

Charts: :func:`objective_scatter`, :func:`advantage_bars`, :func:`metric_lines` (with
:func:`stage_switch_step`), :func:`stage1_chart`, :func:`frontier_chart` / :func:`frontier_charts`
(with :func:`run_labels`). :func:`use_offline_renderer` makes them show in a notebook without a
network.

Example:
    >>> import numpy as np
    >>> from paretopo.evaluation.replay import ranked_group_frame
    >>> frame = ranked_group_frame(np.array([[1, 1.0], [1, .37], [0, 1.0], [0, .37]]), group_size=4)
    >>> objective_scatter(frame, x="task", y="tool_efficiency").to_dict()["layer"][0]["mark"]["type"]
    'line'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import numpy as np
import polars as pl

from paretopo.core.pareto import nondominated_mask
from paretopo.evaluation.replay import ESTIMATOR_ORDER
from paretopo.evaluation.runlog import OBJECTIVE_PREFIX

__all__ = [
    "advantage_bars",
    "frontier_chart",
    "frontier_charts",
    "metric_lines",
    "objective_scatter",
    "run_labels",
    "shrink_png",
    "stage1_chart",
    "stage_switch_step",
    "use_offline_renderer",
]

def shrink_png(path: Any) -> None:
    """Palette-quantise a committed PNG (a chart, a screenshot) with pngquant where it is installed
    (about 3x smaller: the repository is carried to a GPU machine with its wheels, 64 MiB in all);
    left as it is elsewhere."""
    import shutil
    import subprocess

    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--quality=70-95", "--speed", "1", "--force", "--skip-if-larger",
                        "--output", str(path), str(path)], check=False, capture_output=True, timeout=120)


RANK_SCHEME = "viridis"  # rank 1 darkest; ordinal, so colours stay put as fronts appear


def _title(column: str) -> str:
    """Axis title of a column: ``obj_tool_efficiency`` -> ``tool efficiency``."""
    return column.removeprefix(OBJECTIVE_PREFIX).replace("/", ": ").replace("_", " ")


# --- notebooks -------------------------------------------------------------------------------


def _offline_bundle(spec: dict, **_: Any) -> dict[str, Any]:
    import base64

    import vl_convert

    png = vl_convert.vegalite_to_png(spec, scale=2)
    major = alt.SCHEMA_VERSION.lstrip("v").split(".")[0]
    return {"image/png": base64.b64encode(png).decode(), f"application/vnd.vegalite.v{major}+json": spec,
            "text/plain": f"<altair chart: {spec.get('title', 'untitled')}>"}


def use_offline_renderer() -> str:
    """Make altair charts in a notebook show without a network: each chart is drawn to a PNG here
    (vl-convert, no CDN), so it shows offline, in the saved ``.ipynb``, in nbconvert's HTML and on
    GitHub, and it also carries its vega-lite spec, which JupyterLab draws interactively from its own
    bundled vega. Without vl-convert, altair's ``mimetype`` renderer (JupyterLab only).

    Returns:
        The renderer's name (``"paretopo-offline"`` or ``"mimetype"``).
    """
    try:
        import vl_convert  # noqa: F401
    except ImportError:
        alt.renderers.enable("mimetype")
        return "mimetype"
    alt.renderers.register("paretopo-offline", _offline_bundle)
    alt.renderers.enable("paretopo-offline")
    return "paretopo-offline"


# --------------------------------------------------------------------------------------------
# charts
# --------------------------------------------------------------------------------------------


def _points_with_labels(frame: pl.DataFrame, x: str, y: str, rank: str, completion: str,
                        by: Sequence[str]) -> pl.DataFrame:
    """Merge completions with identical vectors into one point carrying a count and a label.

    ``position_label`` names every completion drawn at the point's position, of any rank (with M > 2
    objectives a projection puts different vectors on one spot), and ``labelled`` marks the one point
    per position that writes it, so labels of coincident points are not drawn over each other."""
    def numbered(column: str) -> pl.Expr:
        return pl.col(column).list.sort().list.eval(pl.format("#{}", pl.element())).list.join(" ")

    points = (
        frame.group_by([*by, x, y, rank], maintain_order=True)
        .agg(pl.col(completion).alias("completions"), pl.len().alias("count"))
        .with_columns(numbered("completions").alias("label"))
    )
    at_position = (points.group_by([*by, x, y]).agg(pl.col("completions").list.explode(keep_nulls=False, empty_as_null=False).alias("here"),
                                                    pl.col(rank).min().alias("lowest_rank"))
                   .with_columns(numbered("here").alias("position_label")))
    return (points.join(at_position, on=[*by, x, y], how="left", nulls_equal=True)
            .with_columns((pl.col(rank) == pl.col("lowest_rank")).alias("labelled"))
            .drop("here", "lowest_rank"))


def objective_scatter(frame: pl.DataFrame, *, x: str, y: str, rank: str = "rank", completion: str = "completion",
                      facet: str | None = None, selection: alt.Parameter | None = None,
                      title: str | None = None, width: int = 300, height: int = 260,
                      columns: int = 2) -> alt.TopLevelMixin:
    """Completions in objective space, coloured by Pareto rank, each front drawn as a staircase.

    Completions with identical vectors share one point (bigger, labelled ``#i #j``). Fronts are
    drawn per rank as the boundary of the region they dominate (both objectives maximised).

    Args:
        frame: one row per completion with columns ``x``, ``y``, ``rank``, ``completion``
            (and ``facet`` when given).
        facet: a column to split into panels (e.g. ``group``), ``columns`` to a row.
        selection: an altair selection parameter added to the points (for ``mo.ui.altair_chart``);
            the chart's data rows are then the merged points with a ``completions`` list.
    """
    by = [facet] if facet else []
    points = _points_with_labels(frame, x, y, rank, completion, by).sort([*by, rank, x])
    max_rank = int(frame[rank].max()) if frame.height else 1
    color = alt.Color(f"{rank}:O", title="Pareto rank",
                      scale=alt.Scale(scheme=RANK_SCHEME, domain=list(range(1, max_rank + 1))))
    x_enc = alt.X(f"{x}:Q", title=_title(x), scale=alt.Scale(domain=[-0.05, 1.05]))
    y_enc = alt.Y(f"{y}:Q", title=_title(y), scale=alt.Scale(domain=[-0.05, 1.05]))
    tooltip = [alt.Tooltip("label:N", title="completions"), alt.Tooltip(f"{x}:Q", format=".3f"),
               alt.Tooltip(f"{y}:Q", format=".3f"), alt.Tooltip(f"{rank}:O", title="rank"), "count:Q"]
    base = alt.Chart(points).encode(x=x_enc, y=y_enc)
    fronts = base.mark_line(interpolate="step-before", strokeDash=[4, 3], opacity=0.7).encode(
        color=color, detail=f"{rank}:O", order=f"{x}:Q")
    dots = base.mark_circle(stroke="white", strokeWidth=1).encode(
        color=color, size=alt.Size("count:Q", scale=alt.Scale(range=[90, 400]), legend=None), tooltip=tooltip)
    if selection is not None:
        dots = dots.add_params(selection).encode(opacity=alt.condition(selection, alt.value(1.0), alt.value(0.35)))
    labels = base.mark_text(dy=-13, fontSize=10, color="#374151").encode(text="position_label:N").transform_filter(
        alt.datum.labelled)
    chart = alt.layer(fronts, dots, labels).properties(width=width, height=height)
    if facet:
        chart = chart.facet(facet=alt.Facet(f"{facet}:N", title=_title(facet)), columns=columns)
    return chart.properties(title=title) if title else chart


def advantage_bars(advantages: pl.DataFrame, *, estimator: str = "estimator", value: str = "advantage",
                   completion: str = "completion", facet: str | None = "group", title: str | None = None,
                   width: int = 360, height: int = 220, columns: int = 2) -> alt.TopLevelMixin:
    """Grouped bars: for each completion, one bar per estimator.

    Args:
        advantages: long frame (e.g. :func:`estimator_advantages`): completion, estimator,
            advantage, and ``facet`` if given and present.
        facet: column splitting panels (``group``), ``columns`` to a row; ignored when absent or single-valued.
    """
    present = [name for name in ESTIMATOR_ORDER if name in set(advantages[estimator].to_list())]
    order = present + sorted(set(advantages[estimator].to_list()) - set(present))
    values = advantages[value].to_numpy()
    # all equal (a degenerate group): a centred axis, not one tick labelled "0.000000"
    flat = values.size and np.ptp(values) < 1e-12
    y_scale = alt.Scale(domain=[float(values[0]) - 1, float(values[0]) + 1]) if flat else alt.Scale()
    chart = alt.Chart(advantages).mark_bar().encode(
        x=alt.X(f"{completion}:O", title=_title(completion), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{estimator}:N", sort=order),
        y=alt.Y(f"{value}:Q", title=_title(value), scale=y_scale),
        color=alt.Color(f"{estimator}:N", sort=order, title=_title(estimator),
                        scale=alt.Scale(scheme="tableau10"), legend=alt.Legend(orient="bottom", columns=4)),
        tooltip=[completion, estimator, alt.Tooltip(f"{value}:Q", format="+.3f")],
    ).properties(width=width, height=height)
    zero = alt.Chart(advantages).mark_rule(color="#6b7280").encode(y=alt.datum(0))
    chart = alt.layer(chart, zero)
    if facet and facet in advantages.columns and advantages[facet].n_unique() > 1:
        chart = chart.facet(facet=alt.Facet(f"{facet}:N", title=_title(facet)), columns=columns)
    return chart.properties(title=title) if title else chart


def stage_switch_step(steps: pl.DataFrame, stage: str = "stage") -> int | None:
    """First logged step of stage 2, or None when the run never reached it."""
    if stage not in steps.columns or steps.height == 0:
        return None
    second = steps.filter(pl.col(stage) == 2)
    return int(second["step"].min()) if second.height else None


def metric_lines(steps: pl.DataFrame, columns: Sequence[str], *, title: str, step: str = "step",
                 switch: int | None = None, width: int = 300, height: int = 180) -> alt.LayerChart:
    """Per-step curves of ``columns`` (those present; nulls skipped), with the stage switch as a rule.

    Args:
        steps: the run log's steps frame (one row per optimiser step).
        columns: metric columns, e.g. ``["objectives/task", "objectives/tool_efficiency"]``.
        switch: first step of stage 2 (:func:`stage_switch_step`); a dashed rule marks it.
    """
    present = [c for c in columns if c in steps.columns]
    if present:
        long = (steps.select(step, *present).cast({c: pl.Float64 for c in present})
                .unpivot(index=step, variable_name="metric").drop_nulls("value"))
    else:
        long = pl.DataFrame(schema={step: pl.Int64, "metric": pl.String, "value": pl.Float64})
    values = long["value"].to_numpy()
    if values.size and np.ptp(values) < 1e-12:  # one constant value: centre it, not one long tick "1.000000"
        centre = float(values[0])
        y_scale = alt.Scale(domain=[centre - 0.5, centre + 0.5])
    else:
        y_scale = alt.Scale(zero=False)
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X(f"{step}:Q", title=step, axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None, scale=y_scale, axis=alt.Axis(format="~g")),
        color=alt.Color("metric:N", title=None, sort=present, legend=alt.Legend(orient="bottom", columns=1, labelLimit=260)),
        tooltip=[step, "metric", alt.Tooltip("value:Q", format=".4f")],
    )
    layers = [lines]
    if switch is not None:
        rule = pl.DataFrame({step: [switch - 0.5], "label": ["stage 2 →"]})
        layers.append(alt.Chart(rule).mark_rule(strokeDash=[5, 4], color="#9ca3af").encode(x=f"{step}:Q"))
        layers.append(alt.Chart(rule).mark_text(align="left", dx=3, baseline="top", color="#6b7280", y=2).encode(
            x=f"{step}:Q", text="label:N"))
    return alt.layer(*layers).properties(title=title, width=width, height=height)


def _dominated_region(points: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Corners of the staircase bounding what a 2-D front dominates, for a ``step-after`` area.

    Sorted by ``x`` (front points then have falling ``y``): ``(0, y_1), (x_1, y_2), ...,
    (x_k, 0)``; filled down to 0, the area is the front's hypervolume from the origin.
    """
    front = points.sort(x).select(x, y).rows()
    if not front:
        return pl.DataFrame(schema={x: pl.Float64, y: pl.Float64})
    xs = [0.0] + [p[0] for p in front]
    ys = [p[1] for p in front] + [0.0]
    return pl.DataFrame({x: xs, y: ys})


def _dominated_strips(points: pl.DataFrame, x: str, y: str, corner: tuple[float, float]) -> pl.DataFrame:
    """What a 2-D front dominates down to ``corner``, as disjoint rectangles (``x_from``, ``x_to``,
    ``y_from``, ``y_to``): sorted by ``x``, front point i covers ``(x_{i-1}, x_i] x [corner_y, y_i]``.

    Example:
        >>> _dominated_strips(pl.DataFrame({"a": [0.5, 0.2], "b": [0.4, 0.9]}), "a", "b", (0.0, 0.0)).rows()
        [(0.0, 0.2, 0.0, 0.9), (0.2, 0.5, 0.0, 0.4)]
    """
    front = points.sort(x).select(x, y).rows()
    rights = [float(p[0]) for p in front]
    return pl.DataFrame({"x_from": [float(corner[0]), *rights[:-1]], "x_to": rights,
                         "y_from": [float(corner[1])] * len(front), "y_to": [float(p[1]) for p in front]},
                        schema={"x_from": pl.Float64, "x_to": pl.Float64, "y_from": pl.Float64, "y_to": pl.Float64})


def stage1_chart(history: pl.DataFrame, *, width: int = 250, height: int = 220) -> alt.HConcatChart:
    """Stage 1 at a glance: outcomes and the final archive's hypervolume, HV gain and EMA, meta reward.

    Args:
        history: :func:`stage1_history`'s frame.
    """
    history = history.with_columns(
        pl.when(pl.col("inserted")).then(pl.lit("gain > 0: joined the archive"))
        .otherwise(pl.lit("no gain: dominated")).alias("status"))
    region = _dominated_region(history.filter(pl.col("in_final_archive")), "task", "tool_efficiency")
    x = alt.X("task:Q", title="task (mean)", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("tool_efficiency:Q", title="tool efficiency (mean)", scale=alt.Scale(domain=[0, 1]))
    area = alt.Chart(region).mark_area(color="#7c3aed", opacity=0.12, interpolate="step-after").encode(
        x=x, y=alt.Y("tool_efficiency:Q", stack=None))
    base = alt.Chart(history).encode(x=x, y=y)
    path = base.mark_line(color="#d1d5db", strokeDash=[2, 2]).encode(order="step:Q")
    dots = base.mark_circle(size=90).encode(
        color=alt.Color("status:N", title=None,
                        scale=alt.Scale(domain=["gain > 0: joined the archive", "no gain: dominated"],
                                        range=["#7c3aed", "#9ca3af"]),
                        legend=alt.Legend(orient="bottom", columns=1)),
        tooltip=["step", alt.Tooltip("task:Q", format=".3f"), alt.Tooltip("tool_efficiency:Q", format=".3f"),
                 alt.Tooltip("hv_gain:Q", format=".4f")])
    labels = base.mark_text(dy=-11, fontSize=10).encode(text="step:Q")
    outcomes = alt.layer(area, path, dots, labels).properties(
        title="outcomes; shaded: the archive's HV", width=width, height=height)
    gains = metric_lines(history, ["hv_gain", "ema_gain"], title="HV gain and its EMA (Eq. 5)",
                         width=width, height=height)
    meta = metric_lines(history, ["meta_reward"], title="meta reward for the next step (Eq. 6)",
                        width=width, height=height)
    return alt.hconcat(outcomes, gains, meta).resolve_scale(color="independent")


def run_labels(runs: Sequence[str]) -> dict[str, str]:
    """Short unique names of run folders: the folder name, with as many parent folders as tell them apart
    (two demos' ``runs/demo-1/paretopo`` and ``runs/demo-2/paretopo`` -> ``demo-1/paretopo``, ``demo-2/paretopo``).

    Example:
        >>> run_labels(["runs/a/paretopo", "runs/b/paretopo", "runs/x"])
        {'runs/a/paretopo': 'a/paretopo', 'runs/b/paretopo': 'b/paretopo', 'runs/x': 'x'}
    """
    unique = list(dict.fromkeys(str(r) for r in runs))
    parts = {run: run.rstrip("/").split("/") for run in unique}
    labels = {}
    for run in unique:
        depth = 1
        while True:
            label = "/".join(parts[run][-depth:])
            clash = [o for o in unique if o != run and "/".join(parts[o][-depth:]) == label]
            if not clash or depth >= len(parts[run]):
                break
            depth += 1
        labels[run] = label
    return labels


def _spread_coincident(data: pl.DataFrame, x: str, y: str, radius: tuple[float, float]) -> pl.DataFrame:
    """``x_shown``, ``y_shown``: points sharing a position moved onto a small circle around it, so each
    stays visible and clickable; ``together``: how many share it."""
    keys = [tuple(np.round(v, 9)) for v in data.select(x, y).rows()]
    members: dict[tuple, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    shown_x, shown_y, together = data[x].to_numpy().astype(float), data[y].to_numpy().astype(float), np.ones(data.height)
    for indices in members.values():
        if len(indices) > 1:
            angles = 2 * np.pi * np.arange(len(indices)) / len(indices) + np.pi / 4
            shown_x[indices] += radius[0] * np.cos(angles)
            shown_y[indices] += radius[1] * np.sin(angles)
            together[indices] = len(indices)
    return data.with_columns(pl.Series("x_shown", shown_x), pl.Series("y_shown", shown_y),
                             pl.Series("together", together.astype(np.int64)))


def frontier_chart(points: pl.DataFrame, *, split: str = "validation", selection: alt.Parameter | None = None,
                   width: int = 420, height: int = 320, x: str = "obj_task",
                   y: str = "obj_tool_efficiency") -> alt.LayerChart:
    """Evaluated checkpoints of several runs in objective space, with each run's frontier.

    Args:
        points: :func:`paretopo.evaluation.evaluate.checkpoint_points`'s frame (run, method, step, split,
            final, accuracy, mean_tool_calls, obj_task, obj_tool_efficiency, n).
        split: the split whose checkpoints make each run's frontier: a staircase line bounding the
            shaded region it dominates (a frontier of one point is its dominated box); the other
            split's points are drawn hollow.
        selection: an altair selection parameter for the points (e.g. ``alt.selection_point(
            fields=["run", "step", "split"])``), for ``mo.ui.altair_chart``.

    Checkpoints at the same position (e.g. four at (1, 1)) are drawn on a small circle around it,
    each clickable, with the count in the tooltip (``together``). The frame drawn gains ``label``
    (method and run folder), ``on_front``, ``x_shown``, ``y_shown`` and ``together``.

    ``x`` and ``y`` pick the two objective columns drawn; with M > 2 objectives the chart is that
    pairwise projection and its fronts are the projection's (see :func:`frontier_charts`).
    """
    on_front = np.zeros(points.height, dtype=bool)
    if points.height:
        keys = points.select("run", "split").to_numpy()
        vectors = points.select(x, y).to_numpy()
        for run, part in {(r, s) for r, s in keys}:
            mask = (keys[:, 0] == run) & (keys[:, 1] == part)
            on_front[mask] = np.asarray(nondominated_mask(vectors[mask]))
    names = run_labels(points["run"].to_list()) if points.height else {}
    data = points.with_columns(
        pl.Series("on_front", on_front),
        pl.format("{} ({})", "method", pl.col("run").replace_strict(names, default=pl.col("run"))).alias("label"),
    ).sort("run", "split", x)
    # checkpoints of comparable runs sit close together: zoom to them rather than show the whole unit square
    domains = []
    for column in (x, y):
        values = data[column].to_numpy().astype(float) if data.height else np.array([0.0, 1.0])
        low, high = float(values.min()), float(values.max())
        pad = max(0.08 * (high - low), 0.03)
        domains.append([low - pad, high + pad])
    radius = tuple(0.25 * (d[1] - d[0]) / 10 for d in domains)
    data = _spread_coincident(data, x, y, radius)
    x_scale = alt.Scale(domain=domains[0], nice=False)
    y_scale = alt.Scale(domain=domains[1], nice=False)
    # legend symbols drawn opaque: taken from the faint shading they were nearly invisible
    color = alt.Color("label:N", title="run", legend=alt.Legend(
        orient="bottom", columns=1, labelLimit=400, titleLimit=400, symbolType="square", symbolOpacity=1,
        symbolStrokeWidth=0))

    regions, strips = [], []
    for label, part in data.filter(pl.col("on_front") & (pl.col("split") == split)).group_by("label", maintain_order=True):
        corner = _dominated_region(part, x, y)
        xs = corner[x].to_list()
        ys = corner[y].to_list()
        xs[0], ys[-1] = domains[0][0], domains[1][0]  # from the chart's edges, not from the origin
        regions.append(pl.DataFrame({"label": [label[0]] * len(xs), x: xs, y: ys,
                                     "order": list(range(len(xs)))}))
        strips.append(_dominated_strips(part, x, y, (domains[0][0], domains[1][0])).with_columns(
            pl.lit(label[0]).alias("label")))
    region = pl.concat(regions) if regions else pl.DataFrame(
        schema={"label": pl.String, x: pl.Float64, y: pl.Float64, "order": pl.Int64})
    strip = pl.concat(strips) if strips else pl.DataFrame(
        schema={"x_from": pl.Float64, "x_to": pl.Float64, "y_from": pl.Float64, "y_to": pl.Float64,
                "label": pl.String})
    # what each frontier dominates, as disjoint rectangles down to the chart's lower-left corner (an area
    # mark with y2 and an order channel drew nothing, in the browser and in vl-convert alike)
    # fainter with more runs, so the corner every frontier dominates does not stack into a dark blot
    shade = alt.Chart(strip).mark_rect(opacity=min(0.12, 0.5 / max(len(regions), 1)), clip=True).encode(
        x=alt.X("x_from:Q", scale=x_scale, title=f"{_title(x)} (mean)"), x2="x_to:Q",
        y=alt.Y("y_from:Q", scale=y_scale, title=f"{_title(y)} (mean)"), y2="y_to:Q",
        color=color)
    fronts = alt.Chart(region).mark_line(interpolate="step-after", clip=True, strokeWidth=2).encode(
        x=alt.X(f"{x}:Q", title=f"{_title(x)} (mean)", scale=x_scale),
        y=alt.Y(f"{y}:Q", title=f"{_title(y)} (mean)", scale=y_scale), color=color,
        order="order:Q", detail="label:N")

    # the split legend takes its symbols from this invisible layer (size 0, one grey stroke): from the dots,
    # whose stroke is each run's colour, vega-lite drew them transparent
    split_title = "split (hollow: not the frontier's split)"
    split_legend = alt.Legend(orient="bottom", titleLimit=400, symbolSize=90, symbolStrokeColor="#374151",
                              symbolStrokeWidth=2)
    split_key = alt.Chart(data).mark_point(filled=False, size=0, strokeWidth=2, color="#374151").encode(
        x=alt.X("x_shown:Q", scale=x_scale), y=alt.Y("y_shown:Q", scale=y_scale),
        shape=alt.Shape("split:N", title=split_title, legend=split_legend))
    inside = alt.datum.split == split
    dots = alt.Chart(data).mark_point(filled=False, size=90, strokeWidth=2, clip=True).encode(
        x=alt.X("x_shown:Q", scale=x_scale, title=f"{_title(x)} (mean)"),
        y=alt.Y("y_shown:Q", scale=y_scale, title=f"{_title(y)} (mean)"),
        stroke=alt.Stroke("label:N", legend=None),
        fill=alt.condition(inside, alt.Fill("label:N", legend=None), alt.value("white")),
        fillOpacity=alt.condition(inside, alt.value(0.9), alt.value(1.0)),
        shape=alt.Shape("split:N", title=split_title, legend=split_legend),
        tooltip=["label", "step", "split", "final", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("mean_tool_calls:Q", format=".2f"), *(alt.Tooltip(f"{c}:Q", format=".3f") for c in points.columns if c.startswith(OBJECTIVE_PREFIX)),
                 alt.Tooltip("together:Q", title="checkpoints at this position"), "n"])
    if selection is not None:
        dots = dots.add_params(selection).encode(size=alt.condition(selection, alt.value(160), alt.value(70)))
    shared = data.filter(pl.col("together") > 1).group_by(x, y).agg(
        pl.len().alias("together"))
    counts = alt.Chart(shared).mark_text(dy=-16, fontSize=11, color="#374151", clip=True).encode(
        x=alt.X(f"{x}:Q", scale=x_scale), y=alt.Y(f"{y}:Q", scale=y_scale),
        text=alt.Text("together:Q", format="d"))
    counts = counts.transform_calculate(note="'×' + datum.together").encode(text="note:N")
    return alt.layer(shade, fronts, split_key, dots, counts).resolve_scale(color="shared").properties(
        width=width, height=height,
        title=f"checkpoints; lines: each run's frontier on {split}, shaded: what it dominates")


def frontier_charts(points: pl.DataFrame, *, split: str = "validation", selection: alt.Parameter | None = None,
                    width: int = 420, height: int = 320) -> alt.TopLevelMixin:
    """:func:`frontier_chart` for every pair of objective columns of ``points`` (one chart when M = 2).

    With M > 2 objectives each panel is a pairwise projection: a checkpoint on a panel's front is
    non-dominated in those two objectives (the run's M-objective frontier HV is in
    ``paretopo.evaluation.evaluate.compare_runs``).
    """
    columns = [c for c in points.columns if c.startswith(OBJECTIVE_PREFIX)]
    pairs = [(a, b) for i, a in enumerate(columns) for b in columns[i + 1:]]
    if len(pairs) <= 1:
        return frontier_chart(points, split=split, selection=selection, width=width, height=height)
    # two panels a row: three or more side by side overflow a laptop-wide page
    return alt.concat(*(frontier_chart(points, split=split, selection=selection, width=width, height=height, x=a, y=b)
                        for a, b in pairs), columns=2)
