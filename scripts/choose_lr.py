"""Choose the study's learning rate (and whether to add a KL term) on validation, once per testbed.

    python scripts/choose_lr.py --task lookup          # writes results/lr_choice/lookup.{md,parquet}

The accuracy-only baseline (``torl_grpo``) is trained with the study's budget (150 steps of
8 prompts x 8 completions, checkpoints every 30 steps, 200 validation questions) at each cell of
``GRID`` and seeds 0 and 1; every method of the study then uses the chosen cell. The rule was
fixed before any cell ran:

- score of a cell: validation accuracy of the final checkpoint, mean over seeds;
- cells within ``TIE`` (one question in 200) of the best are tied; among them the largest learning
  rate wins (it moves the policy most in 150 steps, and a study whose runs hardly move measures
  the warm start, not the estimators), then no KL before KL (a reference model costs a forward pass).

The test split is not read: each run's final evaluation is cut to one test question (the run
log's format needs one) and the table shows validation only. The runs are written under
``--work`` (git-ignored ``runs/`` by default); only the table is committed. Running the command
again reuses finished runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

GRID = ((3e-5, 0.0), (1e-4, 0.0), (3e-4, 0.0), (1e-4, 0.05), (3e-4, 0.05))  # (learning rate, kl_beta)
SEEDS = (0, 1)
BASELINE = "torl_grpo"  # accuracy only: the rate is chosen where no efficiency term can hide damage
TIE = 0.005


def _cell_name(learning_rate: float, kl_beta: float) -> str:
    return f"lr{learning_rate:g}_kl{kl_beta:g}"


def _settings(task: str, work: Path, learning_rate: float, kl_beta: float):
    from paretopo.commands.study import StudySettings

    return replace(StudySettings(), out=str(work / task / _cell_name(learning_rate, kl_beta)), task=task,
                   seeds=SEEDS, learning_rate=learning_rate, kl_beta=kl_beta, test_examples=1, test_samples=0)


def _validation_rows(task: str, work: Path) -> pl.DataFrame:
    from paretopo.commands import study
    from paretopo.evaluation.runlog import run_paths

    configuration = next(c for c in study.configurations() if c.name == BASELINE)
    rows = []
    for learning_rate, kl_beta in GRID:
        settings = _settings(task, work, learning_rate, kl_beta)
        for run in study.finished_runs(settings, [configuration]):
            evals = pl.read_parquet(run_paths(run.run_dir).evals).filter(pl.col("split") == "validation").sort("step")
            final = evals.tail(1).to_dicts()[0]
            config = json.loads(run_paths(run.run_dir).config.read_text())
            started = datetime.datetime.fromisoformat(config["created"]).timestamp()
            minutes = (run_paths(run.run_dir).evals.stat().st_mtime - started) / 60  # created -> last evaluation
            rows.append({"task": task, "learning_rate": learning_rate, "kl_beta": kl_beta, "seed": run.seed,
                         "minutes": minutes,
                         "final_accuracy": final["accuracy"], "final_mean_tool_calls": final["mean_tool_calls"],
                         "best_accuracy": evals["accuracy"].max(), "first_accuracy": evals["accuracy"][0]})
    return pl.DataFrame(rows)


def choose(table: pl.DataFrame) -> dict:
    """The chosen cell of a per-run table (the rule in the module docstring)."""
    cells = (table.group_by("learning_rate", "kl_beta")
             .agg(pl.col("final_accuracy", "final_mean_tool_calls").mean(), pl.len().alias("seeds")))
    best = cells["final_accuracy"].max()
    tied = cells.filter(pl.col("final_accuracy") >= best - TIE)
    return tied.sort(["learning_rate", "kl_beta"], descending=[True, False]).row(0, named=True)


def _markdown(task: str, table: pl.DataFrame, chosen: dict) -> str:
    cells = (table.group_by("learning_rate", "kl_beta")
             .agg(pl.col("final_accuracy").mean().alias("acc"), pl.col("final_accuracy").std().alias("sd"),
                  pl.col("final_mean_tool_calls").mean().alias("calls"), pl.col("best_accuracy").mean().alias("best"),
                  pl.col("first_accuracy").mean().alias("first"), pl.len().alias("n"))
             .sort("kl_beta", "learning_rate"))
    lines = [f"# Learning rate and KL on validation: `{task}`", "",
             f"`python scripts/choose_lr.py --task {task}` ({datetime.date.today()}; {table.height} runs, "
             f"{table['minutes'].mean():.1f} min each on one thread, from a run's creation to its last evaluation): "
             f"`{BASELINE}` (accuracy only), the study's budget, seeds "
             f"{', '.join(map(str, SEEDS))}; validation split only (200 questions, greedy). Rule (fixed before "
             f"the runs): best mean final validation accuracy; within {TIE} of it counts as tied, and among "
             "tied cells the largest learning rate, then no KL.", "",
             "| learning rate | kl_beta | final val. accuracy (mean ± sd) | final mean calls | best checkpoint "
             "| step 30 | seeds |", "|---|---|---|---|---|---|---|"]
    for row in cells.iter_rows(named=True):
        mark = " **chosen**" if (row["learning_rate"], row["kl_beta"]) == (chosen["learning_rate"],
                                                                          chosen["kl_beta"]) else ""
        lines.append(f"| {row['learning_rate']:g}{mark} | {row['kl_beta']:g} | {row['acc']:.3f} ± "
                     f"{(row['sd'] or 0):.3f} | {row['calls']:.2f} | {row['best']:.3f} | {row['first']:.3f} "
                     f"| {row['n']} |")
    lines += ["", f"Chosen: learning rate {chosen['learning_rate']:g}, kl_beta {chosen['kl_beta']:g} "
              f"(`paretopo study --task {task} --learning-rate {chosen['learning_rate']:g}"
              + (f" --kl-beta {chosen['kl_beta']:g}" if chosen["kl_beta"] else "") + "`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from paretopo.agent import TINY_POLICY_FOLDERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=tuple(TINY_POLICY_FOLDERS), required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/lr_choice"), help="where the runs go")
    parser.add_argument("--out", type=Path, default=Path("results/lr_choice"), help="where the table goes")
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args(argv)

    from paretopo.commands import study
    from paretopo.training.train import train_runs_parallel

    configuration = [c for c in study.configurations() if c.name == BASELINE]
    jobs = [job for lr, kl in GRID for job in study._jobs(_settings(args.task, args.work, lr, kl), configuration)]
    started = time.perf_counter()
    print(f"choose_lr {args.task}: {len(GRID)} cells x {len(SEEDS)} seeds, {len(jobs)} runs to train", flush=True)
    train_runs_parallel(jobs, processes=args.processes,
                        on_done=lambda job, _: print(f"  done {job.settings.run_dir}", flush=True))
    table = _validation_rows(args.task, args.work)
    chosen = choose(table)
    args.out.mkdir(parents=True, exist_ok=True)
    table.write_parquet(args.out / f"{args.task}.parquet")
    text = _markdown(args.task, table, chosen)
    print(f"({(time.perf_counter() - started) / 60:.1f} min in this invocation)")
    (args.out / f"{args.task}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
