"""The gamble map as tables and charts: curves of the gap against p, rules at each p*.

Shared by ``paretopo gamble-map --chart`` and the playground's "Gamble map" section; the
numbers come from :mod:`paretopo.core.gamble` (exact, no sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import numpy as np
import polars as pl

from paretopo.core.gamble import WEIGHTED_SUM, GambleMap

__all__ = ["break_even_markdown", "gap_chart", "gap_curves", "implication"]


def gap_curves(config: Any, estimators: Sequence[str], *, c: float = 0.99, shares: Sequence[float] = (0.5,),
               group_size: int = 8, nstar: int | None = 0, meta_reward: float = 1.0,
               points: int = 101) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(curves, break_evens)``: the gap at ``points`` values of p, and each p*, per estimator and q.

    ``curves`` has ``estimator, q, p, gap, scaled_gap`` (the gap over its largest absolute
    value on [0, 1], so estimators of different scales share an axis; the sign is the push).
    ``break_evens`` has ``estimator, q, p_star`` (null when there is none) and ``verdict``.
    """
    grid = np.linspace(0.0, 1.0, points)
    curves, breaks = [], []
    for name in estimators:
        gamble = GambleMap(name, config, group_size=group_size, nstar=nstar, meta_reward=meta_reward)
        for q in shares:
            gap = gamble.gap(grid, c=c, q=q)
            largest = float(np.abs(gap).max()) or 1.0
            curves.append(pl.DataFrame({"estimator": name, "q": float(q), "p": grid, "gap": gap,
                                        "scaled_gap": gap / largest}))
            verdict = gamble.break_even(c=c, q=q)
            breaks.append({"estimator": name, "q": float(q), "p_star": verdict.p_star, "verdict": verdict.verdict})
    schema = {"estimator": pl.String, "q": pl.Float64, "p_star": pl.Float64, "verdict": pl.String}
    return pl.concat(curves), pl.DataFrame(breaks, schema=schema)


def gap_chart(curves: pl.DataFrame, break_evens: pl.DataFrame, *, width: int = 520, height: int = 300) -> alt.Chart:
    """Lines of the scaled gap against p, one colour per estimator, a dashed rule at each p*,
    one panel per share q (one panel when there is one q)."""
    order = list(dict.fromkeys(curves["estimator"].to_list()))
    color = alt.Color("estimator:N", sort=order, title="estimator")
    # the weighted sum (the reference) dotted, so an estimator that matches it shows through
    reference = curves.with_columns(line=pl.when(pl.col("estimator") == WEIGHTED_SUM).then(pl.lit("reference"))
                                    .otherwise(pl.lit("estimator")))
    lines = alt.Chart(reference.to_pandas()).mark_line(strokeWidth=2).encode(
        x=alt.X("p:Q", title="p: how often a direct answer is right", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("scaled_gap:Q", title="E[A | direct] − E[A | call] (scaled; > 0: direct pushed up)",
                scale=alt.Scale(domain=[-1.05, 1.05])),
        color=color,
        strokeDash=alt.StrokeDash("line:N", scale=alt.Scale(domain=["estimator", "reference"], range=[[1, 0], [2, 4]]),
                                  legend=None),
        tooltip=["estimator:N", alt.Tooltip("q:Q", format=".2f"), alt.Tooltip("p:Q", format=".2f"),
                 alt.Tooltip("gap:Q", format=".4f", title="gap (unscaled)")],
    )
    zero = alt.Chart(pl.DataFrame({"y": [0.0]}).to_pandas()).mark_rule(color="#888").encode(y="y:Q")
    found = break_evens.filter(pl.col("p_star").is_not_null())
    rules = alt.Chart(found.to_pandas()).mark_rule(strokeDash=[5, 3], strokeWidth=1.5).encode(
        x="p_star:Q", color=color,
        tooltip=["estimator:N", alt.Tooltip("q:Q", format=".2f"), alt.Tooltip("p_star:Q", format=".3f", title="p*")])
    if curves["q"].n_unique() > 1:
        return _facet(curves, found, width, height)
    return alt.layer(zero, lines, rules).properties(width=width, height=height)


def _facet(curves: pl.DataFrame, found: pl.DataFrame, width: int, height: int) -> alt.Chart:
    """One panel per q, side by side: the same layers per panel (altair facets need one dataset)."""
    panels = []
    for q in sorted(curves["q"].unique().to_list()):
        panel = gap_chart(curves.filter(pl.col("q") == q), found.filter(pl.col("q") == q), width=width, height=height)
        panels.append(panel.properties(title=f"q = {q:g} (share of direct answers)"))
    return alt.hconcat(*panels).resolve_scale(color="shared")


def implication(break_evens: pl.DataFrame, *, q: float, reference: str = WEIGHTED_SUM) -> str:
    """One sentence on what the break-evens at share ``q`` imply, e.g. where ranks and the
    weighted sum disagree."""
    rows = {r["estimator"]: r for r in break_evens.filter(pl.col("q") == q).iter_rows(named=True)}
    if reference not in rows or rows[reference]["p_star"] is None:
        return "The expected weighted sum has no break-even here: it prefers one answer type at every p."
    target = rows[reference]["p_star"]
    lower = sorted((r["p_star"], name) for name, r in rows.items()
                   if name != reference and r["p_star"] is not None and r["p_star"] < target - 5e-3)
    higher = sorted((r["p_star"], name) for name, r in rows.items()
                    if name != reference and r["p_star"] is not None and r["p_star"] > target + 5e-3)
    text = (f"The weighted sum pays for a direct answer only when it is right more than {target:.1%} of the time.")
    if lower:
        p_low, name = lower[0]
        text += (f" {name} already pushes toward direct answers above {p_low:.1%}: a question the policy "
                 f"answers directly right between {p_low:.1%} and {target:.1%} of the time is pushed to "
                 "gamble on it, against the stated preference.")
    if higher:
        p_high, name = higher[-1]
        text += f" {name} holds out until {p_high:.1%}: it prices the call above the preference."
    if not lower and not higher:
        text += " Every estimator shown agrees with it."
    return text


def break_even_markdown(break_evens: pl.DataFrame) -> str:
    """The break-evens as a small markdown table (estimator, q, p* or the verdict)."""
    lines = ["| estimator | q | p* |", "|---|---:|---:|"]
    for row in break_evens.iter_rows(named=True):
        shown = f"{row['p_star']:.3f}" if row["p_star"] is not None else row["verdict"]
        lines.append(f"| `{row['estimator']}` | {row['q']:g} | {shown} |")
    return "\n".join(lines)
