#!/usr/bin/env python3
"""Seconds per training step of ParetoPO versus plain GRPO (torl_grpo) on the tiny CPU policy.

Both methods run the same number of steps with the same seed, batch and rollouts; ParetoPO
takes its stage-1 outcome from the training batch here so the two do the same generation work
(a validation outcome adds an evaluation every ``stage1_eval_every`` steps, reported on its own
line: that is a method choice, not overhead). Reported per method: median TRL ``step_time``,
and for ParetoPO the median time of its own hook (objectives, n*, Pareto ranks, advantages,
metrics, run-log rows) as a share of the step. Target: hook overhead under 2 % of step time.

    python benchmarks/bench_trainer.py [--steps 12] [--prompts 8] [--generations 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from paretopo.runlog import read_run
from paretopo.train import RunSettings, train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="paretopo-bench-"))
    base = RunSettings(max_steps=args.steps, prompts_per_step=args.prompts, num_generations=args.generations,
                       save_steps=10_000, checkpoint_eval=False, test_examples=8, progress=False)
    rows = {}
    for method, overrides in (("torl_grpo", {}),
                              ("paretopo", {"stage1_steps": args.steps // 2, "stage1_outcome": "train_batch"})):
        train_run(method, replace(base, run_dir=str(root / method)), method_overrides=overrides)
        steps = read_run(root / method).steps.sort("step").slice(1)  # skip the first (warm-up) step
        rows[method] = {
            "step_time": statistics.median(steps["step_time"].to_list()),
            "hook": statistics.median(steps["timing/paretopo_hook_s"].to_list()),
        }
    grpo, pareto = rows["torl_grpo"], rows["paretopo"]
    print(f"tiny policy, {args.prompts} prompts x {args.generations} completions, {args.steps} steps, one thread")
    print("| method | median s/step | paretopo hook per step | hook share of step |")
    print("|---|---:|---:|---:|")
    for method, row in rows.items():
        print(f"| {method} | {row['step_time']:.3f} | {row['hook'] * 1e3:.1f} ms | {row['hook'] / row['step_time']:.2%} |")
    print(f"\nParetoPO / GRPO step time: {pareto['step_time'] / grpo['step_time']:.3f} "
          f"(run-to-run noise included); hook overhead {pareto['hook'] / pareto['step_time']:.2%} (target < 2%)")


if __name__ == "__main__":
    main()
