"""One training run, end to end: plan, policy, trainer, run log, evaluation.

``train_run`` is what ``paretopo train`` and ``paretopo demo`` call. It resolves the run once
(``paretopo.training.plan.plan_run``: method config, task, model, splits, run folder), loads the
policy (``paretopo.agent.models.load_policy``: Unsloth on CUDA, transformers + PEFT elsewhere;
the shipped warm-started tiny policy by default), builds the TRL trainer
(``paretopo.training.trainer.build_trainer``: TRL's config, rewards, rollouts and callbacks),
trains with the method preset, evaluates every checkpoint on the validation split and the final
policy on the test split (``paretopo.training.evaluator.Evaluator``), and leaves everything in
the run folder (``paretopo.evaluation.runlog``).

Resuming: ``train_run(..., resume=True)`` continues from the last complete checkpoint of the
same run folder with the same trainer state (n*, archive, EMA gain, stage, optimiser, RNG). A
checkpoint is complete once its ``paretopo_state.json`` exists (written last, atomically); one
cut short by a crash is removed, and a checkpoint whose validation evaluation was cut short is
evaluated again before training continues.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paretopo.agent import tiny_policy_path
from paretopo.core.config import ParetoPOConfig
from paretopo.evaluation.runlock import locking_run_folder  # one process per run folder
from paretopo.evaluation.runlog import RunLog, checkpoint_step, follow_umask, run_paths
from paretopo.training.plan import LORA_LR, TINY_POLICY_LR, RunPlan, RunSettings, plan_run

__all__ = ["LORA_LR", "TINY_POLICY_LR", "RunJob", "RunResult", "RunSettings", "tiny_policy_path",
           "train_run", "train_runs_parallel"]

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    method: str
    test: dict[str, Any]
    steps: int
    trainer: Any = field(default=None, repr=False)  # the ParetoPOTrainer, for inspection
    # with settings.test_samples: per tier, sampled_accuracy and sampled_mean_tool_calls on test
    sampled_by_tier: list[dict[str, Any]] | None = None


def _run_folder_of(method: Any = "paretopo", settings: RunSettings | None = None, **_: Any) -> str:
    return str(method.run_dir) if isinstance(method, RunPlan) else (settings or RunSettings()).run_dir


@locking_run_folder(_run_folder_of)
def train_run(
    method: str | ParetoPOConfig | RunPlan = "paretopo",
    settings: RunSettings | None = None,
    *,
    method_overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> RunResult:
    """Train one method on one task and evaluate it; returns the test summary.

    Args:
        method: a preset name (``paretopo``, ``torl_grpo``, ...), a full ``ParetoPOConfig``, or
            a ``RunPlan`` from :func:`paretopo.training.plan.plan_run` (then nothing else).
        settings: run settings (folder, task, model, steps, batch, ...).
        method_overrides: ``ParetoPOConfig`` fields overriding the preset.
        resume: continue the run in ``settings.run_dir`` from its last checkpoint.
    """
    from paretopo.agent.models import load_policy
    from paretopo.training.trainer import build_trainer, prepare_environment

    plan = method if isinstance(method, RunPlan) else plan_run(settings, method, overrides=method_overrides,
                                                                resume=resume)
    settings = plan.settings
    prepare_environment(settings)
    model, tokenizer = load_policy(plan.model_path, lora=plan.lora, lora_rank=settings.lora_rank,
                                   lora_alpha=settings.lora_alpha, load_in_4bit=settings.load_in_4bit,
                                   max_seq_length=settings.max_seq_length, prefer_unsloth=settings.prefer_unsloth)
    run_log = RunLog(plan.run_dir)
    if not plan.resume:
        run_log.start_over()  # a run cut short before its first complete checkpoint (e.g. a full disk) left this
        run_log.write_config(plan.record())
    trainer = build_trainer(plan, model, tokenizer, run_log)
    if plan.resume_from is not None:
        _remove_incomplete_checkpoints_after(plan.resume_from)
    trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
    step = int(trainer.state.global_step)
    test, sampled_by_tier = trainer.evaluator.final_test(trainer.unwrapped_model(), step, progress=settings.progress)
    _save_final(trainer, tokenizer, run_paths(plan.run_dir).final)
    return RunResult(run_dir=plan.run_dir, method=plan.method, test=test, steps=step, trainer=trainer,
                     sampled_by_tier=sampled_by_tier)


def _save_final(trainer: Any, tokenizer: Any, final_dir: Path) -> None:
    trainer.save_model(str(final_dir))
    tokenizer.save_pretrained(str(final_dir))
    follow_umask(final_dir)  # safetensors writes weights 0600


def _remove_incomplete_checkpoints_after(checkpoint: Path) -> None:
    """Delete checkpoints newer than `checkpoint`: a crash cut them short, resuming rewrites them."""
    for later in run_paths(checkpoint.parent.parent).checkpoint_folders():
        if checkpoint_step(later) > checkpoint_step(checkpoint):
            logger.warning("removing %s: a crash cut it short", later)
            shutil.rmtree(later)


@dataclass(frozen=True)
class RunJob:
    """One ``train_run`` call for :func:`train_runs_parallel`."""

    method: str
    settings: RunSettings
    method_overrides: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = False  # continue settings.run_dir from its last complete checkpoint


def _run_job(job: RunJob) -> RunResult:
    import torch

    # one thread per process: on 2 cores, 2 processes x 1 thread beat 1 process x 2 threads
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = train_run(job.method, job.settings, method_overrides=job.method_overrides, resume=job.resume)
    return replace(result, trainer=None)  # the trainer does not cross a process boundary


def train_runs_parallel(jobs: Sequence[RunJob], processes: int | None = None,
                        on_done: Callable[[RunJob, RunResult], None] | None = None) -> list[RunResult]:
    """Run several ``train_run`` calls in separate processes, one thread each; results in job order.

    Args:
        jobs: the runs (each with its own ``settings.run_dir``).
        processes: worker processes (default: one per CPU core, at most ``len(jobs)``).
        on_done: called in this process as each run finishes (e.g. to print a line).

    A failing run raises here, after the runs already started have finished.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    if not jobs:
        return []
    run_dirs = [str(job.settings.run_dir) for job in jobs]
    if len(set(run_dirs)) != len(run_dirs):
        raise ValueError("every parallel run needs its own run_dir")
    processes = max(1, min(len(jobs), processes or os.cpu_count() or 1))
    results: list[RunResult | None] = [None] * len(jobs)
    # spawn, not fork: a forked torch/tokenizers process can deadlock on inherited thread pools
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            if on_done is not None:
                on_done(jobs[index], results[index])
    return results  # type: ignore[return-value]
