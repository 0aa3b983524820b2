"""The study's report: from its finished runs to the results folder's tables, tests and markdown.

``paretopo study`` (``paretopo.commands.study``: the grid of configurations and the runner) calls
:func:`write_report` with the runs it finished and then :func:`write_markdown` with its record;
this module reads those run folders and nothing of the grid, so a report can be rewritten from
the runs alone. It writes::

    runs.parquet          one row per run: final validation and test numbers, frontier HV
                          (paretopo.evaluation.evaluate.run_summaries on one shared n*)
    checkpoints.parquet   every evaluated checkpoint (paretopo.evaluation.evaluate.checkpoint_points)
    tiers.parquet         test accuracy and calls per tier of the testbed and run
    warm_start.parquet    the policy before RL, evaluated like a final checkpoint
    predictions.parquet   per configuration and tier: p, c, q met in training, the gamble map's p*
                          there, the push it predicts and the final test calls (configurations
                          whose runs kept their logged groups, which git does not carry)
    frontiers.png / .svg  checkpoint frontiers per method, mean over seeds
                          (paretopo.evaluation.plots.frontier_chart)
    results.md            every table, paired tests against the strongest baseline, and what
                          holds of the paper's claims; also the study section of a docs file

A *baseline* is a configuration of the ``methods`` table other than ``paretopo``; the strongest
one is chosen on validation accuracy, and the test split is only reported.
"""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["StudyRun", "study_markdown", "study_markers", "study_section_bounds", "write_markdown", "write_report"]

def study_markers(task: str) -> tuple[str, str]:
    """The lines around a testbed's study section in a markdown file (one section per testbed)."""
    return f"<!-- study {task}:begin -->", f"<!-- study {task}:end -->"
OURS = "paretopo"  # the configuration every other one is compared with


@dataclass(frozen=True)
class StudyRun:
    """A finished run of the study, as the report knows it."""

    run_dir: str
    configuration: str  # the configuration's name: its folder and its label in the tables
    table: str  # "methods", "ablations", "weights" or "stage1"
    method: str  # the method preset it trained
    seed: int


