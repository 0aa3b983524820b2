"""``paretopo gamble-map``: the break-even p* of every estimator, and the curves as a chart.

For each registered estimator (options from the method config, as for ``train``), the exact
break-even success probability p* of a direct answer against a tool call
(:mod:`paretopo.core.gamble`) at each share q of direct answers, and the break-even of one call
against a redundant second one. Heavy imports (torch, altair) happen inside :func:`run_gamble_map`,
so building the command line stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretopo.core.settings import setting

__all__ = ["CHART_SUFFIXES", "GambleMapSettings", "run_gamble_map"]

CHART_SUFFIXES = (".png", ".svg", ".html")


@dataclass
class GambleMapSettings:
    """What ``paretopo gamble-map`` computes; the command's options are generated from these fields."""

    c: float = setting(0.99, "how often a tool call's answer is right", minimum=0.0)
    q: tuple[float, ...] = setting((0.2, 0.5, 0.8), "shares of direct answers in the policy (one column each)",
                                   kind=float, many=True)
    group_size: int = setting(8, "completions per group G", flag="--G", minimum=2)
    nstar: str = setting("0", "fixed n* (an integer), or 'group': no earlier right answer, learnt from the group",
                         kind=str)
    meta_reward: float = setting(1.0, "stage 1's meta reward, held fixed (hv_scalarized)", minimum=1e-12)
    estimators: tuple[str, ...] | None = setting(None, "estimators to map; default: every registered one and the "
                                                 "expected weighted sum", kind=str, many=True)
    chart: str | None = setting(None, "also write the curves to this file (.png, .svg or .html)", kind=str)

    def nstar_value(self) -> int | None:
        """n* as :class:`paretopo.core.gamble.GambleMap` takes it (None: learnt from the group)."""
        if self.nstar == "group":
            return None
        if not self.nstar.isdigit():
            raise ValueError(f"--nstar {self.nstar}: give an integer >= 0 or 'group'")
        return int(self.nstar)

    def check(self) -> None:
        """Everything that can be wrong before any work starts, one line each."""
        for name, value in [("--c", self.c), *(("--q", q) for q in self.q)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value}: give a probability in [0, 1]")
        self.nstar_value()
        if self.chart is not None:
            path = Path(self.chart)
            if path.suffix.lower() not in CHART_SUFFIXES:
                raise ValueError(f"--chart {self.chart}: the file name must end in {', '.join(CHART_SUFFIXES)}")
            if not path.parent.is_dir():
                raise ValueError(f"--chart {self.chart}: folder {path.parent} does not exist")


def run_gamble_map(settings: GambleMapSettings, config: Any) -> list[dict[str, Any]]:
    """Print the p* table for ``config`` (a ``ParetoPOConfig``) and write the chart if asked."""
    from rich.console import Console
    from rich.table import Table

    from paretopo.core.gamble import estimators_to_map, gamble_table

    settings.check()
    names = list(settings.estimators or estimators_to_map())
    rows = gamble_table(config, names, c=settings.c, shares=settings.q, group_size=settings.group_size,
                        nstar=settings.nstar_value(), meta_reward=settings.meta_reward)
    gating = "gated" if config.gate_tool_by_correctness else "ungated"
    table = Table(title=f"Break-even p*: a direct answer right with probability p against a call right with "
                        f"c = {settings.c:g} (G = {settings.group_size}, weights {tuple(config.weights)}, "
                        f"{config.tool_efficiency_form} efficiency, alpha {config.alpha:g}, {gating}, "
                        f"n* {settings.nstar}); above p* the estimator pushes toward answering directly",
                  title_justify="left")
    table.add_column("estimator", no_wrap=True)
    for q in settings.q:
        table.add_column(f"p* at q = {q:g}", justify="right")
    table.add_column("p*: 1 call vs 2 (n* 1, q 0.5)", justify="right")
    for row in rows:
        table.add_row(row["estimator"], *(row["direct_vs_call"][q].text() for q in settings.q),
                      row["one_vs_two_calls"].text())
    console = Console()
    console.print(table)
    console.print("never: the call is pushed up at every p; always: the direct answer is. Exact, by enumerating "
                  "the group's compositions (paretopo.core.gamble).")
    if settings.chart is not None:
        from paretopo.evaluation.gamble_chart import gap_chart, gap_curves

        curves, break_evens = gap_curves(config, names, c=settings.c, shares=settings.q,
                                         group_size=settings.group_size, nstar=settings.nstar_value(),
                                         meta_reward=settings.meta_reward)
        width = 360 if len(settings.q) > 1 else 560
        chart = gap_chart(curves, break_evens, width=width)
        # HTML with vega inlined, so the page opens without a network
        chart.save(settings.chart, **({"inline": True} if settings.chart.lower().endswith(".html") else {}))
        console.print(f"chart: {settings.chart}")
    return rows
