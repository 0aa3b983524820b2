#!/usr/bin/env python3
"""Choose ParetoPO defaults by measurement on the validation split (never the test split).

Two grids, each run for several seeds with the demo's budget, in parallel processes (one
thread each), every run evaluated greedily on the whole validation split at its checkpoints:

* ``stage2``: ``stage2_center`` in none / group_mean / group_zscore x ``gate_tool_by_correctness``
  False / True (issue 10, item 3);
* ``stage1``: where stage 1's outcome vector comes from - validation every step, every 5 or
  10 steps, the training batch's mean, or an EMA of it - with ``stage1_adv_norm="mean_only"``
  (under the default ``group_std`` the batch-wide meta reward cancels, so the outcome source
  cannot change the advantages at all) and with the default, for the cost (issue 15).

Per configuration: mean +- std over seeds of the final validation accuracy and mean tool calls,
the hypervolume of the run's checkpoint frontier (validation points, one shared n*), the range
of the meta reward in stage 1, and the trainer's wall seconds per step. Prints a markdown table
and writes ``<out>/<grid>.md`` and ``<out>/<grid>.parquet``.

    python benchmarks/study_defaults.py --grid stage2 --seeds 0 1 2 --out results/defaults
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import polars as pl

from paretopo.commands.demo import DemoSettings
from paretopo.evaluation.evaluate import checkpoint_points, frontier_hypervolume
from paretopo.evaluation.runlog import read_run
from paretopo.training.train import RunJob, RunSettings, train_runs_parallel

GRIDS: dict[str, dict[str, dict]] = {
    "stage2": {
        f"center={center}, gate={gate}": {"stage2_center": center, "gate_tool_by_correctness": gate}
        for gate in (False, True)
        for center in ("none", "group_mean", "group_zscore")
    },
    "stage1": {
        "validation every step (mean_only)": {"stage1_outcome": "validation", "stage1_eval_every": 1,
                                              "stage1_adv_norm": "mean_only"},
        "validation every 5 (mean_only)": {"stage1_outcome": "validation", "stage1_eval_every": 5,
                                           "stage1_adv_norm": "mean_only"},
        "validation every 10 (mean_only)": {"stage1_outcome": "validation", "stage1_eval_every": 10,
                                            "stage1_adv_norm": "mean_only"},
        "train batch (mean_only)": {"stage1_outcome": "train_batch", "stage1_adv_norm": "mean_only"},
        "train batch EMA (mean_only)": {"stage1_outcome": "train_batch_ema", "stage1_adv_norm": "mean_only"},
        "validation every step (group_std)": {"stage1_outcome": "validation", "stage1_eval_every": 1},
        "train batch (group_std)": {"stage1_outcome": "train_batch"},
    },
}


def _summarise(name: str, overrides: dict, run_dirs: list[Path]) -> dict:
    points = checkpoint_points([str(p) for p in run_dirs]).filter(pl.col("split") == "validation")
    finals, hvs, metas, costs = [], [], [], []
    for run_dir in run_dirs:
        run = points.filter(pl.col("run") == str(run_dir))
        finals.append(run.sort("step").tail(1))
        hvs.append(frontier_hypervolume(run.select("obj_task", "obj_tool_efficiency").to_numpy()))
        steps = read_run(run_dir).steps
        meta = steps.filter(pl.col("stage") == 1)["weights/meta_reward"].drop_nulls() if "stage" in steps.columns else []
        metas.append((min(meta), max(meta)) if len(meta) else (float("nan"), float("nan")))
        costs.append(statistics.median(steps["step_time"].drop_nulls().to_list()[1:]))
    final = pl.concat(finals)

    def mean_std(values) -> str:
        values = list(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} +- {spread:.3f}"

    return {
        "configuration": name,
        "overrides": str(overrides),
        "val_accuracy": mean_std(final["accuracy"]),
        "val_mean_tool_calls": mean_std(final["mean_tool_calls"]),
        "frontier_hv": mean_std(hvs),
        "meta_reward_range": f"{min(m[0] for m in metas):.2f}..{max(m[1] for m in metas):.2f}",
        "s_per_step": f"{statistics.median(costs):.3f}",
        "seeds": len(run_dirs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=DemoSettings.max_steps)
    parser.add_argument("--stage1-steps", type=int, default=DemoSettings.stage1_steps)
    parser.add_argument("--only", nargs="*", default=None, help="run only these configuration names")
    parser.add_argument("--out", default="results/defaults")
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args()
    out = Path(args.out) / args.grid
    base = RunSettings(max_steps=args.steps, save_steps=max(1, args.steps // 5), validation_examples=200,
                       test_examples=1, progress=False)
    grid = {k: v for k, v in GRIDS[args.grid].items() if not args.only or k in args.only}
    jobs, runs = [], {}
    for index, (name, overrides) in enumerate(grid.items()):
        for seed in args.seeds:
            run_dir = out / f"config{index}-seed{seed}"
            runs.setdefault(name, []).append(run_dir)
            if not (run_dir / "eval.parquet").exists() or not (run_dir / "final").exists():
                jobs.append(RunJob("paretopo", replace(base, run_dir=str(run_dir), seed=seed),
                                   {"stage1_steps": args.stage1_steps, **overrides}))
    train_runs_parallel(jobs, processes=args.processes,
                        on_done=lambda job, result: print(f"done {job.settings.run_dir}", flush=True))
    table = pl.DataFrame([_summarise(name, grid[name], dirs) for name, dirs in runs.items()])
    markdown = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    markdown += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.iter_rows()]
    text = "\n".join(markdown)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{args.grid}.md").write_text(text + "\n")
    table.write_parquet(out.parent / f"{args.grid}.parquet")


if __name__ == "__main__":
    main()
