"""A two-minute tour of the multi-objective core, printed to the terminal.

It needs no model: one group of eight tool-using completions with their objective vectors,
their Pareto fronts, the advantage every estimator gives each of them, and the stage-1 meta
reward as hypervolume gains arrive. ``paretopo showcase`` runs it; the notebooks and the playground app tell the same story.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from paretopo.core.advantages import ADVANTAGES
from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import OptimalCallTracker, score_completions
from paretopo.core.pareto import pareto_ranks
from paretopo.core.scalarize import HVScalarizer

# one prompt, eight sampled completions: was the answer right, and how many tool calls it made
EXAMPLE_CORRECT = np.array([1, 1, 1, 0, 1, 0, 1, 0])
EXAMPLE_CALLS = np.array([1, 3, 2, 0, 1, 1, 0, 3])


def example_group(config: ParetoPOConfig) -> tuple[np.ndarray, float]:
    """Objective vectors of the example group (n* is updated from it first, as in training)."""
    tracker = OptimalCallTracker()
    ids = ["q"] * len(EXAMPLE_CALLS)
    rewards = score_completions(ids, EXAMPLE_CORRECT, EXAMPLE_CALLS, tracker, config)
    return rewards, float(tracker.lookup(ids)[0])


def advantage_table(rewards: np.ndarray, config: ParetoPOConfig, title: str) -> Table:
    """Completions as columns; objective rows, the rank, then one row per estimator."""
    group_size = rewards.shape[0]
    ranks = pareto_ranks(rewards)
    table = Table(title=title, title_justify="left")
    table.add_column("completion", justify="left")
    for i in range(group_size):
        table.add_column(str(i + 1), justify="right")
    table.add_row("r_task", *(f"{v:.0f}" for v in rewards[:, 0]))
    table.add_row("r_tool", *(f"{v:.2f}" for v in rewards[:, 1]))
    table.add_row("Pareto rank", *(str(r) for r in ranks), end_section=True)
    for name in ADVANTAGES:
        values = ADVANTAGES[name](rewards, group_size, **config.options_for_estimator(name, meta_reward=1.0))
        table.add_row(name, *(f"{v:+.2f}" for v in values))
    return table


def run(console: Console | None = None) -> None:
    console = console or Console()
    config = ParetoPOConfig()
    rewards, nstar = example_group(config)
    console.rule("[bold]paretopo: the multi-objective core")
    console.print(
        f"One prompt, G = {len(rewards)} completions. n* = {nstar:.0f} (fewest calls of a correct one); "
        f"r_tool = exp(-{config.alpha} |m - n*|); weights w = {config.weights}, beta = {config.beta}.\n"
        "Rank 1 = non-dominated. otc_grpo is shown on the same columns (its preset uses OTC's own r_tool)."
    )
    console.print(advantage_table(rewards, config, "Advantages by estimator"))

    scalarizer = HVScalarizer(gamma=config.gamma)
    history = Table(title="Stage 1: meta reward as validation outcomes arrive", title_justify="left")
    for column in ("step", "outcome (acc, eff)", "HV gain", "EMA gain", "archive HV", "next r_pareto"):
        history.add_column(column, justify="right")
    outcomes = [(0.30, 0.60), (0.42, 0.55), (0.42, 0.55), (0.55, 0.62), (0.50, 0.50), (0.61, 0.70)]
    for step, outcome in enumerate(outcomes, start=1):
        update = scalarizer.update(outcome, step=step)
        history.add_row(str(step), f"({outcome[0]:.2f}, {outcome[1]:.2f})", f"{update.hv_gain:.4f}",
                        f"{update.ema_gain:.4f}", f"{update.hypervolume:.4f}", f"{update.meta_reward:.3f}")
    console.print(history)
