"""The paper's claims at small scale: every method, every ablation, several seeds, one command.

``paretopo study`` trains every method preset (the six baselines and ParetoPO), the four
Table-3 ablations, ParetoPO at the five Table-4 weights and with ``stage1_adv_norm="mean_only"``
(stage 1's meta reward only acts on the advantages under that normalisation), each for several
seeds with the same trainer, policy, budget and seeds, in parallel processes (one thread each).
Every run evaluates its checkpoints on the validation split and its final policy on the test
split (``paretopo.training.train``); the study then writes one results folder::

    <out>/runs/<configuration>/seed<S>/   run logs (eval tables, steps) and the final policy
    <out>/runs.parquet                    one row per run: validation and test numbers, frontier HV
    <out>/checkpoints.parquet             every evaluated checkpoint on one shared n*
    <out>/tiers.parquet                   test accuracy and calls per arithmetic tier and run
    <out>/frontiers.png / .svg            checkpoint frontiers per method (validation, shared n*)
    <out>/results.md                      every table, and what holds of the paper's claims
    <out>/study.json                      command, seeds, budget, machine, wall time

Choices (which baseline is "the strongest") are made on the validation split; the test split
is only reported. A study that stops part-way is continued by running the same command again:
finished runs are kept, a run cut short resumes from its last complete checkpoint.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from paretopo.core.settings import setting

__all__ = ["BASELINES", "Configuration", "StudySettings", "configurations", "run_study", "write_report"]

BASELINES = ("torl_grpo", "fixed_weight", "otc_grpo", "mo_grpo", "gdpo", "hv_scalarized")
ABLATIONS = ("no_stage1", "no_stage2", "no_dynamic_weighting", "no_pareto_ranking")
TABLE4_WEIGHTS = ((0.2, 0.8), (0.4, 0.6), (0.5, 0.5), (0.6, 0.4), (0.8, 0.2))
STUDY_BEGIN, STUDY_END = "<!-- study:begin -->", "<!-- study:end -->"


@dataclass(frozen=True)
class Configuration:
    """One row of the study: a method preset with overrides, in one of the study's tables."""

    name: str  # folder name and table label
    table: str  # "methods", "ablations", "weights" or "stage1"
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudySettings:
    """What ``paretopo study`` runs; the command's options are generated from these fields."""

    out: str = setting("results/study", "results folder; running again continues a study cut short")
    seeds: tuple[int, ...] = setting((0, 1, 2), "seeds (--quick: 0)", kind=int, many=True)
    max_steps: int = setting(150, "optimiser steps per run, the demo's budget (--quick: 8)", flag="--steps", minimum=1)
    stage1_steps: int = setting(30, "stage-1 steps of the methods that have one (--quick: 4)", minimum=0)
    prompts_per_step: int = setting(8, "prompts per optimiser step (--quick: 4)", flag="--prompts", minimum=1)
    num_generations: int = setting(8, "completions per prompt (--quick: 4)", flag="--generations", minimum=2)
    save_steps: int = setting(30, "steps between checkpoints, each evaluated on validation (at most --steps; "
                                  "--quick: 4)", minimum=1)
    validation_examples: int = setting(200, "validation questions per checkpoint evaluation (--quick: 24)",
                                       minimum=1)
    test_examples: int | None = setting(None, "test questions of the final evaluation; default: the whole split "
                                              "(--quick: 32)", kind=int, minimum=1)
    test_samples: int = setting(4, "sampled completions per test question at temperature 1, reported beside greedy "
                                   "(0: greedy only)", minimum=0)
    learning_rate: float | None = setting(None, "learning rate of every run; default: the trainer's, 3e-4 for the "
                                                "tiny policy", kind=float, minimum=1e-12)
    processes: int | None = setting(None, "parallel runs; default: one per CPU core", kind=int, minimum=1)
    only: tuple[str, ...] | None = setting(None, "run only these configurations; default: all", kind=str, many=True)
    quick: bool = setting(False, "2 methods, 1 seed, 8 steps: the plumbing in a minute (not a result)")
    docs: str | None = setting(None, "also replace the study section of this markdown file (e.g. docs/results.md)",
                               kind=str)

    @classmethod
    def quick_settings(cls, out: str) -> StudySettings:
        """Two methods, one seed, a few steps: the study's plumbing in a couple of minutes."""
        return cls(out=out, seeds=(0,), max_steps=8, stage1_steps=4, prompts_per_step=4, num_generations=4,
                   save_steps=4, validation_examples=24, test_examples=32, quick=True)


