"""ParetoPOTrainer: TRL's GRPOTrainer with ParetoPO's objectives, stages and advantages.

This is the only module that imports TRL (a contract of pyproject.toml's import rules):
:func:`build_trainer` makes the trainer of a planned run (``paretopo.training.plan.RunPlan``)
with the ``GRPOConfig`` (:func:`grpo_config`), the reward functions, the ``rollout_func``
adapter (:func:`make_rollout_func`, :func:`to_trl_rollout_output`; the decoding loop itself,
``paretopo.agent.rollout``, knows no TRL), the callbacks and the environment switches;
the trainer hook is measured to work on trl 1.15 and 1.16 (1 and 2 ranks, LoRA):

1. ``_calculate_rewards`` returns TRL's gathered ``[N, K]`` reward matrix unchanged; the two
   columns paretopo needs are *raw measurements*, produced by the reward functions of
   :func:`make_reward_functions`: ``task_correct`` (0/1) and ``tool_calls`` (m). The hook
   gathers the question ids, updates the n* tracker from the correct completions, and turns the
   measurements into objective vectors, one column per configured objective
   (``paretopo.core.objectives.score_completions``).
2. ``_generate_and_score_completions`` calls the parent, computes the configured estimator's
   advantages for all N rows at once (every rank computes the same numbers from the same
   gathered matrix), replaces this process's slice ``out["advantages"]``, rewrites the
   advantages TRL logged for the completions table, and logs ``objectives/*``, ``pareto/*``,
   ``weights/*`` and ``stage``.

TRL's own advantage computation still runs on the raw columns and is discarded (its
``rewards/<name>/mean`` metrics stay meaningful: accuracy and mean tool calls).

Nothing from TRL is copied: Unsloth rewrites TRL's source at import time, so the class is
built over whatever ``trl.GRPOTrainer`` is when :func:`paretopo_trainer_class` is called
(after ``paretopo.agent.models.load_policy`` imported Unsloth on a GPU).

Stage 1 lasts ``stage1_steps`` optimiser steps (default one epoch), then stage 2. The stage-1
outcome vector comes from a validation evaluation every ``stage1_eval_every`` steps (the run's
``paretopo.training.evaluator.Evaluator``) or from the training batch's mean. The n* tracker,
the validation tracker, the stage-1 state and the stage are saved in every checkpoint
(``paretopo_state.json``) and restored on resume.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from paretopo.agent.rollout import Rollout, ToolFunction, mask_segments
from paretopo.agent.rollout_backends import (
    DEFAULT_ROLLOUT_BACKEND,
    get_rollout_backend,
    rollout_backend_for,
)
from paretopo.core.advantages import compute_advantages
from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import (
    OptimalCallTracker,
    count_tool_calls,
    require_known_objectives,
    score_completions,
)
from paretopo.core.scalarize import HVScalarizer
from paretopo.evaluation.runlog import (
    CHECKPOINT_STATE_FILE,
    RunLog,
    atomic_write_json,
    follow_umask,
    objective_column,
)
from paretopo.training.guard import NonFiniteGuard

if TYPE_CHECKING:
    from paretopo.training.evaluator import Evaluator
    from paretopo.training.plan import RunPlan

__all__ = ["STATE_FILE", "CheckpointEvalCallback", "QuietProgressCallback", "RunLogCallback", "build_trainer",
           "grpo_config", "make_reward_functions", "make_rollout_func", "paretopo_trainer_class",
           "prepare_environment", "to_trl_rollout_output"]

logger = logging.getLogger(__name__)
STATE_FILE = CHECKPOINT_STATE_FILE  # the run folder's contract (paretopo.evaluation.runlog)
TASK_COLUMN = "task_correct"
CALLS_COLUMN = "tool_calls"


# ------------------------------------------------------------------------------------------
# reward functions (raw measurements; the trainer turns them into objectives)
# ------------------------------------------------------------------------------------------


def make_reward_functions(task: Any) -> list[Callable[..., list[float]]]:
    """TRL reward functions measuring correctness and tool calls for ``task``.

    They read the extra fields ``paretopo.agent.rollout``'s ``rollout_func`` returns (``final_answer``
    is not trusted for checking: the task's own checker reads the completion text) or, on TRL's
    own ``tools=`` path, the conversational completion with its ``tool_calls``.
    """
    from paretopo.tasks.base import Example

    def _text(completion: Any) -> str:
        if isinstance(completion, str):
            return completion
        return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")

    def task_correct(prompts: list, completions: list, answer: list, id: list | None = None,  # noqa: A002
                     **kwargs: Any) -> list[float]:
        ids = id or [""] * len(completions)
        texts = kwargs.get("completion_text") or [_text(c) for c in completions]
        return [float(task.is_correct(text, Example(str(i), "", gold)))
                for text, gold, i in zip(texts, answer, ids, strict=True)]

    def tool_calls(prompts: list, completions: list, num_tool_calls: list | None = None, **kwargs: Any) -> list[float]:
        if num_tool_calls is not None:
            return [float(m) for m in num_tool_calls]
        return [float(count_tool_calls(c)) for c in completions]

    task_correct.__name__ = TASK_COLUMN
    tool_calls.__name__ = CALLS_COLUMN
    return [task_correct, tool_calls]


# ------------------------------------------------------------------------------------------
# TRL's side of a run: its config, its rollout_func, and the callbacks train_run adds
# ------------------------------------------------------------------------------------------


def grpo_config(plan: RunPlan) -> Any:
    """TRL's ``GRPOConfig`` of a planned run, set up for the device (``bf16=False``, no gradient
    checkpointing on CPU); ``plan.settings.extra`` overrides any field."""
    from trl import GRPOConfig

    from paretopo.evaluation.runlog import run_paths

    settings = plan.settings
    on_gpu = torch.cuda.is_available()
    batch = settings.prompts_per_step * settings.num_generations
    arguments = dict(
        output_dir=str(run_paths(plan.run_dir).checkpoints),
        per_device_train_batch_size=batch,
        num_generations=settings.num_generations,
        gradient_accumulation_steps=1,
        max_completion_length=settings.max_completion_length,
        learning_rate=plan.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        temperature=settings.temperature,
        beta=settings.kl_beta,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=settings.epsilon_high,
        max_steps=settings.max_steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=None,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        fp16=on_gpu and not torch.cuda.is_bf16_supported(),  # e.g. a T4
        use_cpu=not on_gpu,
        gradient_checkpointing=on_gpu,  # costs ~18% for nothing on a tiny CPU model
        report_to="none",
        disable_tqdm=not settings.progress,
        log_completions=False,
    )
    return GRPOConfig(**{**arguments, **settings.extra})  # `extra` may override any field above


def to_trl_rollout_output(rollouts: Sequence[Rollout]) -> dict[str, list]:
    """The dict TRL's `GRPOTrainer(rollout_func=...)` expects, one entry per rollout.

    Keys `prompt_ids`, `completion_ids`, `logprobs` are required by TRL; `env_mask` becomes its
    tool mask (0 = environment token, excluded from the loss); the remaining keys are forwarded
    to reward functions as keyword arguments (`num_tool_calls`, `tool_errors`, `finish_reason`,
    `final_answer`, `transcript`, and `completion_text`: the decoded completion, since TRL's own
    decoding of a multi-turn completion goes through its single-turn response parser). TRL
    reads a None log-probability as NaN, which its importance-sampling and off-policy code skip.
    """
    return {
        "prompt_ids": [r.prompt_ids for r in rollouts],
        "completion_ids": [r.completion_ids for r in rollouts],
        "logprobs": [r.logprobs for r in rollouts],
        "env_mask": [r.loss_mask for r in rollouts],
        "num_tool_calls": [r.num_tool_calls for r in rollouts],
        "tool_errors": [r.tool_errors for r in rollouts],
        "finish_reason": [r.finish_reason for r in rollouts],
        "final_answer": [r.final_answer for r in rollouts],
        "transcript": [r.transcript for r in rollouts],
        "completion_text": [r.text for r in rollouts],
    }


def make_rollout_func(
    tools: Mapping[str, ToolFunction],
    *,
    backend: str = DEFAULT_ROLLOUT_BACKEND,
    max_tool_calls: int = 3,
    max_tool_output_tokens: int = 256,
    answer_extractor: Callable[[str], str | None] | None = None,
    tools_in_prompt: bool = True,
) -> Callable[[list, Any], dict[str, list]]:
    """TRL's ``rollout_func(prompts, trainer)`` decoding with the backend named ``backend``.

    TRL hands each process its prompts already
    repeated ``num_generations`` times, so one completion is sampled per prompt, with the
    trainer's ``temperature``, ``top_p`` and ``max_completion_length``.
    """
    get_rollout_backend(backend)  # an unknown name fails when the trainer is built, not at its first step

    def rollout_func(prompts: list, trainer: Any) -> dict[str, list]:
        args = trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        rollout_func.last_backend = rollout_backend_for(model, backend)  # Unsloth: segmented_generate
        decode = get_rollout_backend(rollout_func.last_backend)
        rollouts = decode(
            model,
            trainer.processing_class,
            prompts,
            tools=tools,
            num_samples=1,
            max_new_tokens=args.max_completion_length,
            max_tool_calls=max_tool_calls,
            max_tool_output_tokens=max_tool_output_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            answer_extractor=answer_extractor,
            tools_in_prompt=tools_in_prompt,
        )
        return to_trl_rollout_output(rollouts)

    rollout_func.rollout_backend = backend  # type: ignore[attr-defined]
    rollout_func.last_backend = None  # type: ignore[attr-defined]  # the one the last call used
    return rollout_func


class QuietProgressCallback(ProgressCallback):
    """TRL's progress bar without the per-step dict dumps (they are in steps.parquet)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control