def _run_rows(out: Path, runs: Sequence[StudyRun]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per run (final validation and test numbers, frontier HV) and every checkpoint point."""
    from paretopo.evaluation.evaluate import checkpoint_points, run_summaries
    from paretopo.evaluation.runlog import run_paths

    if not runs:
        raise ValueError(f"no finished runs under {out / 'runs'}; run the study first")
    points = checkpoint_points([r.run_dir for r in runs])  # one n* shared by every run of the study
    points = points.with_columns(
        pl.col("run").replace_strict({r.run_dir: r.configuration for r in runs}).alias("configuration"),
        pl.col("run").replace_strict({r.run_dir: r.table for r in runs}).alias("table"),
        pl.col("run").replace_strict({r.run_dir: r.seed for r in runs}, return_dtype=pl.Int64).alias("seed"),
    )
    summaries = {row["run"]: row for row in run_summaries(points, "validation").iter_rows(named=True)}
    rows = []
    for run in runs:
        summary = summaries[run.run_dir]
        final_val = points.filter((pl.col("run") == run.run_dir) & (pl.col("split") == "validation")) \
            .sort("step").tail(1).to_dicts()[0]
        test_eval = pl.read_parquet(run_paths(run.run_dir).evals).filter(pl.col("split") == "test").tail(1)
        rows.append({
            "configuration": run.configuration, "table": run.table, "method": run.method,
            "seed": run.seed, "run": run.run_dir,
            "val_accuracy": final_val["accuracy"], "val_mean_tool_calls": final_val["mean_tool_calls"],
            "test_accuracy": summary["test_accuracy"], "test_mean_tool_calls": summary["test_mean_tool_calls"],
            "test_tool_productivity": float(test_eval["tool_productivity"][0]),
            # the sampled policy (RunSettings.test_samples); None for runs evaluated greedily only
            **{f"test_sampled_{k}": test_eval[f"sampled_{k}"][0] if f"sampled_{k}" in test_eval.columns else None
               for k in ("accuracy", "mean_tool_calls")},
            "test_obj_task": summary["test_obj_task"], "test_obj_tool_efficiency": summary["test_obj_tool_efficiency"],
            "frontier_hv": summary["frontier_hv"], "checkpoints": summary["checkpoints"],
        })
    return pl.DataFrame(rows), points


@functools.cache
def _final_test_rows(run: str) -> pl.DataFrame:
    """The completions of a run's final test evaluation (its eval_rows only, not its other tables)."""
    from paretopo.evaluation.runlog import read_eval_rows

    rows = read_eval_rows(run).filter(pl.col("split") == "test")
    return rows.filter(pl.col("step") == rows["step"].max())


def _tier_rows(runs: pl.DataFrame) -> pl.DataFrame:
    from paretopo.evaluation.evaluate import behaviour_table

    frames = []
    for row in runs.iter_rows(named=True):
        final = _final_test_rows(row["run"])
        if "meta_tier" not in final.columns:
            continue
        frames.append(behaviour_table(final, "tier").with_columns(
            pl.lit(row["configuration"]).alias("configuration"), pl.lit(row["seed"]).alias("seed")))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _predictions(runs: pl.DataFrame, tiers: pl.DataFrame, task: str, group_size: int) -> pl.DataFrame:
    """Per configuration and tier, the gamble map's prediction at what training met, beside the outcome.

    p (sampled direct answers right), c (answers after a call right) and q (share answered
    directly) come from each run's logged groups (stage 2's where the method has one; mean over
    seeds); the map is the configuration's own last estimator with its options
    (``paretopo.core.gamble``; a call against a direct answer, q kept in [0.05, 0.95]). The
    outcome is the final greedy policy's mean test calls on the tier (mean over seeds). Only
    configurations whose runs all have their groups on disk; empty when none has.
    """
    from paretopo.commands.demo import training_tiers
    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.gamble import GambleMap
    from paretopo.evaluation.runlog import read_run

    rows = []
    for name in runs["configuration"].unique(maintain_order=True):
        own = runs.filter(pl.col("configuration") == name)
        per_seed = [training_tiers(Path(run), task) for run in own["run"]]
        if not all(per_seed):  # runs without their logged groups (not committed; older runs had none)
            continue
        config = ParetoPOConfig.from_dict(read_run(own["run"][0]).config["method"])
        estimator = config.stage2_estimator or config.stage1_estimator
        gamble = GambleMap(estimator, config, group_size=group_size)
        for tier in sorted(set().union(*per_seed)):
            p, c, q = (_seed_mean(per_seed, tier, key) for key in ("direct_accuracy", "tool_accuracy", "calls_0"))
            p_star, verdict = None, "no direct answers or no calls sampled"
            if p is not None and c is not None:
                found = gamble.break_even(c=c, q=min(max(q, 0.05), 0.95))
                p_star, verdict = found.p_star, found.verdict
            final = tiers.filter((pl.col("configuration") == name) & (pl.col("tier") == tier))
            rows.append({"configuration": name, "tier": tier, "estimator": estimator, "p": p, "c": c, "q": q,
                         "p_star": p_star, "predicted": _predicted_push(p, p_star, verdict),
                         "final_calls": final["mean_tool_calls"].mean() if final.height else None})
    return pl.DataFrame(rows, infer_schema_length=None)


def _seed_mean(per_seed: Sequence[Mapping[int, Mapping[str, Any]]], tier: int, key: str) -> float | None:
    values = [seed[tier][key] for seed in per_seed if seed.get(tier, {}).get(key) is not None]
    return sum(values) / len(values) if values else None


def _predicted_push(p: float | None, p_star: float | None, verdict: str) -> str:
    if p is None or (p_star is None and verdict not in ("always", "never")):
        return "n/a"
    if p_star is None:
        return "direct" if verdict == "always" else "call"
    return "direct" if p > p_star else "call"


def _paired_tests(runs: pl.DataFrame, reference: str, others: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per configuration vs ``reference``: exact McNemar on correctness, Wilcoxon on calls.

    Pairs are (seed, test question): the same question under the same seed for both methods.
    """
    from scipy.stats import binomtest, wilcoxon

    def final_test_rows(run: str) -> pl.DataFrame:
        return _final_test_rows(run).select("id", "correct", "tool_calls")

    def per_question(configuration: str) -> pl.DataFrame:
        frames = [final_test_rows(r["run"]).with_columns(pl.lit(r["seed"]).alias("seed"))
                  for r in runs.filter(pl.col("configuration") == configuration).iter_rows(named=True)]
        return pl.concat(frames)

    base = per_question(reference)
    tests = {}
    for name in others:
        joined = per_question(name).join(base, on=("seed", "id"), suffix="_ref")
        better = int((joined["correct"] & ~joined["correct_ref"]).sum())
        worse = int((~joined["correct"] & joined["correct_ref"]).sum())
        p_accuracy = binomtest(better, better + worse).pvalue if better + worse else 1.0
        differences = (joined["tool_calls"] - joined["tool_calls_ref"]).to_numpy()
        p_calls = float(wilcoxon(differences).pvalue) if np.any(differences != 0) else 1.0
        tests[name] = {"pairs": joined.height, "wins": better, "losses": worse, "p_accuracy": float(p_accuracy),
                       "p_calls": p_calls}
    return tests


def _frontier_chart(points: pl.DataFrame, configurations_shown: Sequence[str]) -> Any:
    """Mean validation point of each checkpoint step per configuration, with each one's frontier
    (``paretopo.evaluation.plots.frontier_chart``: a configuration stands where a run would)."""
    from paretopo.evaluation.plots import frontier_chart
    from paretopo.evaluation.runlog import objective_columns

    objectives = objective_columns(points)
    mean_points = (
        points.filter((pl.col("split") == "validation") & pl.col("configuration").is_in(configurations_shown))
        .group_by("configuration", "step", "split")
        .agg(pl.col("final").any(), pl.col("accuracy", "mean_tool_calls", *objectives).mean(), pl.col("n").sum())
        .with_columns(pl.col("configuration").alias("run"), pl.col("configuration").alias("method"))
        .sort(pl.col("configuration").replace_strict({n: k for k, n in enumerate(configurations_shown)}), "step")
    )
    return frontier_chart(mean_points, split="validation", width=520, height=360).properties(
        title="Checkpoint frontiers (validation, mean over seeds, shared n*; line: each configuration's frontier)")


def _warm_start(out: Path, settings: Any) -> pl.DataFrame:
    """The policy before RL, evaluated like a final checkpoint (greedy; cached per policy file)."""
    import hashlib

    from paretopo.training.train import tiny_policy_path

    weights = tiny_policy_path(settings.task) / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    cache = out / "warm_start.parquet"
    if cache.exists():
        cached = pl.read_parquet(cache)
        if cached.height and cached["policy_sha256"][0] == digest and \
                cached.filter(pl.col("split") == "test").height == (settings.test_examples or cached.height):
            return cached
    import torch

    from paretopo.agent.models import load_policy
    from paretopo.evaluation.evaluate import evaluate_policy
    from paretopo.tasks import get_task
    from paretopo.training.train import RunSettings

    torch.set_num_threads(1)
    task = get_task(settings.task)
    model, tokenizer = load_policy(str(tiny_policy_path(settings.task)), lora=False)
    _, _, test_split = task.default_splits
    examples = task.load(test_split)[: settings.test_examples]
    result = evaluate_policy(model, tokenizer, task, examples, greedy=True,
                             max_new_tokens=RunSettings.max_completion_length, tools_in_prompt=False, progress=False)
    frame = result.rows.select("id", "correct", "tool_calls", *[c for c in result.rows.columns if c.startswith("meta_")])
    frame = frame.with_columns(pl.lit("test").alias("split"), pl.lit(digest).alias("policy_sha256"))
    frame.write_parquet(cache)
    return frame


def write_report(out: Path, runs: Sequence[StudyRun], settings: Any) -> None:
    """Write runs.parquet, checkpoints.parquet, tiers.parquet, warm_start.parquet and the frontier chart.

    Args:
        runs: the study's finished runs, in the order of its tables.
        settings: the study's ``StudySettings`` (the warm start reads ``test_examples``).
    """
    _final_test_rows.cache_clear()  # runs may have changed since an earlier call in this process
    _warm_start(out, settings)
    frame, points = _run_rows(out, runs)
    frame.write_parquet(out / "runs.parquet")
    points.drop("run").with_columns(pl.col("configuration")).write_parquet(out / "checkpoints.parquet")
    tiers = _tier_rows(frame)
    if tiers.height:
        tiers.write_parquet(out / "tiers.parquet")
    predictions = _predictions(frame, tiers, settings.task, settings.num_generations)
    if predictions.height:  # else keep the committed table: a clone has no groups to recompute it from
        predictions.write_parquet(out / "predictions.parquet")
    shown = list(dict.fromkeys(r.configuration for r in runs if r.table == "methods"))
    chart = _frontier_chart(points, shown)
    chart.save(str(out / "frontiers.svg"))
    chart.save(str(out / "frontiers.png"), scale_factor=2)
    from paretopo.evaluation.plots import shrink_png

    shrink_png(out / "frontiers.png")  # the repository must stay small enough to carry to a GPU machine


# ------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float], digits: int = 3) -> str:
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _p(value: float) -> str:
    return "-" if value is None or math.isnan(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _means(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.group_by("configuration", "table", maintain_order=True).agg(
        pl.col("val_accuracy", "val_mean_tool_calls", "test_accuracy", "test_mean_tool_calls", "frontier_hv").mean(),
        pl.len().alias("seeds"))


BEYOND_THE_PAPER = ("calibrated_rank",)  # estimators of ours in the methods table, not baselines


def _baselines(runs: pl.DataFrame) -> list[str]:
    """The configurations of the methods table other than ParetoPO and our own estimators beyond the
    paper (``calibrated_rank``: compared with, not a baseline), in the order of the runs."""
    methods = runs.filter((pl.col("table") == "methods") & ~pl.col("configuration").is_in([OURS, *BEYOND_THE_PAPER]))
    return list(dict.fromkeys(methods["configuration"].to_list()))


def _strongest_baseline(runs: pl.DataFrame) -> str | None:
    """The baseline with the best mean *validation* accuracy (fewer calls breaks ties)."""
    means = _means(runs.filter(pl.col("configuration").is_in(_baselines(runs))))
    if means.height == 0:
        return None
    best = means.sort(["val_accuracy", "val_mean_tool_calls"], descending=[True, False]).row(0, named=True)
    return best["configuration"]


def _rows_for(runs: pl.DataFrame, names: Sequence[str], tests: dict[str, dict[str, float]]) -> list[list[Any]]:
    table = []
    for name in names:
        own = runs.filter(pl.col("configuration") == name)
        if own.height == 0:
            continue
        productivity = [p for p in own["test_tool_productivity"].to_list() if math.isfinite(p)]
        test = tests.get(name)
        table.append([
            f"`{name}`", _mean_std(own["test_accuracy"]), _mean_std(own["test_mean_tool_calls"], 2),
            _mean_std(productivity, 2) if productivity else "n/a (no calls)",
            _mean_std(own["test_sampled_accuracy"].to_list()), _mean_std(own["test_sampled_mean_tool_calls"].to_list(), 2),
            _mean_std(own["val_accuracy"]), _mean_std(own["val_mean_tool_calls"], 2), _mean_std(own["frontier_hv"]),
            "(reference)" if test is None else f"{test['wins']}/{test['losses']}, p {_p(test['p_accuracy'])}",
            "(reference)" if test is None else _p(test["p_calls"]), own.height,
        ])
    return table


_HEADER = ["configuration", "test accuracy", "test mean calls", "correct per call", "sampled accuracy", "sampled calls",
           "val. accuracy", "val. mean calls",
           "frontier HV (val.)", "vs strongest: won/lost, McNemar p", "calls: Wilcoxon p", "seeds"]


def _claims(runs: pl.DataFrame, strongest: str | None) -> list[str]:
    """Plain sentences, measured: does ParetoPO weakly dominate every baseline, largest HV?"""
    means = {row["configuration"]: row for row in _means(runs).iter_rows(named=True)}
    if "paretopo" not in means:
        return ["ParetoPO has no finished run yet."]
    ours = means["paretopo"]
    lines = []
    baselines = _baselines(runs)
    dominated = [b for b in baselines if ours["test_accuracy"] >= means[b]["test_accuracy"]
                 and ours["test_mean_tool_calls"] <= means[b]["test_mean_tool_calls"]]
    missing = [b for b in baselines if b not in dominated]
    if baselines and not missing:
        lines.append(f"- **Holds:** ParetoPO's mean test point weakly dominates every baseline "
                     f"({ours['test_accuracy']:.3f} accuracy, {ours['test_mean_tool_calls']:.2f} calls).")
    elif baselines:
        detail = "; ".join(f"`{b}` {means[b]['test_accuracy']:.3f} / {means[b]['test_mean_tool_calls']:.2f}"
                           for b in missing)
        lines.append(f"- **Does not hold:** ParetoPO ({ours['test_accuracy']:.3f} accuracy / "
                     f"{ours['test_mean_tool_calls']:.2f} calls, test, mean over seeds) does not weakly dominate "
                     f"{len(missing)} of {len(baselines)} baselines: {detail}.")
    if baselines:
        best_hv = max(baselines, key=lambda b: means[b]["frontier_hv"])
        verdict = "**Holds:**" if ours["frontier_hv"] >= means[best_hv]["frontier_hv"] else "**Does not hold:**"
        lines.append(f"- {verdict} largest checkpoint-frontier hypervolume: ParetoPO {ours['frontier_hv']:.3f}, "
                     f"best baseline `{best_hv}` {means[best_hv]['frontier_hv']:.3f} (validation, shared n*).")
    if strongest:
        lines.append(f"- The strongest baseline, chosen on validation accuracy, is `{strongest}`: "
                     f"{means[strongest]['test_accuracy']:.3f} test accuracy at {means[strongest]['test_mean_tool_calls']:.2f} calls.")
    return lines


def study_markdown(out: Path, settings: Any, record: Mapping[str, Any]) -> str:
    """The study's tables and claims in markdown, from runs.parquet and the other files :func:`write_report`
    wrote (``settings``: the study's ``StudySettings``; ``record``: its study.json)."""
    runs = pl.read_parquet(out / "runs.parquet")
    strongest = _strongest_baseline(runs)
    names = list(dict.fromkeys(runs["configuration"].to_list()))
    tests = _paired_tests(runs, strongest, [n for n in names if n != strongest]) if strongest else {}
    by_table = {t: [n for n in names if runs.filter(pl.col("configuration") == n)["table"][0] == t]
                for t in ("methods", "ablations", "weights", "stage1")}
    wall = record["wall_seconds"] / 60
    machine = record["machine"]
    seeds = ", ".join(str(s) for s in settings.seeds)
    parts = [
        f"Produced by `{record['command']}` ({_commits(record)}, finished "
        f"{record['finished']}) on {machine['cores']} cores ({machine['cpu']}), no GPU: "
        f"**{wall:.1f} min** wall time ({record['training_seconds'] / 60:.1f} min training in "
        f"{settings.processes or machine['cores']} parallel processes, one thread each). "
        f"Every run: the `{settings.task}` testbed's shipped tiny policy, full fine-tuning at learning rate "
        f"{_learning_rate(settings):g}{f' with a KL term to it (beta {settings.kl_beta:g})' if settings.kl_beta else ''}, "
        f"{settings.max_steps} optimiser steps of {settings.prompts_per_step} "
        f"prompts x {settings.num_generations} completions (stage 1: {settings.stage1_steps} steps where the "
        f"method has one), seeds {seeds}; validation: {settings.validation_examples} questions greedy at every "
        f"checkpoint (every {settings.save_steps} steps); test: "
        f"{'the whole split' if settings.test_examples is None else f'{settings.test_examples} questions'}, greedy"
        f"{f' and {settings.test_samples} sampled completions per question at temperature 1' if settings.test_samples else ''}, "
        f"final policy only. Numbers are mean ± std over seeds. Significance: paired over (seed, test question) "
        f"against the strongest baseline{f' (`{strongest}`, chosen on validation accuracy)' if strongest else ''}: "
        f"exact McNemar test on correctness (questions won/lost), Wilcoxon signed-rank test on tool calls. "
        f"Frontier HV: hypervolume (reference (0, 0)) of a run's validation checkpoints in (accuracy, tool "
        f"efficiency), mean over seeds, scored with {_scoring_text(runs)}, with one n* per question shared by "
        f"every run of the study (the fewest calls of any correct answer to it in any evaluation).",
        "",
        "### Main comparison (Table 1)",
        "",
        _markdown_table(_HEADER, _rows_for(runs, by_table["methods"], tests) + _warm_start_row(out)),
    ]
    if by_table["ablations"]:
        parts += ["", "### Ablations (Table 3)", "",
                  _markdown_table(_HEADER, _rows_for(runs, ["paretopo", *by_table["ablations"]], tests))]
    if by_table["weights"]:
        order = sorted(["paretopo", *by_table["weights"]], key=lambda n: _weight_of(n, runs))
        rows = _rows_for(runs, order, tests)
        for row, name in zip(rows, order, strict=True):
            row[0] = f"w = {_weight_of(name, runs)}" + (" (default, `paretopo`)" if name == "paretopo" else "")
        parts += ["", "### Weight sensitivity (Table 4): ParetoPO with w = (w_task, w_tool)", "",
                  _markdown_table(["weights", *_HEADER[1:]], rows)]
    if by_table["stage1"] or "no_stage1" in names:
        shown = [n for n in ("paretopo", "paretopo_stage1_mean_only", "no_stage1") if n in names]
        parts += ["", "### What stage 1 does", "",
                  "`paretopo` normalises stage-1 advantages per group (`stage1_adv_norm=group_std`), under which "
                  "the batch-wide meta reward cancels (docs/method.md); `paretopo_stage1_mean_only` centres "
                  "only, so the meta reward scales the advantages; `no_stage1` starts stage 2 at step 0.", "",
                  _markdown_table(_HEADER, _rows_for(runs, shown, tests))]
    tiers_file = out / "tiers.parquet"
    if tiers_file.exists():
        tiers = pl.read_parquet(tiers_file)
        warm = out / "warm_start.parquet"
        if warm.exists():
            from paretopo.evaluation.evaluate import behaviour_table

            tiers = pl.concat([tiers, behaviour_table(pl.read_parquet(warm), "tier").with_columns(
                pl.lit("warm start").alias("configuration"), pl.lit(0).alias("seed"))], how="diagonal_relaxed")
        shown = [*by_table["methods"], *by_table["ablations"], *by_table["weights"], *by_table["stage1"]]
        parts += ["", "### Where each method spends its calls (test, per tier: accuracy / mean calls, mean over seeds)",
                  "", _tier_markdown(tiers, [*shown, "warm start"], settings.task)]
    predictions_file = out / "predictions.parquet"
    if predictions_file.exists():
        parts += ["", "### Predicted vs measured, per tier (the gamble map at what training met)", "",
                  "p, c, q: the share of sampled direct answers that were right, of answers after a call, and the "
                  "share answered directly, in training (stage 2 where the method has one; logged groups, mean over "
                  "seeds). p*: the exact break-even of the configuration's last estimator at that c and q "
                  "(`paretopo.core.gamble`); above it direct answers are pushed up. Measured: the final greedy "
                  "policy's mean test calls on the tier (direct below 0.2, call above 0.8, else mixed), beside the "
                  "warm start's.", "",
                  _prediction_markdown(pl.read_parquet(predictions_file), out, settings.task)]
    parts += ["", "### Checkpoint frontiers", "", "![checkpoint frontiers](frontiers.png)", "",
              _frontier_markdown(out, by_table["methods"]), "", "### What the measurement says", "",
              *_claims(runs, strongest)]
    return "\n".join(parts) + "\n"


def _scoring_text(runs: pl.DataFrame) -> str:
    """How the report's objectives were scored (``checkpoint_points``' default, the ParetoPO method's)."""
    from paretopo.core.objectives import describe_scoring
    from paretopo.evaluation.evaluate import checkpoint_scoring

    return describe_scoring(checkpoint_scoring(runs["run"].to_list()))


def _commits(record: Mapping[str, Any]) -> str:
    """Which commit trained the runs: one, or how many runs each (a study continued later)."""
    by_commit = record.get("runs_trained_at_commit") or {}
    if len(by_commit) > 1:
        return "runs trained at " + ", ".join(f"{commit} ({count})" for commit, count in by_commit.items())
    return f"commit {record.get('commit') or 'unknown'}"


def _learning_rate(settings: Any) -> float:
    from paretopo.agent import tiny_policy_learning_rate

    return settings.learning_rate or tiny_policy_learning_rate(settings.task)


def _warm_start_row(out: Path) -> list[list[Any]]:
    file = out / "warm_start.parquet"
    if not file.exists():
        return []
    rows = pl.read_parquet(file)
    accuracy, calls = rows["correct"].cast(pl.Float64).mean(), rows["tool_calls"].cast(pl.Float64).mean()
    productivity = rows["correct"].sum() / rows["tool_calls"].sum() if rows["tool_calls"].sum() else math.inf
    return [["warm start (before RL, greedy)", f"{accuracy:.3f}", f"{calls:.2f}", f"{productivity:.2f}",
             "-", "-", "-", "-", "-", "-", "-", "-"]]


def _weight_of(name: str, runs: pl.DataFrame) -> tuple[float, ...]:
    """The weights configuration ``name`` trained with, as its first run's config.json records them."""
    from paretopo.evaluation.runlog import run_paths

    run = runs.filter(pl.col("configuration") == name)["run"][0]
    return tuple(json.loads(run_paths(run).config.read_text())["method"]["weights"])


def _grid_markdown(means: pl.DataFrame, names: Sequence[str], by: str, label: Callable[[Any], str]) -> str:
    """One row per configuration, one column per value of ``by``: "accuracy / mean calls" cells."""
    values = sorted(means[by].unique().to_list())
    rows = []
    for name in names:
        cells = []
        for value in values:
            cell = means.filter((pl.col("configuration") == name) & (pl.col(by) == value))
            cells.append("-" if cell.height == 0 else f"{cell['accuracy'][0]:.3f} / {cell['mean_tool_calls'][0]:.2f}")
        rows.append([f"`{name}`", *cells])
    return _markdown_table(["configuration", *(label(v) for v in values)], rows)


def _prediction_markdown(predictions: pl.DataFrame, out: Path, task: str) -> str:
    from paretopo.core.gamble import agreement, direction_of_calls
    from paretopo.evaluation.evaluate import behaviour_table
    from paretopo.tasks import tier_names

    names = tier_names(task)
    warm_file = out / "warm_start.parquet"
    warm = {}
    if warm_file.exists():
        warm = {r["tier"]: r["mean_tool_calls"]
                for r in behaviour_table(pl.read_parquet(warm_file), "tier").iter_rows(named=True)}

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = []
    for row in predictions.iter_rows(named=True):
        seen = direction_of_calls(row["final_calls"])
        agree = agreement(row["predicted"], seen)
        rows.append([f"`{row['configuration']}`", f"{row['tier']}: {names.get(row['tier'], '')}",
                     f"{number(row['p'])}, {number(row['c'])}, {number(row['q'])}",
                     "none" if row["p_star"] is None else f"{row['p_star']:.3f}", row["predicted"],
                     f"{number(warm.get(row['tier']))} -> {number(row['final_calls'])} ({seen})", agree])
    agreed = sum(r[-1] == "yes" for r in rows)
    judged = sum(r[-1] in ("yes", "no") for r in rows)
    table = _markdown_table(["configuration", "tier", "p, c, q in training", "p*", "predicted push",
                             "test calls: warm start -> final (measured)", "agree"], rows)
    return table + f"\n\nThe map's direction agrees with the outcome in {agreed} of {judged} judged rows."


def _tier_markdown(tiers: pl.DataFrame, names: Sequence[str], task: str) -> str:
    from paretopo.tasks import tier_names

    names_of_tiers = tier_names(task)

    means = tiers.group_by("configuration", "tier").agg(pl.col("accuracy", "mean_tool_calls").mean())
    return _grid_markdown(means, names, "tier", lambda t: f"tier {t}: {names_of_tiers.get(t, '')}")


def _frontier_markdown(out: Path, names: Sequence[str]) -> str:
    points = pl.read_parquet(out / "checkpoints.parquet").filter(pl.col("split") == "validation")
    means = points.group_by("configuration", "step").agg(pl.col("accuracy", "mean_tool_calls").mean())
    return ("Validation accuracy / mean calls at each checkpoint (mean over seeds):\n\n"
            + _grid_markdown(means, names, "step", lambda s: f"step {s}"))


def study_section_bounds(text: str, docs: Any, task: str) -> tuple[str, str]:
    """The text before and after a testbed's study section of a markdown file (between its markers)."""
    begin, end = study_markers(task)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{docs} has no {task} study section; add one line {begin} and, below it, one line "
                         f"{end} where the study's tables go")
    head, rest = text.split(begin, 1)
    return head, rest.split(end, 1)[1]


def write_markdown(out: Path, settings: Any, record: Mapping[str, Any]) -> None:
    """Write results.md and, with ``settings.docs``, replace that file's study section."""
    from paretopo.evaluation.runlog import atomic_write_bytes

    body = study_markdown(out, settings, record)
    atomic_write_bytes(out / "results.md", ("# Study results\n\n" + body).encode())
    if settings.docs:
        docs = Path(settings.docs)
        head, tail = study_section_bounds(docs.read_text(), docs, settings.task)
        relative = os.path.relpath(out, docs.parent)
        section = body.replace("](frontiers.png)", f"]({relative}/frontiers.png)")
        begin, end = study_markers(settings.task)
        atomic_write_bytes(docs, f"{head}{begin}\n{section}{end}{tail}".encode())