def configurations(quick: bool = False) -> list[Configuration]:
    """The study's configurations, main methods first (so a study cut short has the main table)."""
    if quick:
        return [Configuration("paretopo", "methods", "paretopo"), Configuration("torl_grpo", "methods", "torl_grpo")]
    from paretopo.core.config import ParetoPOConfig

    default_weights = tuple(ParetoPOConfig().weights)
    found = [Configuration(name, "methods", name) for name in (*BASELINES, "paretopo")]
    found += [Configuration(name, "ablations", name) for name in ABLATIONS]
    found += [Configuration(f"paretopo_w{a:g}-{b:g}", "weights", "paretopo", {"weights": [a, b]})
              for a, b in TABLE4_WEIGHTS if (a, b) != default_weights]  # the default is the "paretopo" row
    found += [Configuration("paretopo_stage1_mean_only", "stage1", "paretopo", {"stage1_adv_norm": "mean_only"})]
    return found


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def _run_dir(settings: StudySettings, configuration: Configuration, seed: int) -> Path:
    return Path(settings.out) / "runs" / configuration.name / f"seed{seed}"


def _finished(run_dir: Path) -> bool:
    from paretopo.evaluation.runlog import run_paths

    paths = run_paths(run_dir)
    return (paths.final / "config.json").exists() and paths.evals.exists() and \
        pl.read_parquet(paths.evals).filter(pl.col("split") == "test").height > 0


def _jobs(settings: StudySettings, chosen: list[Configuration]) -> list[Any]:
    from paretopo.core.config import PRESETS
    from paretopo.evaluation.runlog import last_complete_checkpoint
    from paretopo.training.train import RunJob, RunSettings

    base = RunSettings(max_steps=settings.max_steps, prompts_per_step=settings.prompts_per_step,
                       num_generations=settings.num_generations, save_steps=settings.save_steps,
                       validation_examples=settings.validation_examples, test_examples=settings.test_examples,
                       learning_rate=settings.learning_rate, test_samples=settings.test_samples, progress=False)
    jobs = []
    for seed in settings.seeds:  # seed-major: every configuration gets a first seed before any gets a third
        for configuration in chosen:
            run_dir = _run_dir(settings, configuration, seed)
            if _finished(run_dir):
                continue
            resume = False
            if run_dir.exists():
                try:
                    last_complete_checkpoint(run_dir, configuration.preset)
                    resume = True
                except (FileNotFoundError, ValueError):  # cut short before its first checkpoint
                    shutil.rmtree(run_dir)
            overrides = dict(configuration.overrides)
            if "stage1_steps" not in PRESETS[configuration.preset]:  # no_stage1 keeps its 0
                overrides.setdefault("stage1_steps", settings.stage1_steps)
            jobs.append(RunJob(configuration.preset, replace(base, run_dir=str(run_dir), seed=seed), overrides,
                               resume=resume))
    return jobs


