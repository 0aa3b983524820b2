#!/usr/bin/env python3
"""Do two runs on two cores each keep >= 80% of one run's speed? (issue 9, parallel runs)

The same short ``torl_grpo`` run (the shipped tiny policy, today's defaults, one thread) is
timed alone and as one of two identical runs started together by
``paretopo.training.train.train_runs_parallel`` (one process and one thread each), alternating
``--rounds`` times so load drift hits both sides. A run's speed is the median of its
``step_time`` column in steps.parquet after the first step (the same steps are trained in both
cases: same seed, same batch). Prints the per-step medians and the ratio alone / paired.

    python benchmarks/bench_parallel.py [--rounds 2] [--steps 12]

Run it on a quiet machine: anything else on the cores is counted against the pair.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import polars as pl

from paretopo.training.train import RunJob, RunSettings, train_runs_parallel


def _step_seconds(run_dir: Path) -> float:
    times = pl.read_parquet(run_dir / "steps.parquet").sort("step")["step_time"].drop_nulls().to_list()
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    base = RunSettings(max_steps=args.steps, save_steps=10_000, checkpoint_eval=False, test_examples=1,
                       progress=False)
    alone, paired = [], []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for round_index in range(args.rounds):
            single = RunJob("torl_grpo", replace(base, run_dir=str(root / f"alone-{round_index}")))
            train_runs_parallel([single], processes=1)
            alone.append(_step_seconds(Path(single.settings.run_dir)))
            pair = [RunJob("torl_grpo", replace(base, run_dir=str(root / f"pair-{round_index}-{i}"))) for i in (0, 1)]
            train_runs_parallel(pair, processes=2)
            paired.extend(_step_seconds(Path(job.settings.run_dir)) for job in pair)
    one, two = statistics.median(alone), statistics.median(paired)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.rounds} rounds of {args.steps} steps, torl_grpo, one thread per process")
    print(f"seconds per step alone:  {one:.3f}  (rounds: {', '.join(f'{t:.3f}' for t in alone)})")
    print(f"seconds per step paired: {two:.3f}  (runs: {', '.join(f'{t:.3f}' for t in paired)})")
    print(f"paired runs keep {one / two:.0%} of a single run's speed (target >= 80%)")


if __name__ == "__main__":
    main()