class CheckpointEvalCallback(TrainerCallback):
    """After each checkpoint save: evaluate on the validation subset (one point of the run's frontier)."""

    def __init__(self, trainer: Any, evaluator: Evaluator):
        self.trainer, self.evaluator = trainer, evaluator

    def on_train_begin(self, args, state, control, **kwargs):
        """On resume: evaluate the checkpoint again if a crash cut its evaluation short."""
        if state.global_step and state.is_world_process_zero:
            evals = self.evaluator.run_log.paths.evals
            done = evals.exists() and pl.read_parquet(evals).filter(
                (pl.col("step") == state.global_step) & (pl.col("split") == "validation")).height > 0
            if not done:
                self.on_save(args, state, control)
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.evaluator.evaluate_and_log(self.trainer.unwrapped_model(), "validation", int(state.global_step))
        return control


def prepare_environment(settings: Any) -> None:
    """Process-wide switches of a run, before its model is loaded: CPU threads, progress bars, the
    sandbox level model-written code must run under (before any sandbox is made)."""
    from paretopo.tools.sandbox import require_isolation_for_process

    require_isolation_for_process(settings.require_isolation)
    if not torch.cuda.is_available():
        torch.set_num_threads(settings.threads)
    if not settings.progress:  # also silences the weight loading / shard writing bars
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def build_trainer(plan: RunPlan, model: Any, tokenizer: Any, run_log: RunLog) -> Any:
    """The ``ParetoPOTrainer`` of a planned run with its callbacks (checkpoint evaluation, progress).

    Its ``evaluator`` (``paretopo.training.evaluator.Evaluator``) is the run's one evaluation:
    checkpoints, stage 1's validation outcome and, called by ``train_run``, the final test.
    """
    from paretopo.agent.models import policy_backend
    from paretopo.training.evaluator import Evaluator

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is the documented path here
    settings, task = plan.settings, plan.task
    tools = {tool.__name__: tool for tool in task.tools()}
    trainer = paretopo_trainer_class()(
        model=model,
        processing_class=tokenizer,
        reward_funcs=make_reward_functions(task),
        args=grpo_config(plan),
        train_dataset=_dataset(task, plan.train_examples),
        rollout_func=make_rollout_func(tools, backend=settings.rollout_backend, max_tool_calls=task.max_tool_calls,
                                       answer_extractor=task.extract_answer, tools_in_prompt=plan.tools_in_prompt),
        method=plan.config,
        run_log=run_log,
        evaluator=Evaluator(plan, tokenizer, run_log),
        length_buckets=0 if policy_backend(model) == "unsloth" else settings.length_buckets,
    )
    if not settings.print_logs:  # keep the progress bar, drop the per-step dict dumps (they are in steps.parquet)
        trainer.remove_callback(PrinterCallback)  # what transformers prints with when tqdm is off
        trainer.remove_callback(ProgressCallback)
        if settings.progress:
            trainer.add_callback(QuietProgressCallback)
    if settings.checkpoint_eval:
        trainer.add_callback(CheckpointEvalCallback(trainer, trainer.evaluator))
    return trainer


