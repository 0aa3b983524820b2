#!/usr/bin/env python3
"""Predict, then compare: the gamble map's direction per arithmetic tier against what runs did.

For each configuration of the scale grid (``results/defaults/scale.parquet``, written by
``benchmarks/study_defaults.py --grid scale``), the estimator it trained with at the end (stage
2's if it has one) and its method options give the exact break-even p* of a direct answer
against a call (``paretopo.core.gamble``, c = 0.99: the calculator is exact). At the measured
training p (the share of sampled direct answers that were right) the map predicts "direct"
when p is above p* for every share q of direct answers in [0.05, 0.95], "call" when below for
every q, else "depends on q". The measured direction is the final greedy validation policy's
(mean calls below 0.2: direct, above 0.8: call, else mixed). The scale grid logged the training p of tier 2 (carry sums) only;
run folders given with ``--runs`` (e.g. a ``paretopo study`` configuration's seeds, which keep
their sampled groups) give it for every tier.

    python benchmarks/gamble_predictions.py                       # the scale grid, tier 2
    python benchmarks/gamble_predictions.py --runs /tmp/study/runs/calibrated_rank/seed*
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

from paretopo.core.config import ParetoPOConfig
from paretopo.core.gamble import GambleMap, agreement, direction_of_calls

SHARES = np.round(np.arange(0.05, 0.951, 0.05), 2)
CALL_RIGHT = 0.99
TIER_NAMES = {1: "1 (no carry)", 2: "2 (carry)", 3: "3 (product)"}


def break_even_range(config: ParetoPOConfig) -> tuple[float | None, float | None]:
    """Smallest and largest p* over the shares q (None where there is none)."""
    estimator = config.stage2_estimator or config.stage1_estimator
    gamble = GambleMap(estimator, config)
    found = [gamble.break_even(c=CALL_RIGHT, q=float(q)).p_star for q in SHARES]
    found = [p for p in found if p is not None]
    return (min(found), max(found)) if found else (None, None)


def predicted(p: float, low: float | None, high: float | None) -> str:
    if low is None:
        return "call (no break-even)"
    if p > high:
        return "direct"
    if p < low:
        return "call"
    return "depends on q"


def tier_calls(per_tier: str) -> dict[int, float]:
    """``"t1 0.821 / 0.00; t2 ..."`` -> {tier: mean calls}."""
    return {int(t): float(c) for t, c in re.findall(r"t(\d) [\d.]+ / ([\d.]+)", per_tier)}


def scale_grid_rows(path: Path) -> list[str]:
    rows = []
    for row in pl.read_parquet(path).iter_rows(named=True):
        overrides = ast.literal_eval(row["overrides"])
        method = overrides.pop("method", "paretopo")
        config = ParetoPOConfig.from_preset(method, **overrides)
        p = float(row["train: sampled direct answers right on tier 2"].split(" of ")[0])
        low, high = break_even_range(config)
        calls = tier_calls(row["val_per_tier (accuracy / calls)"])[2]
        guess, seen = predicted(p, low, high), direction_of_calls(calls)
        rows.append(f"| {row['configuration']} | {config.stage2_estimator or config.stage1_estimator} | {p:.2f} | "
                    f"{_range(low, high)} | {guess} | {seen} ({calls:.2f} calls) | {agreement(guess, seen)} |")
    return rows


def run_rows(run_dirs: list[Path]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from study_defaults import _per_tier, _sampled_direct_accuracy

    from paretopo.evaluation.runlog import read_run

    config = ParetoPOConfig.from_dict(read_run(run_dirs[0]).config["method"])  # the run's method config
    low, high = break_even_range(config)
    calls = tier_calls(_per_tier(run_dirs))
    rows = []
    for tier, name in TIER_NAMES.items():
        sampled = _sampled_direct_accuracy(run_dirs, tier)
        if sampled in ("", "none"):
            rows.append(f"| {config.method} | tier {name} | no direct answers sampled | | | | |")
            continue
        p = float(sampled.split(" of ")[0])
        guess, seen = predicted(p, low, high), direction_of_calls(calls[tier])
        rows.append(f"| {config.method} | tier {name} | {sampled} | {_range(low, high)} | {guess} | "
                    f"{seen} ({calls[tier]:.2f} calls) | {agreement(guess, seen)} |")
    return rows


def _range(low: float | None, high: float | None) -> str:
    return "none" if low is None else f"{low:.3f}-{high:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="results/defaults/scale.parquet", help="the scale grid's parquet")
    parser.add_argument("--runs", nargs="*", default=[], help="run folders of one configuration (every tier)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"p* over q in [0.05, 0.95], call right with c = {CALL_RIGHT}; measured: final greedy validation calls")
    print()
    print("| configuration | estimator at the end | training p, tier 2 | p* range | predicted | measured, tier 2 | agree |")
    print("|---|---|---:|---|---|---|---|")
    print("\n".join(scale_grid_rows(Path(args.scale))))
    if args.runs:
        print()
        print("| configuration | tier | training p (sampled direct answers right, of how many) | p* range | predicted "
              "| measured | agree |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(run_rows([Path(r) for r in args.runs])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