def _machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": model or platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_study(settings: StudySettings, log: Callable[[str], None] = print) -> Path:
    """Train what is missing, then write the results folder; returns its path."""
    from paretopo.evaluation.runlog import run_paths
    from paretopo.training.train import train_runs_parallel

    out = Path(settings.out)
    _final_test_rows.cache_clear()  # runs may have changed since an earlier call in this process
    if settings.docs:
        _study_section_bounds(Path(settings.docs).read_text(), settings.docs)  # fail before hours of training
    chosen = configurations(settings.quick)
    if settings.only:
        unknown = sorted(set(settings.only) - {c.name for c in chosen})
        if unknown:
            raise ValueError(f"unknown study configuration(s) {unknown}; choose from {[c.name for c in chosen]}")
        chosen = [c for c in chosen if c.name in settings.only]
    jobs = _jobs(settings, chosen)
    total = len(chosen) * len(settings.seeds)
    log(f"study: {len(chosen)} configurations x {len(settings.seeds)} seeds = {total} runs "
        f"({total - len(jobs)} already finished), {settings.max_steps} steps each, results in {out}")
    started = time.perf_counter()
    record_path = out / "study.json"
    previous = json.loads(record_path.read_text()) if record_path.exists() else {}
    finished = [0]

    def done(job: Any, result: Any) -> None:
        # validation, not test: the progress lines are what one watches, and choices are made on validation
        finished[0] += 1
        evals = pl.read_parquet(run_paths(job.settings.run_dir).evals).filter(pl.col("split") == "validation")
        last = evals.sort("step").tail(1).to_dicts()[0]
        log(f"  [{finished[0]}/{len(jobs)}] {job.settings.run_dir}: validation accuracy {last['accuracy']:.3f}, "
            f"mean calls {last['mean_tool_calls']:.2f} ({(time.perf_counter() - started) / 60:.1f} min)")

    train_runs_parallel(jobs, processes=settings.processes, on_done=done)
    training_seconds = time.perf_counter() - started
    from paretopo.evaluation.runlog import atomic_write_json

    record = {
        "command": "paretopo study" + (" --quick" if settings.quick else ""),
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("out", "docs")},
        "configurations": [asdict(c) for c in chosen],
        "machine": _machine(),
        # the commit that trained the runs (a report-only invocation keeps it) and the one that wrote the report
        "commit": _git_commit() if jobs or "commit" not in previous else previous["commit"],
        "report_commit": _git_commit(),
        # when training last finished (a report-only invocation keeps it)
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        if jobs or "finished" not in previous else previous["finished"],
        # a study continued after a stop adds up the training time of each invocation
        "training_seconds": previous.get("training_seconds", 0.0) + (training_seconds if jobs else 0.0),
        "runs_trained_by_last_invocation": len(jobs),
    }
    report_started = time.perf_counter()
    write_report(out, chosen, settings)
    record["report_seconds"] = time.perf_counter() - report_started
    record["wall_seconds"] = record["training_seconds"] + record["report_seconds"]
    atomic_write_json(record_path, record)
    _write_markdown(out, settings, record)
    log(f"study written to {out} in {record['wall_seconds'] / 60:.1f} min "
        f"(training {record['training_seconds'] / 60:.1f} min)")
    return out


# ------------------------------------------------------------------------------------------
# the results folder
# ------------------------------------------------------------------------------------------