def _dataset(task: Any, examples: Sequence[Any]) -> Any:
    from datasets import Dataset

    if not examples:
        raise ValueError(f"task {task.name!r} produced no training examples")
    return Dataset.from_list([
        {"prompt": task.messages(e), "id": e.id, "answer": e.answer} for e in examples
    ])


# ------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------


class ParetoPOMixin:
    """The ParetoPO hook; combined with ``trl.GRPOTrainer`` by :func:`paretopo_trainer_class`."""

    def __init__(
        self,
        *args: Any,
        method: ParetoPOConfig | None = None,
        question_id_key: str = "id",
        run_log: RunLog | None = None,
        evaluator: Evaluator | None = None,
        steps_per_epoch: int | None = None,
        log_samples_per_step: int = 8,
        length_buckets: int = 0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.length_buckets = length_buckets
        self.method = method or ParetoPOConfig()
        require_known_objectives(self.method.objectives)
        if "brevity" in self.method.objectives and self.method.brevity_length is None:
            # brevity reaches 0 at the longest completion TRL generates
            self.method = replace(self.method, brevity_length=int(self.args.max_completion_length))
        names = list(self.reward_func_names)
        if TASK_COLUMN not in names or CALLS_COLUMN not in names:
            raise ValueError(
                f"ParetoPOTrainer needs the reward functions of paretopo.training.trainer.make_reward_functions "
                f"(named {TASK_COLUMN!r} and {CALLS_COLUMN!r}); got {names}"
            )
        self._task_column, self._calls_column = names.index(TASK_COLUMN), names.index(CALLS_COLUMN)
        self.question_id_key = question_id_key
        self.run_log = run_log
        self.evaluator = evaluator  # stage 1's validation outcome (stage1_outcome="validation")
        self.steps_per_epoch = steps_per_epoch or self._infer_steps_per_epoch()
        self.log_samples_per_step = log_samples_per_step
        self.nstar = OptimalCallTracker()
        self.validation_nstar = OptimalCallTracker()
        self.scalarizer = HVScalarizer(
            len(self.method.objectives), gamma=self.method.gamma, dynamic=self.method.dynamic_weighting,
            reference=self.method.hv_reference, initial_meta_reward=self.method.initial_meta_reward,
        )
        self._batch: dict[str, Any] | None = None
        self._outcome_ema: np.ndarray | None = None  # stage1_outcome="train_batch_ema"
        self.last_advantages: torch.Tensor | None = None  # all N rows of the last batch, as used
        if run_log is not None:
            self.add_callback(RunLogCallback(run_log))
        self.add_callback(NonFiniteGuard())  # after the run log: the NaN step is logged, then the run stops
        if evaluator is not None and self.method.uses_meta_reward and self.method.stage1_outcome == "validation":
            self.add_callback(_Stage1ValidationCallback(self))

    # --- bookkeeping -------------------------------------------------------------------------
    def unwrapped_model(self) -> Any:
        """The policy without accelerate's wrapping (what evaluation decodes with)."""
        return self.accelerator.unwrap_model(self.model)

    def validation_outcome(self) -> tuple[float, ...]:
        """Stage 1's outcome vector: the mean objectives of a validation evaluation, on its own n*."""
        return self.evaluator.evaluate(self.unwrapped_model(), "validation", tracker=self.validation_nstar).objectives

    def _infer_steps_per_epoch(self) -> int | None:
        dataset = getattr(self, "train_dataset", None)
        if dataset is None or not hasattr(dataset, "__len__"):
            return None
        prompts_per_step = (self.args.per_device_train_batch_size * self.accelerator.num_processes
                            * self.args.gradient_accumulation_steps) // self.num_generations
        return max(1, math.ceil(len(dataset) / max(1, prompts_per_step)))

    def current_stage(self) -> int:
        return self.method.stage_at(self.state.global_step, self.steps_per_epoch)

    # --- the loss pass in length-sorted chunks ------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args: Any,
                                           **kwargs: Any):
        """TRL's log-probs of the completion tokens, computed over rows sorted by completion length.

        TRL pads every completion of the batch to the longest, so a 5-token direct answer pays for
        a 74-token two-call completion in the forward and the backward. With ``length_buckets =
        K > 0`` the rows are sorted by length, cut into K chunks (each at most ``batch_size``
        rows), and each chunk is trimmed to its own longest completion; the results are scattered
        back, zero past each row's end (masked by TRL). Same values; on the tiny policy's batches
        a step is 0.08-0.14 s (10-17 %) faster (docs/benchmarks.md). Text-only batches; anything
        else (images, MoE auxiliary loss) takes TRL's path.
        """
        # anything but TRL's text-only call (positional extras, images, the MoE auxiliary loss, or a
        # base class with another signature, e.g. Unsloth's) goes to the base class untouched
        known = {"batch_size", "compute_entropy", "compute_aux_loss"}
        extras = {k: v for k, v in kwargs.items() if k not in known and v is not None}
        if self.length_buckets <= 0 or args or extras or kwargs.get("compute_aux_loss"):
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              *args, **kwargs)
        batch_size, compute_entropy = kwargs.get("batch_size"), bool(kwargs.get("compute_entropy"))
        rows, width = input_ids.shape[0], input_ids.shape[1]
        completion = attention_mask[:, -logits_to_keep:]
        columns = torch.arange(1, logits_to_keep + 1, device=completion.device)
        lengths = (completion * columns).amax(1).clamp(min=1)  # one past each row's last real token
        order = torch.argsort(lengths, stable=True)
        chunk_rows = min(batch_size or rows, math.ceil(rows / self.length_buckets))
        logps = entropies = None
        for chunk in order.split(chunk_rows):
            keep = int(lengths[chunk].max())
            cut = width - logits_to_keep + keep
            chunk_logps, chunk_entropies, _ = super()._get_per_token_logps_and_entropies(
                model, input_ids[chunk, :cut], attention_mask[chunk, :cut], keep, compute_entropy=compute_entropy)
            if logps is None:
                logps = chunk_logps.new_zeros(rows, logits_to_keep)
                entropies = chunk_entropies.new_zeros(rows, logits_to_keep) if compute_entropy else None
            where = (chunk[:, None], columns[None, :keep] - 1)  # the chunk's rows, its first `keep` columns
            logps = logps.index_put(where, chunk_logps)
            if compute_entropy:
                entropies = entropies.index_put(where, chunk_entropies)
        return logps, entropies, None

    # --- hook 1: measurements -> objectives ----------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: D401
        from accelerate.utils import gather_object

        gathered = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        started = time.perf_counter()
        question_ids = [str(q) for q in gather_object([example[self.question_id_key] for example in inputs])]
        measured = gathered.detach().double().cpu().numpy()
        correct = np.nan_to_num(measured[:, self._task_column], nan=0.0)
        calls = np.nan_to_num(measured[:, self._calls_column], nan=0.0).round().astype(np.int64)
        lengths = None
        if "brevity" in self.method.objectives:  # completion lengths in tokens, in the order of `gathered`
            lengths = np.asarray(gather_object([len(ids) for ids in completion_ids_list]), dtype=np.float64)
        training = self.model.training
        # n* learns from training batches only, before their rewards are computed
        objectives = score_completions(question_ids, correct, calls, self.nstar, self.method, lengths=lengths,
                                       update=training)
        nstar = self.nstar.lookup(question_ids)
        self._batch = {"ids": question_ids, "correct": correct, "calls": calls, "nstar": nstar,
                       "objectives": objectives, "training": training,
                       "hook_seconds": time.perf_counter() - started}
        return gathered

    # --- hook 2: our advantages replace TRL's ---------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        started = time.perf_counter()
        batch, self._batch = self._batch, None
        if batch is None or not batch["training"]:
            return output
        stage = self.current_stage()
        estimator = self.method.estimator_for_stage(stage)
        meta = self.scalarizer.meta_reward
        objectives = batch["objectives"]
        result = compute_advantages(estimator, objectives, self.num_generations,
                                    **self.method.estimator_options(stage, meta_reward=meta))
        all_advantages = torch.as_tensor(result.advantages, dtype=output["advantages"].dtype)
        n_local = output["advantages"].shape[0]
        start = self.accelerator.process_index * n_local
        output["advantages"] = all_advantages[start : start + n_local].to(output["advantages"].device)
        self.last_advantages = all_advantages

        logged = self._logs["advantages"]
        for _ in range(min(len(objectives), len(logged))):
            logged.pop()
        logged.extend(all_advantages.tolist())

        if self.method.uses_meta_reward and stage == 1 and self.method.stage1_outcome != "validation":
            update = self.scalarizer.update(self._train_batch_outcome(objectives), step=self.state.global_step + 1)
            self._record_stage1(update)
        self._log_batch_metrics(stage, estimator, meta, batch, result)
        if self.run_log is not None and self.accelerator.is_main_process:
            self._log_batch_rows(stage, batch, result, output, start)
        # our own work this step (objectives, advantages, metrics, run-log rows), not TRL's
        self._metrics["train"]["timing/paretopo_hook_s"].append(batch["hook_seconds"] + time.perf_counter() - started)
        return output

    def _train_batch_outcome(self, objectives: np.ndarray) -> np.ndarray:
        """Stage 1's outcome vector from the training batch: its mean, or an EMA of the means."""
        mean = objectives.mean(axis=0)
        if self.method.stage1_outcome == "train_batch":
            return mean
        decay = self.method.stage1_outcome_decay
        self._outcome_ema = mean if self._outcome_ema is None else decay * self._outcome_ema + (1 - decay) * mean
        return self._outcome_ema

    def _log_batch_metrics(self, stage: int, estimator: str, meta: float, batch: dict, result: Any) -> None:
        metrics = self._metrics["train"]
        objectives = batch["objectives"]
        metrics["stage"].append(float(stage))
        metrics["weights/meta_reward"].append(float(meta if self.method.dynamic_weighting else 1.0))
        for name, weight in zip(self.method.objectives, self.method.weights, strict=True):
            metrics[f"weights/{name}"].append(float(weight))
        for k, name in enumerate(self.method.objectives):
            metrics[f"objectives/{name}"].append(float(objectives[:, k].mean()))
        metrics["objectives/mean_tool_calls"].append(float(batch["calls"].mean()))
        metrics["objectives/frac_nstar_known"].append(float(np.isfinite(batch["nstar"]).mean()))
        for key, value in result.metrics.items():
            metrics[key].append(value)
        archive = self.scalarizer.archive
        if archive is not None:
            metrics["pareto/hypervolume"].append(float(archive.hypervolume))
            metrics["pareto/archive_size"].append(float(len(archive)))

    def _record_stage1(self, update: Any) -> None:
        metrics = self._metrics["train"]
        metrics["pareto/hv_gain"].append(float(update.hv_gain))
        metrics["pareto/ema_gain"].append(float(update.ema_gain))
        if self.run_log is not None and self.accelerator.is_main_process and self.scalarizer.archive is not None:
            archive = self.scalarizer.archive
            self.run_log.write_archive(archive.points, archive.inserted_at, self.method.objectives)

    def _log_batch_rows(self, stage: int, batch: dict, result: Any, output: dict, start: int) -> None:
        step = self.state.global_step + 1
        objectives, group_size = batch["objectives"], self.num_generations
        row = np.arange(len(objectives))
        rows = pl.DataFrame({  # built from columns: no Python loop over completions on every step
            "stage": np.full(len(row), stage, dtype=np.int64),
            "group": row // group_size,
            "completion": row % group_size,
            "prompt_id": batch["ids"],
            **{objective_column(name): objectives[:, k].astype(np.float64) for k, name in enumerate(self.method.objectives)},
            "rank": np.asarray(result.ranks, dtype=np.int64),
            "advantage": self.last_advantages.double().numpy(),
            "tool_calls": batch["calls"].astype(np.int64),
            "correct": batch["correct"] >= 1.0,
            "nstar": batch["nstar"].astype(np.float64),
        })
        self.run_log.log_groups(step, rows)
        self.run_log.log_samples(step, self._sample_rows(output, start, limit=self.log_samples_per_step))

    def _sample_rows(self, output: dict, start: int, limit: int) -> list[dict[str, Any]]:
        """Completion texts split into model and tool-output segments (the loss-masked spans)."""
        completion_ids = output["completion_ids"]
        completion_mask = output["completion_mask"]
        tool_mask = output.get("tool_mask")
        rows = []
        for i in range(min(limit, completion_ids.shape[0])):
            length = int(completion_mask[i].sum())
            ids = completion_ids[i, :length].tolist()
            mask = tool_mask[i, :length].tolist() if tool_mask is not None else [1] * length
            segments = mask_segments(self.processing_class, ids, mask)
            rows.append({
                "row": start + i,
                "group": (start + i) // self.num_generations,
                "text": "".join(s["text"] for s in segments),
                "segments": json.dumps(segments),
            })
        return rows

    # --- state save / restore -----------------------------------------------------------------
    def paretopo_state_dict(self) -> dict[str, Any]:
        return {
            "global_step": int(self.state.global_step),
            "stage": self.current_stage(),
            "nstar": self.nstar.state_dict(),
            "validation_nstar": self.validation_nstar.state_dict(),
            "scalarizer": self.scalarizer.state_dict(),
            "method": self.method.to_dict(),
            "steps_per_epoch": self.steps_per_epoch,
            "outcome_ema": None if self._outcome_ema is None else self._outcome_ema.tolist(),
        }

    def load_paretopo_state_dict(self, state: dict[str, Any]) -> None:
        self.nstar.load_state_dict(state["nstar"])
        self.validation_nstar.load_state_dict(state["validation_nstar"])
        self.scalarizer.load_state_dict(state["scalarizer"])
        self.steps_per_epoch = state.get("steps_per_epoch", self.steps_per_epoch)
        ema = state.get("outcome_ema")
        self._outcome_ema = None if ema is None else np.asarray(ema, dtype=np.float64)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            atomic_write_json(folder / STATE_FILE, self.paretopo_state_dict())
            follow_umask(folder)  # safetensors writes weights 0600

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        if resume_from_checkpoint:
            if resume_from_checkpoint is True:
                resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
                if resume_from_checkpoint is None:
                    raise ValueError(f"no checkpoint to resume from in {self.args.output_dir}")
            state_path = Path(resume_from_checkpoint) / STATE_FILE
            if not state_path.exists():
                raise FileNotFoundError(
                    f"{state_path} is missing: this checkpoint was not written by ParetoPOTrainer (or the run died "
                    "while saving it); resume from the previous checkpoint folder instead"
                )
            state = json.loads(state_path.read_text())
            self.load_paretopo_state_dict(state)
            if self.run_log is not None and self.accelerator.is_main_process:
                self.run_log.truncate_after(int(state["global_step"]))
            logger.info("restored ParetoPO state from %s (step %s)", resume_from_checkpoint, state["global_step"])
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


