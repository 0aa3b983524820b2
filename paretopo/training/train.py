"""One training run, end to end: policy, task, rollouts, trainer, run log, evaluation.

``train_run`` is what ``paretopo train`` and ``paretopo demo`` call. It loads the policy
(``paretopo.agent.models.load_policy``: Unsloth on CUDA, transformers + PEFT elsewhere; the shipped
warm-started tiny policy by default), builds the task's dataset, plugs ``paretopo.agent.rollout``'s
tool-using decoding loop into TRL as ``rollout_func``, configures TRL's ``GRPOConfig`` for the
device (``bf16=False``, one thread, no gradient checkpointing on CPU), trains with the method
preset, evaluates every checkpoint on the validation split and the final policy on the test
split, and leaves everything in the run folder (``paretopo.evaluation.runlog``).

Resuming: ``train_run(..., resume=True)`` continues from the last complete checkpoint of the
same run folder with the same trainer state (n*, archive, EMA gain, stage, optimiser, RNG). A
checkpoint is complete once its ``paretopo_state.json`` exists (written last, atomically); one
cut short by a crash is removed, and a checkpoint whose validation evaluation was cut short is
evaluated again before training continues.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from paretopo import library_versions
from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import require_known_objectives, scoring_options
from paretopo.core.settings import setting
from paretopo.evaluation.runlog import RunLog, checkpoint_step, last_complete_checkpoint, run_paths
from paretopo.training.trainer import (  # TRL contact lives in paretopo.training.trainer
    CheckpointEvalCallback,
    QuietProgressCallback,
    grpo_config,
    make_reward_functions,
    make_rollout_func,
    paretopo_trainer_class,
)

__all__ = ["CheckpointEvalCallback", "LORA_LR", "TINY_POLICY_LR", "RunJob", "RunResult", "RunSettings", "tiny_policy_path",
           "train_run", "train_runs_parallel"]

logger = logging.getLogger(__name__)


TINY_POLICY_LR = 3e-4
"""Learning rate for full fine-tuning of the ~170k-parameter tiny policy (chosen on validation)."""
LORA_LR = 2e-3
"""Learning rate for LoRA adapters (rank 16, alpha 32)."""


def tiny_policy_path(task_name: str = "arithmetic") -> Path:
    """The shipped warm-started tiny policy of a task (``data/tiny_policy``, ``data/tiny_policy_lookup``)."""
    from paretopo.training.warmstart import default_policy_path

    return default_policy_path(task_name)


@dataclass
class RunSettings:
    """Everything about a run that is not the method (see ``ParetoPOConfig`` for that).

    ``paretopo train`` offers every field that has a flag, with this help text and default.
    """

    run_dir: str = setting("runs/paretopo", "folder of the run log, checkpoints and final policy")
    task: Any = setting("arithmetic", "task name (arithmetic, math, hotpotqa, nq_open), or a Task instance from Python",
                         kind=str)
    model: str | None = setting(None, "hub id or local path; default: the shipped warm-started tiny policy", kind=str)
    seed: int = setting(0, "seed of sampling, data order and initialisation")
    max_steps: int = setting(40, "optimiser steps", flag="--steps", minimum=1)
    prompts_per_step: int = setting(8, "prompts per optimiser step", flag="--prompts", minimum=1)
    num_generations: int = setting(8, "completions per prompt (the group size G)", flag="--generations", minimum=2)
    learning_rate: float | None = setting(
        None, "learning rate; default: TINY_POLICY_LR (3e-4) for full fine-tuning, LORA_LR (2e-3) for LoRA",
        flag="--lr", kind=float)
    max_completion_length: int = setting(160, "new tokens per completion, tool responses included", minimum=1)
    temperature: float = setting(1.0, "sampling temperature of the rollouts")
    max_tool_calls: int | None = setting(None, "tool budget per completion; default: the task's", kind=int, minimum=0)
    lora: bool | None = setting(None, "LoRA adapters (--lora) or all weights (--no-lora); default: all weights "
                                       "for the shipped tiny policy, LoRA for any --model", kind=bool)
    lora_rank: int = setting(16, "LoRA rank", minimum=1)
    lora_alpha: int = setting(32, "LoRA alpha", minimum=1)
    prefer_unsloth: bool = setting(True, "use Unsloth when CUDA and unsloth are there; --no-prefer-unsloth forces "
                                          "transformers + PEFT")
    rollout_backend: str = setting("tool_loop", "rollout backend, a name in paretopo.agent.rollout_backends")
    load_in_4bit: bool = setting(False, "4-bit base weights (QLoRA); needs the Unsloth backend (CUDA)")
    max_seq_length: int = setting(2048, "longest prompt + completion Unsloth prepares its kernels for", minimum=1)
    save_steps: int = setting(10, "steps between checkpoints (each is evaluated on validation)", minimum=1)
    validation_examples: int = setting(48, "validation questions each checkpoint is evaluated on", minimum=1)
    test_examples: int | None = setting(None, "evaluate the final policy on the first N test questions; default: all",
                                         kind=int, minimum=1)
    test_samples: int = setting(0, "also sample N completions per test question at temperature 1: the sampled "
                                   "policy's accuracy and calls beside greedy's (sampled_* in the test summary; "
                                   "0: greedy only)", minimum=0)
    train_examples: int | None = setting(None, "train on the first N training questions; default: all", kind=int,
                                          minimum=1)
    train_split: str | None = setting(None, "training split; default: the task's (Task.default_splits)", kind=str)
    validation_split: str | None = setting(None, "validation split; default: the task's", kind=str)
    test_split: str | None = setting(None, "test split; default: the task's", kind=str)
    checkpoint_eval: bool = setting(True, "evaluate every checkpoint on the validation questions")
    tools_in_prompt: bool | None = setting(None, "render the tools block in the prompt; default: off for the tiny "
                                                  "policy (taught by its warm start), on otherwise", kind=bool)
    epsilon_high: float = setting(0.28, "upper clip range of the policy ratio (DAPO's clip-higher)")
    kl_beta: float = setting(0.0, "KL coefficient to the reference policy (0: no reference model)")
    threads: int = setting(1, "torch threads on CPU", minimum=1)
    progress: bool = setting(True, "progress bars")
    print_logs: bool = setting(False, "TRL's per-step metric dicts on stdout (they are in steps.parquet anyway)")
    length_buckets: int = setting(4, "score the loss batch in K chunks of rows sorted by completion length, each "
                                     "padded only to its own longest (0: TRL's one padded batch; not used with "
                                     "Unsloth, which computes log-probs its own way)", minimum=0)
    extra: dict[str, Any] = setting(help="more GRPOConfig fields", flag="", default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    method: str
    test: dict[str, Any]
    steps: int
    trainer: Any = field(default=None, repr=False)  # the ParetoPOTrainer, for inspection
    # with settings.test_samples: per tier, sampled_accuracy and sampled_mean_tool_calls on test
    sampled_by_tier: list[dict[str, Any]] | None = None


def _dataset(task: Any, examples: list[Any]) -> Any:
    from datasets import Dataset

    if not examples:
        raise ValueError(f"task {task.name!r} produced no training examples")
    return Dataset.from_list([
        {"prompt": task.messages(e), "id": e.id, "answer": e.answer} for e in examples
    ])


def train_run(
    method: str | ParetoPOConfig = "paretopo",
    settings: RunSettings | None = None,
    *,
    method_overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> RunResult:
    """Train one method on one task and evaluate it; returns the test summary.

    Args:
        method: a preset name (``paretopo``, ``torl_grpo``, ...) or a full ``ParetoPOConfig``.
        settings: run settings (folder, task, model, steps, batch, ...).
        method_overrides: ``ParetoPOConfig`` fields overriding the preset.
        resume: continue the run in ``settings.run_dir`` from its last checkpoint.
    """
    from paretopo.agent.models import load_policy, policy_backend
    from paretopo.evaluation.evaluate import SAMPLED_PREFIX, accuracy_and_calls_by, evaluate_policy
    from paretopo.tasks import get_task

    settings = settings or RunSettings()
    config = method if isinstance(method, ParetoPOConfig) else ParetoPOConfig.from_preset(method, **dict(method_overrides or {}))
    require_known_objectives(config.objectives)  # before any model is loaded
    if not torch.cuda.is_available():
        torch.set_num_threads(settings.threads)
    if not settings.progress:  # also silences the weight loading / shard writing bars
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    run_dir = Path(settings.run_dir)
    paths = run_paths(run_dir)
    checkpoint_dir = paths.checkpoints
    if run_dir.exists() and paths.checkpoint_folders() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another run folder")
    resume_from = last_complete_checkpoint(run_dir, config.method) if resume else None

    # the task's tool budget is the method's C (and OTC's c) unless the settings override it
    if isinstance(settings.task, str):
        options = {} if settings.max_tool_calls is None else {"max_tool_calls": settings.max_tool_calls}
        if settings.task in ("arithmetic", "lookup") and settings.model is not None:
            options["instructions"] = True  # a chat model meets the task cold; the tiny policy learned its format
        task = get_task(settings.task, **options)
    else:
        task = settings.task
    # brevity (if it is an objective) reaches 0 at the longest completion the run generates
    config = ParetoPOConfig.from_dict({**config.to_dict(), "max_tool_calls": task.max_tool_calls,
                                       "brevity_length": config.brevity_length or settings.max_completion_length})
    model_path = settings.model or str(tiny_policy_path(task.name))
    is_tiny = settings.model is None
    # LoRA saves memory on real models; on a ~170k-parameter model its adapters are as large as
    # the weights and PEFT's per-layer Python dispatch was ~40% of the forward time.
    lora = (not is_tiny) if settings.lora is None else settings.lora
    settings = replace(settings, lora=lora,
                       learning_rate=settings.learning_rate or (LORA_LR if lora else TINY_POLICY_LR))
    tools_in_prompt = (not is_tiny) if settings.tools_in_prompt is None else settings.tools_in_prompt
    model, tokenizer = load_policy(model_path, lora=lora, lora_rank=settings.lora_rank,
                                   lora_alpha=settings.lora_alpha, load_in_4bit=settings.load_in_4bit,
                                   max_seq_length=settings.max_seq_length, prefer_unsloth=settings.prefer_unsloth)

    default_train, default_validation, default_test = task.default_splits
    train_examples = task.load(settings.train_split or default_train)[: settings.train_examples]
    validation = task.load(settings.validation_split or default_validation)[: settings.validation_examples]
    test = task.load(settings.test_split or default_test)[: settings.test_examples]
    efficiency = scoring_options(config)

    tools = {tool.__name__: tool for tool in task.tools()}
    run_log = RunLog(run_dir)
    if not resume:
        run_log.write_config({
            "method": config.to_dict(), "settings": {**{f.name: getattr(settings, f.name) for f in fields(settings)}, "task": task.name}, "model": model_path,
            "task": task.name,
            "versions": library_versions(), "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            # which sandbox level model-written code ran under (paretopo.tools.sandbox)
            "tool_isolation": {name: tool.isolation for name, tool in tools.items() if hasattr(tool, "isolation")},
        })

    def validation_fn(trainer: Any) -> tuple[float, ...]:
        result = evaluate_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, task, validation,
                                 greedy=True, max_new_tokens=settings.max_completion_length,
                                 tracker=trainer.validation_nstar, efficiency_options=efficiency,
                                 tools_in_prompt=tools_in_prompt, progress=False)
        return result.objectives

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is the documented path here
    trainer_class = paretopo_trainer_class()
    trainer = trainer_class(
        model=model,
        processing_class=tokenizer,
        reward_funcs=make_reward_functions(task),
        args=grpo_config(settings, checkpoint_dir),
        train_dataset=_dataset(task, train_examples),
        rollout_func=make_rollout_func(tools, backend=settings.rollout_backend, max_tool_calls=task.max_tool_calls,
                                           answer_extractor=task.extract_answer, tools_in_prompt=tools_in_prompt),
        method=config,
        run_log=run_log,
        validation_fn=validation_fn,
        length_buckets=0 if policy_backend(model) == "unsloth" else settings.length_buckets,
    )
    if not settings.print_logs:  # keep the progress bar, drop the per-step dict dumps (they are in steps.parquet)
        trainer.remove_callback(PrinterCallback)  # what transformers prints with when tqdm is off
        trainer.remove_callback(ProgressCallback)
        if settings.progress:
            trainer.add_callback(QuietProgressCallback)
    if settings.checkpoint_eval:
        trainer.add_callback(CheckpointEvalCallback(trainer, task, validation, tokenizer, run_log, settings,
                                                     efficiency, tools_in_prompt, config.method))
    if resume_from is not None:
        _remove_incomplete_checkpoints_after(resume_from)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    final = evaluate_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, task, test, greedy=True,
                            max_new_tokens=settings.max_completion_length, efficiency_options=efficiency,
                            tools_in_prompt=tools_in_prompt, progress=settings.progress, description=f"test ({config.method})")
    step = int(trainer.state.global_step)
    test_summary, sampled_by_tier = final.as_dict(), None
    if settings.test_samples:  # RL optimises the sampled policy; greedy decoding hides part of what it learned
        sampled = evaluate_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, task, test,
                                  num_samples=settings.test_samples, greedy=False, temperature=1.0,
                                  max_new_tokens=settings.max_completion_length, seed=settings.seed,
                                  tools_in_prompt=tools_in_prompt, progress=settings.progress,
                                  description=f"test, {settings.test_samples} samples ({config.method})")
        test_summary |= {f"{SAMPLED_PREFIX}accuracy": sampled.accuracy,
                         f"{SAMPLED_PREFIX}mean_tool_calls": sampled.mean_tool_calls,
                         f"{SAMPLED_PREFIX}per_question": settings.test_samples}
        if "meta_tier" in sampled.rows.columns:
            sampled_by_tier = accuracy_and_calls_by(sampled.rows, "tier", SAMPLED_PREFIX).to_dicts()
    run_log.log_eval([{"method": config.method, "seed": settings.seed, "step": step, "split": "test", "final": True,
                       **test_summary}])
    run_log.log_eval_rows(step, "test", final.rows)
    trainer.save_model(str(paths.final))
    tokenizer.save_pretrained(str(paths.final))
    return RunResult(run_dir=run_dir, method=config.method, test=test_summary, steps=step, trainer=trainer,
                     sampled_by_tier=sampled_by_tier)


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
