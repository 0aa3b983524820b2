#!/usr/bin/env python3
"""Choose ParetoPO defaults by measurement on the validation split (never the test split).

Two grids, each run for several seeds with the demo's budget, in parallel processes (one
thread each), every run evaluated greedily on the whole validation split at its checkpoints:

* ``stage2``: ``stage2_center`` in none / group_mean / group_zscore x ``gate_tool_by_correctness``
  False / True (issue 10, item 3);
* ``stage1``: where stage 1's outcome vector comes from - validation every step, every 5 or
  10 steps, the training batch's mean, or an EMA of it - with ``stage1_adv_norm="mean_only"``
  (under the default ``group_std`` the batch-wide meta reward cancels, so the outcome source
  cannot change the advantages at all) and with the default, for the cost (issue 15);
* ``scale``: what sets the scale of the advantages - per-group standard deviations (GRPO's
  z-score, ParetoPO's default in both stages), one batch-wide standard deviation, none, or
  Pareto ranks (scale-free by construction) - for ParetoPO, the fixed-weight scalarisation and
  the accuracy-only baseline (why every efficiency-aware default stops calling on sums; see
  docs/results.md). A configuration's ``method`` key picks the preset (default ``paretopo``).

Per configuration: mean +- std over seeds of the final validation accuracy and mean tool calls,
the final validation accuracy / calls per tier of the arithmetic task, the hypervolume of the run's checkpoint frontier (validation points, one shared n*), the range
of the meta reward in stage 1, and the trainer's wall seconds per step. Prints a markdown table
and writes ``<out>/<grid>.md`` and ``<out>/<grid>.parquet`` (for a task with tiers also
``<out>/<grid>_checkpoints.md``: validation accuracy / calls per tier at every checkpoint).

    python benchmarks/study_defaults.py --grid stage2 --seeds 0 1 2 --out results/defaults
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import polars as pl

from paretopo.commands.demo import DemoSettings
from paretopo.evaluation.evaluate import checkpoint_points, frontier_hypervolume
from paretopo.evaluation.runlog import read_eval_rows, read_run, run_paths
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
    "scale": {
        "paretopo: group z-scores in both stages (default)": {},
        "paretopo: no std (stage 1 mean_only, stage 2 group_mean)": {"stage1_adv_norm": "mean_only",
                                                                     "stage2_center": "group_mean"},
        "paretopo: ranks only (no stage 1, stage 2 group_mean)": {"stage1_steps": 0, "stage2_center": "group_mean"},
        "fixed_weight: group std (default)": {"method": "fixed_weight"},
        "fixed_weight: batch std": {"method": "fixed_weight", "scale_rewards": "batch"},
        "fixed_weight: no std": {"method": "fixed_weight", "scale_rewards": "none"},
        "torl_grpo: accuracy only, group std (default)": {"method": "torl_grpo"},
    },
}


def _per_tier(run_dirs: list[Path]) -> str:
    """Final validation accuracy / mean calls per tier, mean over the runs ("" for a task without tiers)."""
    from paretopo.evaluation.evaluate import behaviour_table

    tables = []
    for run_dir in run_dirs:
        rows = read_eval_rows(run_dir).filter(pl.col("split") == "validation")
        if "meta_tier" not in rows.columns:
            return ""
        tables.append(behaviour_table(rows.filter(pl.col("step") == rows["step"].max()), "tier"))
    mean = pl.concat(tables).group_by("tier").agg(pl.col("accuracy").mean(), pl.col("mean_tool_calls").mean())
    return "; ".join(f"t{row['tier']} {row['accuracy']:.3f} / {row['mean_tool_calls']:.2f}"
                     for row in mean.sort("tier").iter_rows(named=True))


def _checkpoint_tiers(name: str, run_dirs: list[Path]) -> list[str]:
    """Markdown rows: validation accuracy / calls per tier at every checkpoint of every run."""
    from paretopo.evaluation.evaluate import behaviour_table

    lines = []
    for run_dir in run_dirs:
        rows = read_eval_rows(run_dir).filter(pl.col("split") == "validation")
        if "meta_tier" not in rows.columns:
            continue
        seed = json.loads(run_paths(run_dir).config.read_text())["settings"]["seed"]
        for step in sorted(set(rows["step"].to_list())):
            tiers = behaviour_table(rows.filter(pl.col("step") == step), "tier").sort("tier")
            cells = " | ".join(f"{r['accuracy']:.2f} / {r['mean_tool_calls']:.2f}" for r in tiers.iter_rows(named=True))
            lines.append(f"| {name} | {seed} | {step} | {cells} |")
    return lines


def _sampled_direct_accuracy(run_dirs: list[Path], tier: int = 2) -> str:
    """Share of the sampled direct answers (no call) to training questions of ``tier`` that were right."""
    from paretopo.tasks import get_task

    config = read_run(run_dirs[0]).config
    if config.get("task", "arithmetic") != "arithmetic":
        return ""
    tiers = {example.id: example.metadata["tier"] for example in get_task("arithmetic").load("train")}
    groups = pl.concat([read_run(run_dir).groups for run_dir in run_dirs], how="diagonal_relaxed")
    direct = groups.filter((pl.col("tool_calls") == 0) & (pl.col("prompt_id").replace_strict(tiers, default=0) == tier))
    return f"{direct['correct'].cast(pl.Float64).mean():.2f} of {direct.height}" if direct.height else "none"


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
        "val_per_tier (accuracy / calls)": _per_tier(run_dirs),
        "train: sampled direct answers right on tier 2": _sampled_direct_accuracy(run_dirs),
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
                options = dict(overrides)
                method = options.pop("method", "paretopo")
                jobs.append(RunJob(method, replace(base, run_dir=str(run_dir), seed=seed),
                                   {"stage1_steps": args.stage1_steps, **options} if method == "paretopo" else options))
    train_runs_parallel(jobs, processes=args.processes,
                        on_done=lambda job, result: print(f"done {job.settings.run_dir}", flush=True))
    table = pl.DataFrame([_summarise(name, grid[name], dirs) for name, dirs in runs.items()])
    checkpoints = ["| configuration | seed | step | tier 1 | tier 2 | tier 3 |", "|---|---:|---:|---|---|---|"]
    checkpoints += [line for name, dirs in runs.items() for line in _checkpoint_tiers(name, dirs)]
    markdown = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    markdown += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.iter_rows()]
    text = "\n".join(markdown)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{args.grid}.md").write_text(text + "\n")
    if len(checkpoints) > 2:  # a task with tiers: validation accuracy / calls per tier at each checkpoint
        (out.parent / f"{args.grid}_checkpoints.md").write_text("\n".join(checkpoints) + "\n")
    table.write_parquet(out.parent / f"{args.grid}.parquet")


if __name__ == "__main__":
    main()