class RunLogCallback(TrainerCallback):
    """Writes TRL's per-step logs (losses, rewards, our metrics) to steps.parquet."""

    def __init__(self, run_log: RunLog):
        self.run_log = run_log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero and "loss" in logs:
            self.run_log.log_step({"step": int(state.global_step), **{k: _scalar(v) for k, v in logs.items()}})


def _scalar(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class _Stage1ValidationCallback(TrainerCallback):
    """Every ``stage1_eval_every`` stage-1 steps: evaluate, update the HV archive and meta reward."""

    def __init__(self, trainer: ParetoPOMixin):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        method = trainer.method
        step = state.global_step
        # the step that just ended was stage 1 and the next one still is: refresh its meta reward
        if method.stage_at(step - 1, trainer.steps_per_epoch) != 1 or step % method.stage1_eval_every:
            return control
        from accelerate.utils import broadcast_object_list

        outcome = [trainer.validation_outcome() if trainer.accelerator.is_main_process else None]
        if trainer.accelerator.num_processes > 1:
            broadcast_object_list(outcome)
        update = trainer.scalarizer.update(outcome[0], step=step)
        trainer._record_stage1(update)
        if trainer.run_log is not None and trainer.accelerator.is_main_process:
            trainer.run_log.log_step({"step": int(step),
                                      **{f"stage1/outcome_{name}": float(value)
                                         for name, value in zip(method.objectives, outcome[0], strict=True)},
                                      "stage1/hv_gain": update.hv_gain, "stage1/meta_reward": update.meta_reward,
                                      "stage1/hypervolume": update.hypervolume})
        return control


_CLASS_CACHE: dict[int, type] = {}


def paretopo_trainer_class() -> type:
    """``ParetoPOTrainer`` built over the current ``trl.GRPOTrainer`` (Unsloth's if it patched TRL)."""
    import trl

    base = trl.GRPOTrainer
    if id(base) not in _CLASS_CACHE:
        _CLASS_CACHE[id(base)] = type("ParetoPOTrainer", (ParetoPOMixin, base), {"__module__": __name__})
    return _CLASS_CACHE[id(base)]


def __getattr__(name: str) -> Any:
    if name == "ParetoPOTrainer":
        return paretopo_trainer_class()
    raise AttributeError(name)
