"""The paper's claims at small scale: every method, every ablation, several seeds, one command.

``paretopo study`` trains every method preset (the six baselines and ParetoPO), the four
Table-3 ablations, ParetoPO at the five Table-4 weights and with ``stage1_adv_norm="mean_only"``
(stage 1's meta reward only acts on the advantages under that normalisation), each for several
seeds with the same trainer, policy, budget and seeds, in parallel processes (one thread each).
Every run evaluates its checkpoints on the validation split and its final policy on the test
split (``paretopo.training.train``); the study then writes one results folder
(``paretopo.commands.study_report``: the tables, paired tests and the docs section)::

    <out>/runs/<configuration>/seed<S>/   run logs (eval tables; steps.parquet and the final policy git-ignored)
    <out>/final_weights.json              sha256 and size of every final policy, and the command that
                                          re-trains each (the weights themselves stay out of git)
    <out>/runs.parquet                    one row per run: validation and test numbers, frontier HV
    <out>/checkpoints.parquet             every evaluated checkpoint on one shared n*
    <out>/tiers.parquet                   test accuracy and calls per tier of the testbed and run
    <out>/frontiers.png / .svg            checkpoint frontiers per method (validation, shared n*)
    <out>/results.md                      every table, and what holds of the paper's claims
    <out>/study.json                      command, seeds, budget, machine, wall time

Choices (which baseline is "the strongest") are made on the validation split; the test split
is only reported. A study that stops part-way is continued by running the same command again:
finished runs are kept, a run cut short resumes from its last complete checkpoint.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from paretopo.agent import TINY_POLICY_FOLDERS, chosen_learning_rates, tiny_policy_learning_rate
from paretopo.commands import study_report
from paretopo.core.settings import (
    MAX_EXAMPLES,
    MAX_GENERATIONS,
    MAX_KL_BETA,
    MAX_LR,
    MAX_PROMPTS,
    MAX_SEED,
    MAX_STEPS,
    MAX_THREADS,
    check_settings,
    setting,
)

__all__ = ["BASELINES", "Configuration", "StudySettings", "configurations", "finished_runs", "run_study"]

BASELINES = ("torl_grpo", "fixed_weight", "otc_grpo", "mo_grpo", "gdpo", "hv_scalarized")
ABLATIONS = ("no_stage1", "no_stage2", "no_dynamic_weighting", "no_pareto_ranking")
TABLE4_WEIGHTS = ((0.2, 0.8), (0.4, 0.6), (0.5, 0.5), (0.6, 0.4), (0.8, 0.2))


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

    out: str = setting("results/study", "results folder; running again continues a study cut short",
                       path=True)
    task: str = setting("arithmetic", "testbed: a task with a shipped warm-started tiny policy",
                        choices=tuple(TINY_POLICY_FOLDERS))
    seeds: tuple[int, ...] = setting((0, 1, 2), "seeds (--quick: 0)", kind=int, many=True, minimum=0,
                                      maximum=MAX_SEED)
    max_steps: int = setting(150, "optimiser steps per run, the demo's budget (--quick: 8)", flag="--steps", minimum=1,
                             maximum=MAX_STEPS)
    stage1_steps: int = setting(30, "stage-1 steps of the methods that have one (--quick: 4)", minimum=0,
                                maximum=MAX_STEPS)
    prompts_per_step: int = setting(8, "prompts per optimiser step (--quick: 4)", flag="--prompts", minimum=1,
                                    maximum=MAX_PROMPTS)
    num_generations: int = setting(8, "completions per prompt (--quick: 4)", flag="--generations", minimum=2,
                                   maximum=MAX_GENERATIONS)
    save_steps: int = setting(30, "steps between checkpoints, each evaluated on validation (at most --steps; "
                                  "--quick: 4)", minimum=1, maximum=MAX_STEPS)
    validation_examples: int = setting(200, "validation questions per checkpoint evaluation (--quick: 24)",
                                       minimum=1, maximum=MAX_EXAMPLES)
    test_examples: int | None = setting(None, "test questions of the final evaluation; default: the whole split "
                                              "(--quick: 32)", kind=int, minimum=1,
                                        maximum=MAX_EXAMPLES)
    test_samples: int = setting(4, "sampled completions per test question at temperature 1, reported beside greedy "
                                   "(0: greedy only)", minimum=0, maximum=MAX_GENERATIONS)
    learning_rate: float | None = setting(None, "learning rate of every run; default: the testbed's, chosen on "
                                                f"validation ({chosen_learning_rates()})", kind=float, above=0,
                                          maximum=MAX_LR)
    kl_beta: float = setting(0.0, "KL coefficient to the warm start in every run (0: none)", minimum=0,
                             maximum=MAX_KL_BETA)
    processes: int | None = setting(None, "parallel runs; default: one per CPU core", kind=int, minimum=1,
                                     maximum=MAX_THREADS)
    only: tuple[str, ...] | None = setting(None, "train only these configurations (the report covers every finished one); "
                                                       "default: all", kind=str, many=True)
    quick: bool = setting(False, "2 methods, 1 seed, 8 steps: the plumbing in a minute (not a result)")
    docs: str | None = setting(None, "also replace the study section of this markdown file (e.g. docs/results.md)",
                               kind=str)

    def __post_init__(self) -> None:
        check_settings(self)

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
    found += [Configuration("calibrated_rank", "methods", "calibrated_rank")]  # ours: fronts spaced by w.r
    return found


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def _run_dir(settings: StudySettings, configuration: Configuration, seed: int) -> Path:
    return Path(settings.out) / "runs" / configuration.name / f"seed{seed}"


def _finished(run_dir: Path) -> bool:
    from paretopo.evaluation.runlog import run_paths

    # the final test evaluation runs after the final policy is saved; the policy itself may be absent
    # (a clone: the weights are not committed, final_weights.json says how to get them back)
    paths = run_paths(run_dir)
    return paths.evals.exists() and pl.read_parquet(paths.evals).filter(pl.col("split") == "test").height > 0


def finished_runs(settings: StudySettings, chosen: list[Configuration]) -> list[study_report.StudyRun]:
    """The finished runs of the chosen configurations, configuration by configuration, for the report."""
    return [study_report.StudyRun(str(_run_dir(settings, c, seed)), c.name, c.table, c.preset, seed)
            for c in chosen for seed in settings.seeds if _finished(_run_dir(settings, c, seed))]


def _jobs(settings: StudySettings, chosen: list[Configuration]) -> list[Any]:
    from paretopo.core.config import PRESETS
    from paretopo.evaluation.runlog import last_complete_checkpoint
    from paretopo.training.train import RunJob, RunSettings

    base = RunSettings(max_steps=settings.max_steps, prompts_per_step=settings.prompts_per_step,
                       num_generations=settings.num_generations, save_steps=settings.save_steps,
                       validation_examples=settings.validation_examples, test_examples=settings.test_examples,
                       learning_rate=settings.learning_rate, test_samples=settings.test_samples, progress=False,
                       task=settings.task, kl_beta=settings.kl_beta)
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


# what every run of one study shares: continuing a study with another value would mix two studies
_SHARED = ("task", "learning_rate", "kl_beta", "max_steps", "stage1_steps", "prompts_per_step", "num_generations",
           "save_steps", "validation_examples", "test_examples", "test_samples")


_BEFORE_IT_EXISTED = {"task": "arithmetic", "kl_beta": 0.0, "test_samples": 0}


def _refuse_other_settings(record_path: Path, settings: StudySettings) -> None:
    if not record_path.exists():
        return
    before = json.loads(record_path.read_text()).get("settings", {})
    defaults = StudySettings()
    for name in _SHARED:
        # a record older than a setting trained as if it had been there with this value
        earlier = before.get(name, _BEFORE_IT_EXISTED.get(name, getattr(defaults, name)))
        now = getattr(settings, name)
        if name == "learning_rate":  # the default is the testbed's chosen rate, given or not
            earlier = earlier or tiny_policy_learning_rate(before.get("task", "arithmetic"))
            now = now or tiny_policy_learning_rate(settings.task)
        if earlier != now:
            raise ValueError(f"{record_path.parent} holds a study with {name}={earlier!r}, not {now!r}; "
                             f"pass another --out or the same {name}")


def _runs_by_commit(previous: dict[str, Any], finished_before: int, trained_now: int) -> dict[str, int]:
    """How many of the study's runs each commit trained (a study continued after a change of code
    mixes commits, and its report says so)."""
    by_commit = dict(previous.get("runs_trained_at_commit") or
                     ({previous["commit"]: finished_before} if previous.get("commit") and finished_before else {}))
    if trained_now:
        commit = _git_commit() or "unknown"
        by_commit[commit] = by_commit.get(commit, 0) + trained_now
    return by_commit


def run_study(settings: StudySettings, log: Callable[[str], None] = print) -> Path:
    """Train what is missing, then write the results folder; returns its path."""
    from paretopo.evaluation.runlog import run_paths
    from paretopo.training.train import train_runs_parallel

    out = Path(settings.out)
    if settings.docs:
        study_report.study_section_bounds(Path(settings.docs).read_text(), settings.docs, settings.task)  # fail early
    every = configurations(settings.quick)
    chosen = every
    if settings.only:
        unknown = sorted(set(settings.only) - {c.name for c in chosen})
        if unknown:
            raise ValueError(f"unknown study configuration(s) {unknown}; choose from {[c.name for c in chosen]}")
        chosen = [c for c in chosen if c.name in settings.only]
    _refuse_other_settings(out / "study.json", settings)
    finished_before = len(finished_runs(settings, every))
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

    # the report covers every configuration with a finished run, not only those this invocation trained
    reported = [c for c in every if finished_runs(settings, [c])]

    record = {
        "command": "paretopo study" + (" --quick" if settings.quick else "") + f" --task {settings.task}",
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("out", "docs")},
        "configurations": [asdict(c) for c in reported],
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
        "runs_trained_at_commit": _runs_by_commit(previous, finished_before, len(jobs)),
    }
    report_started = time.perf_counter()
    study_report.write_report(out, finished_runs(settings, reported), settings)
    write_weights_manifest(out, reported, settings, record["commit"])
    record["report_seconds"] = time.perf_counter() - report_started
    record["wall_seconds"] = record["training_seconds"] + record["report_seconds"]
    atomic_write_json(record_path, record)
    study_report.write_markdown(out, settings, record)
    log(f"study written to {out} in {record['wall_seconds'] / 60:.1f} min "
        f"(training {record['training_seconds'] / 60:.1f} min)")
    return out


# ------------------------------------------------------------------------------------------
# the final weights: out of git, described by a manifest
# ------------------------------------------------------------------------------------------

WEIGHTS_MANIFEST = "final_weights.json"
WEIGHTS_FILE = "model.safetensors"


def retrain_command(settings: StudySettings, configuration: str = "{configuration}", seed: int | str = "{seed}",
                    out: str = "OUT") -> str:
    """The ``paretopo study`` command that trains one run of this study again, every budget pinned
    (with the defaults, the manifest's template: ``{configuration}`` and ``{seed}`` left to fill)."""
    parts = ["paretopo study", f"--out {out}", f"--task {settings.task}", f"--only {configuration}", f"--seeds {seed}",
             f"--steps {settings.max_steps}", f"--stage1-steps {settings.stage1_steps}",
             f"--prompts {settings.prompts_per_step}", f"--generations {settings.num_generations}",
             f"--save-steps {settings.save_steps}", f"--validation-examples {settings.validation_examples}"]
    if settings.test_examples is not None:
        parts.append(f"--test-examples {settings.test_examples}")
    if settings.learning_rate is not None:
        parts.append(f"--learning-rate {settings.learning_rate!r}")
    if settings.kl_beta:
        parts.append(f"--kl-beta {settings.kl_beta!r}")
    return " ".join([*parts, "--processes 1"])


def write_weights_manifest(out: Path, chosen: list[Configuration], settings: StudySettings,
                           commit: str | None) -> Path:
    """``<out>/final_weights.json``: sha256 and bytes of each finished run's final weights, the commit
    that trained them and the command that re-trains a run (``retrain``: fill in ``{configuration}``
    and ``{seed}`` from the run's name ``<configuration>/seed<seed>``). ``scripts/study_weights.py``
    checks, restores (from git history) or re-trains from it.

    The weights are git-ignored (the repository must stay small enough to carry to a GPU
    machine). A finished run whose weights are not on disk keeps its entry from the previous
    manifest. One line per run, so the file stays small and diffs stay readable.
    """
    import hashlib

    from paretopo.evaluation.runlog import atomic_write_bytes, run_paths

    path = out / WEIGHTS_MANIFEST
    previous = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    runs: dict[str, dict[str, Any]] = {}
    for configuration in chosen:
        for seed in settings.seeds:
            run_dir = _run_dir(settings, configuration, seed)
            name = f"{configuration.name}/seed{seed}"
            weights = run_paths(run_dir).final / WEIGHTS_FILE
            if weights.exists():
                runs[name] = {"bytes": weights.stat().st_size,
                              "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
            elif name in previous and _finished(run_dir):
                runs[name] = previous[name]
    header = {"about": f"final policies of this study (runs/<run>/final/{WEIGHTS_FILE}), not committed; "
                       "python scripts/study_weights.py check | restore RUN | retrain RUN",
              "trained_at_commit": commit, "retrain": retrain_command(settings)}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()]
    entries = [f"    {json.dumps(name)}: {json.dumps(entry)}" for name, entry in sorted(runs.items())]
    text = "{\n" + "\n".join(lines) + '\n  "runs": {\n' + ",\n".join(entries) + "\n  }\n}\n"
    atomic_write_bytes(path, text.encode())
    return path
