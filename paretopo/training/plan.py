"""A training run, resolved once before any model is loaded: :class:`RunPlan` and :func:`plan_run`.

``plan_run`` turns what a user gives (``RunSettings``, a method preset or ``ParetoPOConfig``,
``ParetoPOConfig`` overrides) into every value the run uses: the method config, built once with
the task's tool budget and brevity's length in it; the task; the model path; LoRA or not; the
learning rate; whether the tools block is rendered; the examples of the three splits; the
scoring options; the run folder and the checkpoint to resume from. Training
(``paretopo.training.train``), the TRL side (``paretopo.training.trainer``) and the command line
read the plan and decide nothing again.

An override that contradicts the task is refused, never dropped: the tool budget belongs to the
task (``RunSettings.max_tool_calls`` sets it), so a ``max_tool_calls`` override of the method
config that differs from it raises :class:`PlanConflict`.

This module imports no torch, transformers, TRL, PEFT or datasets, so the command line can
build its parser and check a run without them.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from paretopo.agent import chosen_learning_rates, tiny_policy_learning_rate
from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import require_known_objectives, scoring_options
from paretopo.core.settings import (
    MAX_EXAMPLES,
    MAX_GENERATIONS,
    MAX_KL_BETA,
    MAX_LR,
    MAX_PROMPTS,
    MAX_SEED,
    MAX_STEPS,
    MAX_THREADS,
    MAX_TOKENS,
    MAX_TOOL_CALLS,
    check_settings,
    setting,
)
from paretopo.tools.sandbox import require_isolation_setting

__all__ = ["LORA_LR", "TINY_POLICY_LR", "PlanConflict", "RunPlan", "RunSettings", "plan_run"]

TINY_POLICY_LR = tiny_policy_learning_rate("arithmetic")
"""Learning rate for full fine-tuning of the arithmetic tiny policy, and of a model given by path or hub
name (each tiny policy's own: ``paretopo.agent.tiny_policy_learning_rate``)."""
LORA_LR = 2e-3
"""Learning rate for LoRA adapters (rank 16, alpha 32)."""


class PlanConflict(ValueError):
    """Two given values of a run contradict each other; the message says which to change."""


@dataclass
class RunSettings:
    """Everything about a run that is not the method (see ``ParetoPOConfig`` for that).

    ``paretopo train`` offers every field that has a flag, with this help text and default.
    """

    run_dir: str = setting("runs/paretopo", "folder of the run log, checkpoints and final policy",
                           path=True)
    task: Any = setting("arithmetic", "task name (arithmetic, math, hotpotqa, nq_open), or a Task instance from Python",
                         kind=str)
    model: str | None = setting(None, "hub id or local path; default: the shipped warm-started tiny policy", kind=str)
    seed: int = setting(0, "seed of sampling, data order and initialisation", minimum=0, maximum=MAX_SEED)
    max_steps: int = setting(40, "optimiser steps", flag="--steps", minimum=1, maximum=MAX_STEPS)
    prompts_per_step: int = setting(8, "prompts per optimiser step", flag="--prompts", minimum=1,
                                    maximum=MAX_PROMPTS)
    num_generations: int = setting(8, "completions per prompt (the group size G)", flag="--generations", minimum=2,
                                   maximum=MAX_GENERATIONS)
    learning_rate: float | None = setting(
        None, f"learning rate; default: the tiny policy's, chosen on validation per task ({chosen_learning_rates()}), "
              "3e-4 for full fine-tuning of another model, 2e-3 for LoRA",
        flag="--lr", kind=float, above=0, maximum=MAX_LR)
    max_completion_length: int = setting(160, "new tokens per completion, tool responses included", minimum=1,
                                         maximum=MAX_TOKENS)
    temperature: float = setting(1.0, "sampling temperature of the rollouts", above=0, maximum=100)
    max_tool_calls: int | None = setting(None, "tool budget per completion (the method's C and OTC's c); default: "
                                                "the task's", kind=int, minimum=0, maximum=MAX_TOOL_CALLS)
    lora: bool | None = setting(None, "LoRA adapters (--lora) or all weights (--no-lora); default: all weights "
                                       "for the shipped tiny policy, LoRA for any --model", kind=bool)
    lora_rank: int = setting(16, "LoRA rank", minimum=1, maximum=4096)
    lora_alpha: int = setting(32, "LoRA alpha", minimum=1, maximum=65536)
    prefer_unsloth: bool = setting(True, "use Unsloth when CUDA and unsloth are there; --no-prefer-unsloth forces "
                                          "transformers + PEFT")
    rollout_backend: str = setting("tool_loop", "rollout backend, a name in paretopo.agent.rollout_backends")
    load_in_4bit: bool = setting(False, "4-bit base weights (QLoRA); needs the Unsloth backend (CUDA)")
    max_seq_length: int = setting(2048, "longest prompt + completion Unsloth prepares its kernels for", minimum=1,
                                  maximum=MAX_TOKENS)
    save_steps: int = setting(10, "steps between checkpoints (each is evaluated on validation)", minimum=1,
                                maximum=MAX_STEPS)
    validation_examples: int = setting(48, "validation questions each checkpoint is evaluated on", minimum=1,
                                          maximum=MAX_EXAMPLES)
    test_examples: int | None = setting(None, "evaluate the final policy on the first N test questions; default: all",
                                         kind=int, minimum=1, maximum=MAX_EXAMPLES)
    test_samples: int = setting(0, "also sample N completions per test question at temperature 1: the sampled "
                                   "policy's accuracy and calls beside greedy's (sampled_* in the test summary; "
                                   "0: greedy only)", minimum=0, maximum=MAX_GENERATIONS)
    train_examples: int | None = setting(None, "train on the first N training questions; default: all", kind=int,
                                          minimum=1, maximum=MAX_EXAMPLES)
    train_split: str | None = setting(None, "training split; default: the task's (Task.default_splits)", kind=str)
    validation_split: str | None = setting(None, "validation split; default: the task's", kind=str)
    test_split: str | None = setting(None, "test split; default: the task's", kind=str)
    checkpoint_eval: bool = setting(True, "evaluate every checkpoint on the validation questions")
    tools_in_prompt: bool | None = setting(None, "render the tools block in the prompt; default: off for the tiny "
                                                  "policy (taught by its warm start), on otherwise", kind=bool)
    epsilon_high: float = setting(0.28, "upper clip range of the policy ratio (DAPO's clip-higher)", minimum=0,
                                  maximum=10)
    kl_beta: float = setting(0.0, "KL coefficient to the reference policy (0: no reference model)", minimum=0,
                             maximum=MAX_KL_BETA)
    threads: int = setting(1, "torch threads on CPU", minimum=1, maximum=MAX_THREADS)
    progress: bool = setting(True, "progress bars")
    print_logs: bool = setting(False, "TRL's per-step metric dicts on stdout (they are in steps.parquet anyway)")
    length_buckets: int = setting(4, "score the loss batch in K chunks of rows sorted by completion length, each "
                                     "padded only to its own longest (0: TRL's one padded batch; not used with "
                                     "Unsloth, which computes log-probs its own way)", minimum=0, maximum=1024)
    require_isolation: str | None = require_isolation_setting()
    extra: dict[str, Any] = setting(help="more GRPOConfig fields", flag="", default_factory=dict)

    def __post_init__(self) -> None:
        check_settings(self)  # every number finite and in range, the run folder a usable name


@dataclass(frozen=True)
class RunPlan:
    """Every value of one training run, resolved by :func:`plan_run`; nothing here loads a model.

    ``settings`` are the given settings with ``lora``, ``learning_rate``, ``tools_in_prompt`` and
    ``max_tool_calls`` filled in, so that ``config.json`` records what the run used.
    """

    settings: RunSettings
    config: ParetoPOConfig
    task: Any  # a paretopo.tasks.Task
    model_path: str
    train_examples: tuple[Any, ...] = field(repr=False)
    validation_examples: tuple[Any, ...] = field(repr=False)
    test_examples: tuple[Any, ...] = field(repr=False)
    run_dir: Path = Path("runs/paretopo")
    resume_from: Path | None = None  # the last complete checkpoint, when resuming
    resume: bool = False

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def lora(self) -> bool:
        return bool(self.settings.lora)

    @property
    def learning_rate(self) -> float:
        return float(self.settings.learning_rate)  # type: ignore[arg-type]

    @property
    def tools_in_prompt(self) -> bool:
        return bool(self.settings.tools_in_prompt)

    @property
    def scoring(self) -> dict[str, Any]:
        """The run's scoring options (``paretopo.core.objectives.scoring_options`` of its config)."""
        return scoring_options(self.config)

    def examples(self, split: str) -> tuple[Any, ...]:
        """The examples of ``"train"``, ``"validation"`` or ``"test"``."""
        return {"train": self.train_examples, "validation": self.validation_examples,
                "test": self.test_examples}[split]

    def record(self) -> dict[str, Any]:
        """What the run folder's ``config.json`` holds (``paretopo.evaluation.runlog``)."""
        from paretopo import library_versions

        tools = {tool.__name__: tool for tool in self.task.tools()}
        settings = {item.name: getattr(self.settings, item.name) for item in fields(self.settings)}
        return {
            "method": self.config.to_dict(), "settings": {**settings, "task": self.task.name},
            "model": self.model_path, "task": self.task.name, "versions": library_versions(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            # which sandbox level model-written code ran under (paretopo.tools.sandbox)
            "tool_isolation": {name: tool.isolation for name, tool in tools.items() if hasattr(tool, "isolation")},
        }


def plan_run(
    settings: RunSettings | None = None,
    config: str | ParetoPOConfig = "paretopo",
    *,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> RunPlan:
    """Resolve a run: its method config (built once), task, model, splits and run folder.

    Args:
        settings: run settings (folder, task, model, steps, batch, ...); default ``RunSettings()``.
        config: a method preset name (``paretopo``, ``torl_grpo``, ...) or a full ``ParetoPOConfig``.
        overrides: ``ParetoPOConfig`` fields overriding the preset (or the given config).
        resume: continue the run in ``settings.run_dir`` from its last complete checkpoint.

    Raises:
        PlanConflict: an override contradicts the task (e.g. a ``max_tool_calls`` other than the
            task's tool budget; set the budget with ``RunSettings.max_tool_calls``).
        ValueError: an invalid config field or objective name, an unknown task or split.
        FileExistsError: the run folder holds a run and ``resume`` is False.
    """
    from paretopo.evaluation.runlog import last_complete_checkpoint, run_paths

    settings = settings or RunSettings()
    overrides = dict(overrides or {})
    if "objectives" in overrides:
        require_known_objectives(overrides["objectives"])
    task = _task(settings)
    _refuse_a_second_tool_budget(config, overrides, task)
    # the task's tool budget is the method's C (and OTC's c); brevity (if it is an objective)
    # reaches 0 at the longest completion the run generates
    given = {**(config.to_dict() if isinstance(config, ParetoPOConfig) else {}), **overrides}
    resolved = {**overrides, "max_tool_calls": task.max_tool_calls,
                "brevity_length": given.get("brevity_length") or settings.max_completion_length}
    method_config = (replace(config, **resolved) if isinstance(config, ParetoPOConfig)
                     else ParetoPOConfig.from_preset(config, **resolved))
    require_known_objectives(method_config.objectives)

    run_dir = Path(settings.run_dir)
    if run_dir.exists() and run_paths(run_dir).checkpoint_folders(complete=True) and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another run folder")
    resume_from = last_complete_checkpoint(run_dir, method_config.method) if resume else None

    is_tiny = settings.model is None
    # LoRA saves memory on real models; on the 202,624-parameter tiny policy its adapters are as large as
    # the weights and PEFT's per-layer Python dispatch was ~40% of the forward time.
    lora = (not is_tiny) if settings.lora is None else settings.lora
    settings = replace(
        settings, lora=lora, max_tool_calls=task.max_tool_calls,
        learning_rate=settings.learning_rate or (
            LORA_LR if lora else tiny_policy_learning_rate(task.name) if is_tiny else TINY_POLICY_LR),
        tools_in_prompt=(not is_tiny) if settings.tools_in_prompt is None else settings.tools_in_prompt)
    default_train, default_validation, default_test = task.default_splits
    train_examples = tuple(task.load(settings.train_split or default_train)[: settings.train_examples])
    if len(train_examples) < settings.prompts_per_step:  # TRL would train 0 steps and exit 0
        raise ValueError(f"--prompts {settings.prompts_per_step} is more than the {len(train_examples)} training "
                         f"questions of task {task.name!r}; pass at most {len(train_examples)}")
    return RunPlan(
        settings=settings, config=method_config, task=task,
        model_path=settings.model or str(_tiny_policy_path(task.name)),
        train_examples=train_examples,
        validation_examples=tuple(
            task.load(settings.validation_split or default_validation)[: settings.validation_examples]),
        test_examples=tuple(task.load(settings.test_split or default_test)[: settings.test_examples]),
        run_dir=run_dir, resume_from=resume_from, resume=resume,
    )


def _task(settings: RunSettings) -> Any:
    """The task of a run, with the settings' tool budget when they give one."""
    from paretopo.tasks import get_task

    if not isinstance(settings.task, str):
        budget = settings.max_tool_calls
        if budget is not None and budget != settings.task.max_tool_calls:
            raise PlanConflict(f"max_tool_calls={budget} conflicts with the tool budget "
                               f"{settings.task.max_tool_calls} of the given {settings.task.name!r} task "
                               f"instance; build the task with max_tool_calls={budget} or leave the setting None")
        return settings.task
    options: dict[str, Any] = {} if settings.max_tool_calls is None else {"max_tool_calls": settings.max_tool_calls}
    if settings.task in ("arithmetic", "lookup") and settings.model is not None:
        options["instructions"] = True  # a chat model meets the task cold; the tiny policy learned its format
    return get_task(settings.task, **options)


def _refuse_a_second_tool_budget(config: str | ParetoPOConfig, overrides: Mapping[str, Any], task: Any) -> None:
    """The tool budget has one owner, the task: a method-config budget must agree with it.

    A ``ParetoPOConfig`` still at the field's default (3) counts as not set, so a default config
    runs any task; any other value must equal the task's budget.
    """
    default = ParetoPOConfig.__dataclass_fields__["max_tool_calls"].default
    given = overrides.get("max_tool_calls")
    if given is None and isinstance(config, ParetoPOConfig) and config.max_tool_calls != default:
        given = config.max_tool_calls
    if given is not None and given != task.max_tool_calls:
        raise PlanConflict(f"max_tool_calls={given} (method config) conflicts with the {task.name} task's tool "
                           f"budget {task.max_tool_calls}; set the budget with --max-tool-calls {given} "
                           f"(RunSettings.max_tool_calls), which the method then uses")


def _tiny_policy_path(task_name: str) -> Path:
    from paretopo.agent import tiny_policy_path

    return tiny_policy_path(task_name)