def _run_rows(out: Path, chosen: list[Configuration], settings: StudySettings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per run (final validation and test numbers, frontier HV) and every checkpoint point."""
    from paretopo.evaluation.evaluate import checkpoint_points, frontier, frontier_hypervolume
    from paretopo.evaluation.runlog import run_paths

    dirs = {str(_run_dir(settings, c, s)): (c, s) for c in chosen for s in settings.seeds
            if _finished(_run_dir(settings, c, s))}
    if not dirs:
        raise ValueError(f"no finished runs under {out / 'runs'}; run the study first")
    points = checkpoint_points(list(dirs))  # one n* shared by every run of the study
    points = points.with_columns(
        pl.col("run").replace_strict({d: c.name for d, (c, _) in dirs.items()}).alias("configuration"),
        pl.col("run").replace_strict({d: c.table for d, (c, _) in dirs.items()}).alias("table"),
        pl.col("run").replace_strict({d: s for d, (_, s) in dirs.items()}, return_dtype=pl.Int64).alias("seed"),
    )
    rows = []
    for run_dir, (configuration, seed) in dirs.items():
        own = points.filter(pl.col("run") == run_dir)
        validation = own.filter(pl.col("split") == "validation").sort("step")
        test = own.filter((pl.col("split") == "test") & pl.col("final")).sort("step")
        vectors = validation.select("obj_task", "obj_tool_efficiency").to_numpy()
        final_val, final_test = validation.tail(1).to_dicts()[0], test.tail(1).to_dicts()[0]
        test_eval = pl.read_parquet(run_paths(run_dir).evals).filter(pl.col("split") == "test").tail(1)
        rows.append({
            "configuration": configuration.name, "table": configuration.table, "method": configuration.preset,
            "seed": seed, "run": run_dir,
            "val_accuracy": final_val["accuracy"], "val_mean_tool_calls": final_val["mean_tool_calls"],
            "test_accuracy": final_test["accuracy"], "test_mean_tool_calls": final_test["mean_tool_calls"],
            "test_tool_productivity": float(test_eval["tool_productivity"][0]),
            # the sampled policy (RunSettings.test_samples); None for runs evaluated greedily only
            **{f"test_sampled_{k}": test_eval[f"sampled_{k}"][0] if f"sampled_{k}" in test_eval.columns else None
               for k in ("accuracy", "mean_tool_calls")},
            "test_obj_task": final_test["obj_task"], "test_obj_tool_efficiency": final_test["obj_tool_efficiency"],
            "frontier_hv": frontier_hypervolume(vectors[frontier(vectors)]) if len(vectors) else 0.0,
            "checkpoints": len(vectors),
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
    """Mean validation point of each checkpoint step per configuration, with its frontier marked."""
    import altair as alt

    from paretopo.evaluation.evaluate import frontier

    mean_points = (points.filter((pl.col("split") == "validation") & pl.col("configuration").is_in(configurations_shown))
                   .group_by("configuration", "step").agg(pl.col("obj_task").mean(), pl.col("obj_tool_efficiency").mean(),
                                                          pl.col("accuracy").mean(), pl.col("mean_tool_calls").mean())
                   .sort("configuration", "step"))
    marked = []
    for name in configurations_shown:
        own = mean_points.filter(pl.col("configuration") == name)
        if own.height:
            mask = frontier(own.select("obj_task", "obj_tool_efficiency").to_numpy())
            marked.append(own.with_columns(pl.Series("on_frontier", mask)))
    frame = pl.concat(marked)
    base = alt.Chart(frame.to_pandas()).encode(
        x=alt.X("obj_tool_efficiency:Q", title="tool efficiency (mean over seeds, shared n*)", scale=alt.Scale(zero=False)),
        y=alt.Y("obj_task:Q", title="validation accuracy (mean over seeds)", scale=alt.Scale(zero=False)),
        color=alt.Color("configuration:N", sort=list(configurations_shown)),
    )
    lines = base.transform_filter(alt.datum.on_frontier).mark_line(strokeWidth=1.5).encode(
        order=alt.Order("obj_tool_efficiency:Q"))
    dots = base.mark_point(filled=True).encode(
        size=alt.Size("on_frontier:N", scale=alt.Scale(range=[30, 90]), legend=None),
        tooltip=["configuration", "step", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("mean_tool_calls:Q", format=".2f")])
    return (lines + dots).properties(width=520, height=360,
                                     title="Checkpoint frontiers (validation; every 30 steps; line = frontier)")


def _warm_start(out: Path, settings: StudySettings) -> pl.DataFrame:
    """The policy before RL, evaluated like a final checkpoint (greedy; cached per policy file)."""
    import hashlib

    from paretopo.training.train import tiny_policy_path

    weights = tiny_policy_path() / "model.safetensors"
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
    task = get_task("arithmetic")
    model, tokenizer = load_policy(str(tiny_policy_path()), lora=False)
    _, _, test_split = task.default_splits
    examples = task.load(test_split)[: settings.test_examples]
    result = evaluate_policy(model, tokenizer, task, examples, greedy=True,
                             max_new_tokens=RunSettings.max_completion_length, tools_in_prompt=False, progress=False)
    frame = result.rows.select("id", "correct", "tool_calls", *[c for c in result.rows.columns if c.startswith("meta_")])
    frame = frame.with_columns(pl.lit("test").alias("split"), pl.lit(digest).alias("policy_sha256"))
    frame.write_parquet(cache)
    return frame


def write_report(out: Path, chosen: list[Configuration], settings: StudySettings) -> None:
    """Write runs.parquet, checkpoints.parquet, tiers.parquet and the frontier chart."""
    _warm_start(out, settings)
    runs, points = _run_rows(out, chosen, settings)
    runs.write_parquet(out / "runs.parquet")
    points.drop("run").with_columns(pl.col("configuration")).write_parquet(out / "checkpoints.parquet")
    tiers = _tier_rows(runs)
    if tiers.height:
        tiers.write_parquet(out / "tiers.parquet")
    shown = [c.name for c in chosen if c.table == "methods"]
    chart = _frontier_chart(points, shown)
    chart.save(str(out / "frontiers.svg"))
    chart.save(str(out / "frontiers.png"), scale_factor=2)


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


def _strongest_baseline(runs: pl.DataFrame) -> str | None:
    """The baseline with the best mean *validation* accuracy (fewer calls breaks ties)."""
    means = _means(runs.filter(pl.col("configuration").is_in(BASELINES)))
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
    baselines = [b for b in BASELINES if b in means]
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


def study_markdown(out: Path, settings: StudySettings, record: dict[str, Any]) -> str:
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
        f"Produced by `{record['command']}` (commit {record.get('commit') or 'unknown'}, finished "
        f"{record['finished']}) on {machine['cores']} cores ({machine['cpu']}), no GPU: "
        f"**{wall:.1f} min** wall time ({record['training_seconds'] / 60:.1f} min training in "
        f"{settings.processes or machine['cores']} parallel processes, one thread each). "
        f"Every run: the shipped tiny policy, full fine-tuning at learning rate {_learning_rate(settings):g}, "
        f"{settings.max_steps} optimiser steps of {settings.prompts_per_step} "
        f"prompts x {settings.num_generations} completions (stage 1: {settings.stage1_steps} steps where the "
        f"method has one), seeds {seeds}; validation: {settings.validation_examples} questions greedy at every "
        f"checkpoint (every {settings.save_steps} steps); test: "
        f"{'the whole split' if settings.test_examples is None else f'{settings.test_examples} questions'}, greedy, "
        f"final policy only. Numbers are mean ± std over seeds. Significance: paired over (seed, test question) "
        f"against the strongest baseline{f' (`{strongest}`, chosen on validation accuracy)' if strongest else ''}: "
        f"exact McNemar test on correctness (questions won/lost), Wilcoxon signed-rank test on tool calls. "
        f"Frontier HV: hypervolume (reference (0, 0)) of a run's validation checkpoints in (accuracy, tool "
        f"efficiency), mean over seeds; tool efficiency is exp(-0.5 |calls - n*|) of every answer, right or "
        f"wrong (not gated), with one n* per question shared by every run of the study (the fewest calls of "
        f"any correct answer to it in any evaluation).",
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
                  "", _tier_markdown(tiers, [*shown, "warm start"])]
    parts += ["", "### Checkpoint frontiers", "", "![checkpoint frontiers](frontiers.png)", "",
              _frontier_markdown(out, by_table["methods"]), "", "### What the measurement says", "",
              *_claims(runs, strongest)]
    return "\n".join(parts) + "\n"


def _learning_rate(settings: StudySettings) -> float:
    from paretopo.training.train import TINY_POLICY_LR

    return settings.learning_rate or TINY_POLICY_LR


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
    from paretopo.core.config import ParetoPOConfig

    for configuration in configurations():
        if configuration.name == name:
            return tuple(configuration.overrides.get("weights", ParetoPOConfig().weights))
    return tuple(ParetoPOConfig().weights)


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


def _tier_markdown(tiers: pl.DataFrame, names: Sequence[str]) -> str:
    from paretopo.tasks.arithmetic import TIER_NAMES

    means = tiers.group_by("configuration", "tier").agg(pl.col("accuracy", "mean_tool_calls").mean())
    return _grid_markdown(means, names, "tier", lambda t: f"tier {t}: {TIER_NAMES.get(t, '')}")


def _frontier_markdown(out: Path, names: Sequence[str]) -> str:
    points = pl.read_parquet(out / "checkpoints.parquet").filter(pl.col("split") == "validation")
    means = points.group_by("configuration", "step").agg(pl.col("accuracy", "mean_tool_calls").mean())
    return ("Validation accuracy / mean calls at each checkpoint (mean over seeds):\n\n"
            + _grid_markdown(means, names, "step", lambda s: f"step {s}"))


def _study_section_bounds(text: str, docs: Any) -> tuple[str, str]:
    """The text before and after the study section of a markdown file (between the markers)."""
    if text.count(STUDY_BEGIN) != 1 or text.count(STUDY_END) != 1 or text.index(STUDY_BEGIN) > text.index(STUDY_END):
        raise ValueError(f"{docs} has no study section; add one line {STUDY_BEGIN} and, below it, one line "
                         f"{STUDY_END} where the study's tables go")
    head, rest = text.split(STUDY_BEGIN, 1)
    return head, rest.split(STUDY_END, 1)[1]


def _write_markdown(out: Path, settings: StudySettings, record: dict[str, Any]) -> None:
    from paretopo.evaluation.runlog import atomic_write_bytes

    body = study_markdown(out, settings, record)
    atomic_write_bytes(out / "results.md", ("# Study results\n\n" + body).encode())
    if settings.docs:
        docs = Path(settings.docs)
        head, tail = _study_section_bounds(docs.read_text(), docs)
        relative = os.path.relpath(out, docs.parent)
        section = body.replace("](frontiers.png)", f"]({relative}/frontiers.png)")
        atomic_write_bytes(docs, f"{head}{STUDY_BEGIN}\n{section}{STUDY_END}{tail}".encode())
