"""Evaluate a policy on a task: accuracy, tool use, the objective vector, and frontiers.

``evaluate_policy`` runs the same tool-using rollouts as training (``paretopo.agent.rollout``) over a
list of examples in batches with a progress bar and returns per-question rows plus summary
numbers:

* ``accuracy``: share of completions whose final answer is correct;
* ``mean_tool_calls``: executed tool calls per completion;
* ``tool_productivity``: correct answers per tool call (OTC's measure; ``inf`` with no calls);
* ``objectives``: the mean objective vector, one entry per objective of the scoring options
  (a run's config, or the ``paretopo`` method's when none is given:
  ``paretopo.evaluation.runlog.scoring_for``), with tool efficiency measured against an n*
  tracker of the evaluation questions (updated from this evaluation's correct answers first,
  exactly as in training). That vector is stage 1's outcome and a point of the checkpoint
  frontier; tables carry it as ``obj_<name>`` columns.

``frontier`` / ``frontier_hypervolume`` turn several evaluated checkpoints into a Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from paretopo.agent.rollout_backends import get_rollout_backend, rollout_backend_for
from paretopo.core.hypervolume import hypervolume
from paretopo.core.objectives import (
    DEFAULT_OBJECTIVES,
    OptimalCallTracker,
    describe_scoring,
    score_completions,
    scored_objectives,
)
from paretopo.core.pareto import nondominated_mask
from paretopo.evaluation.eval_settings import EvalSettings
from paretopo.evaluation.runlog import (
    objective_column,
    objective_columns,
    run_folder_of,
    scoring_for,
)
from paretopo.tasks.base import Example, Task
from paretopo.tools.sandbox import require_isolation_for_process, tool_isolation

__all__ = ["DEFAULT_SCORING", "GREEDY_PREFIX", "SAMPLED_PREFIX", "EvalResult", "EvalSettings",
           "accuracy_and_calls_by", "behaviour_table", "checkpoint_points", "checkpoint_scoring", "compare_runs",
           "evaluate_policy", "evaluate_saved_policy", "frontier", "frontier_hypervolume", "objective_columns",
           "run_summaries", "summarize"]

DEFAULT_SCORING = "paretopo"
"""The scoring (``scoring_for``) of an evaluation that names none: the ParetoPO method's, as in training."""


@dataclass
class EvalResult:
    """Summary numbers and one row per completion (``rows``: a polars frame)."""

    accuracy: float
    mean_tool_calls: float
    tool_productivity: float
    objectives: tuple[float, ...]
    n_completions: int
    rows: pl.DataFrame = field(repr=False)
    objective_names: tuple[str, ...] = DEFAULT_OBJECTIVES
    tool_isolation: dict[str, dict[str, int]] = field(default_factory=dict)
    """Sandboxed tools' calls per isolation level, e.g. {"python": {"bwrap": 40}}."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "mean_tool_calls": self.mean_tool_calls,
            "tool_productivity": self.tool_productivity,
            **{objective_column(name): value for name, value in zip(self.objective_names, self.objectives, strict=True)},
            "n_completions": self.n_completions,
        }


def summarize(
    question_ids: Sequence[str],
    correct: Sequence[float],
    calls: Sequence[int],
    *,
    tracker: OptimalCallTracker | None = None,
    efficiency_options: Any = None,
    lengths: Sequence[int] | None = None,
) -> tuple[float, float, float, tuple[float, ...], np.ndarray]:
    """Accuracy, mean calls, productivity, mean objective vector and the per-row objectives.

    ``efficiency_options`` is a ``ParetoPOConfig`` or a mapping of scoring options
    (``paretopo.core.objectives.scoring_options``; None: :data:`DEFAULT_SCORING`'s); ``lengths``
    are completion lengths in tokens (needed for ``brevity``).
    """
    if len(question_ids) == 0:
        raise ValueError("nothing to summarise: the evaluation produced no completions")
    tracker = tracker if tracker is not None else OptimalCallTracker()
    correct_array = np.asarray(correct, dtype=np.float64)
    calls_array = np.asarray(calls, dtype=np.int64)
    objectives = score_completions(list(question_ids), correct_array, calls_array, tracker,
                                   _scoring(efficiency_options), lengths=lengths)
    total_calls = int(calls_array.sum())
    productivity = float(correct_array.sum() / total_calls) if total_calls else math.inf
    means = objectives.mean(axis=0)
    return (float(correct_array.mean()), float(calls_array.mean()), productivity,
            tuple(float(m) for m in means), objectives)


@torch.no_grad()
def evaluate_policy(
    model: torch.nn.Module,
    tokenizer: Any,
    task: Task,
    examples: Sequence[Example],
    *,
    num_samples: int = 1,
    greedy: bool = True,
    temperature: float = 1.0,
    batch_size: int = 32,
    max_new_tokens: int = 256,
    seed: int = 0,
    tracker: OptimalCallTracker | None = None,
    efficiency_options: Any = None,
    tools_in_prompt: bool = True,
    progress: bool = True,
    description: str = "evaluating",
) -> EvalResult:
    """Roll out ``num_samples`` completions per example and score them.

    Args:
        model, tokenizer: the policy (any transformers causal LM, PEFT-wrapped or not).
        task: supplies prompts, tools, the tool budget and the answer checker.
        examples: the questions (e.g. ``task.load("test")``).
        greedy: greedy decoding (default; deterministic) or sampling at ``temperature``.
        tracker: n* tracker of the evaluation questions, kept across calls (stage 1 passes
            its validation tracker); a fresh one when None.
        efficiency_options: a ``ParetoPOConfig`` or a mapping of scoring options
            (``paretopo.core.objectives.scoring_options``: tool-efficiency form, alpha, ..., the
            objective names), as in training; None: :data:`DEFAULT_SCORING`'s.
        tools_in_prompt: render the tools block in the prompt (False for the tiny policy, which
            learned the convention in its warm start).
    """
    if not examples:
        raise ValueError("no examples to evaluate; check the split name and the data file")
    tools = {tool.__name__: tool for tool in task.tools()}
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    decode = get_rollout_backend(rollout_backend_for(model))  # an Unsloth-loaded policy: segmented_generate
    records: list[dict[str, Any]] = []
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc=description, disable=not progress, unit="batch"):
        batch = list(examples[start : start + batch_size])
        rollouts = decode(
            model, tokenizer, [task.messages(e) for e in batch], tools=tools, num_samples=num_samples,
            max_new_tokens=max_new_tokens, max_tool_calls=task.max_tool_calls, greedy=greedy,
            temperature=temperature, generator=generator, answer_extractor=task.extract_answer,
            tools_in_prompt=tools_in_prompt,
        )
        for index, rollout in enumerate(rollouts):
            example = batch[index // num_samples]
            records.append({
                "id": example.id,
                "sample": index % num_samples,
                "question": example.question,
                "answer": example.answer if isinstance(example.answer, str) else " | ".join(example.answer),
                "final_answer": rollout.final_answer,
                "correct": bool(task.is_correct(rollout.text, example)),
                "tool_calls": rollout.num_tool_calls,
                "tool_errors": rollout.tool_errors,
                "finish_reason": rollout.finish_reason,
                "completion_tokens": len(rollout.completion_ids),
                "text": rollout.text,
                **{f"meta_{k}": v for k, v in example.metadata.items() if isinstance(v, (int, float, str))},
            })
    accuracy, mean_calls, productivity, means, objectives = summarize(
        [r["id"] for r in records], [float(r["correct"]) for r in records], [r["tool_calls"] for r in records],
        tracker=tracker, efficiency_options=efficiency_options, lengths=[r["completion_tokens"] for r in records],
    )
    names = scored_objectives(_scoring(efficiency_options))
    rows = pl.DataFrame(records, infer_schema_length=None).with_columns(
        pl.Series(objective_column(name), objectives[:, k]) for k, name in enumerate(names))
    return EvalResult(accuracy, mean_calls, productivity, means, len(records), rows, names,
                      tool_isolation=tool_isolation(tools))


def _scoring(efficiency_options: Any) -> Any:
    return scoring_for(DEFAULT_SCORING) if efficiency_options is None else efficiency_options


def evaluate_saved_policy(settings: EvalSettings) -> tuple[dict[str, Any], EvalResult]:
    """Load the policy ``settings.policy`` names and evaluate it; returns (JSON summary, result).

    A run folder stands for its ``final/`` policy; a folder with ``adapter_config.json`` is loaded
    as a LoRA adapter on its base model, anything else as a full model. A run folder, its
    ``final/`` or one of its checkpoints is scored with the run's own config (as its
    ``eval.parquet`` was); any other policy with :data:`DEFAULT_SCORING`'s. The summary's
    ``scoring`` says which.
    """
    from pathlib import Path

    from paretopo.agent.models import load_adapter, load_policy
    from paretopo.evaluation.integrity import check_model_files
    from paretopo.evaluation.runlog import run_paths
    from paretopo.tasks import get_task
    from paretopo.tasks.base import read_jsonl_examples

    source = Path(settings.policy)
    if run_paths(source).final.is_dir():
        source = run_paths(source).final
    check_model_files(source, "policy")  # a damaged weights file: one line, not a loader traceback
    if (source / "adapter_config.json").exists():
        model, tokenizer = load_adapter(source)
    else:
        model, tokenizer = load_policy(str(source), lora=False)
    task = get_task(settings.task)
    require_isolation_for_process(settings.require_isolation)  # before any sandbox is made
    examples = read_jsonl_examples(settings.data) if settings.data else task.load(settings.split)
    run = run_folder_of(settings.policy)
    scoring_name = str(run) if run is not None else DEFAULT_SCORING
    scoring = scoring_for(scoring_name)
    result = evaluate_policy(model, tokenizer, task, examples[: settings.limit], num_samples=settings.samples,
                             greedy=settings.samples == 1, max_new_tokens=settings.max_new_tokens,
                             tools_in_prompt=settings.tools_in_prompt, efficiency_options=scoring)
    summary = {"policy": str(source), "task": task.name, "split": settings.data or settings.split,
               "scoring": f"{scoring_name}: {describe_scoring(scoring)}", **result.as_dict()}
    summary["tool_isolation"] = result.tool_isolation  # which sandbox level each tool call ran under
    greedy = None
    if settings.samples > 1:  # the sampled policy is what RL optimises; greedy decoding hides part of it
        greedy = evaluate_policy(model, tokenizer, task, examples[: settings.limit], greedy=True,
                                 max_new_tokens=settings.max_new_tokens, tools_in_prompt=settings.tools_in_prompt,
                                 efficiency_options=scoring, description="greedy")
        summary |= {f"{GREEDY_PREFIX}accuracy": greedy.accuracy, f"{GREEDY_PREFIX}mean_tool_calls": greedy.mean_tool_calls}
    if settings.by:
        table = behaviour_table(result.rows, settings.by)
        if greedy is not None:
            table = table.join(accuracy_and_calls_by(greedy.rows, settings.by, GREEDY_PREFIX), on=settings.by, how="left")
        summary["breakdown"] = table.to_dicts()
    return summary, result


GREEDY_PREFIX, SAMPLED_PREFIX = "greedy_", "sampled_"
"""Column prefixes of the accuracy / mean-calls pair measured the other way: greedy beside a sampled
evaluation (``paretopo eval --samples k``), sampled beside a greedy one (a run's test summary)."""


def accuracy_and_calls_by(rows: pl.DataFrame, by: str, prefix: str) -> pl.DataFrame:
    """``<prefix>accuracy`` and ``<prefix>mean_tool_calls`` per value of ``by`` (see :func:`behaviour_table`)."""
    return behaviour_table(rows, by).select(
        by, pl.col("accuracy").alias(f"{prefix}accuracy"), pl.col("mean_tool_calls").alias(f"{prefix}mean_tool_calls"))


def behaviour_table(rows: pl.DataFrame, by: str = "tier") -> pl.DataFrame:
    """Where a policy spends its calls: one row per value of ``by`` (e.g. the arithmetic tier).

    Columns: ``accuracy``, ``mean_tool_calls``, ``direct_accuracy`` (answers given without a
    call; null if none), ``tool_accuracy`` (answers that used the calculator), the shares of
    completions with ``calls_0``, ``calls_1`` and ``calls_2plus`` calls, and ``completions``.
    ``rows`` is ``EvalResult.rows``; ``by`` names a column or an example metadata field.
    """
    name = by if by in rows.columns else f"meta_{by}"
    if name not in rows.columns:
        known = sorted(c.removeprefix("meta_") for c in rows.columns if c.startswith("meta_"))
        raise ValueError(f"cannot break down by {by!r}; the examples carry {known}")
    calls, correct = pl.col("tool_calls"), pl.col("correct").cast(pl.Float64)
    return (
        rows.group_by(name)
        .agg(
            correct.mean().alias("accuracy"),
            calls.cast(pl.Float64).mean().alias("mean_tool_calls"),
            correct.filter(calls == 0).mean().alias("direct_accuracy"),
            correct.filter(calls > 0).mean().alias("tool_accuracy"),
            (calls == 0).mean().alias("calls_0"),
            (calls == 1).mean().alias("calls_1"),
            (calls >= 2).mean().alias("calls_2plus"),
            pl.len().alias("completions"),
        )
        .sort(name)
        .rename({name: by})
    )


def frontier(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Mask of the non-dominated points among checkpoint outcome vectors ``[N, M]``."""
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(nondominated_mask(array))


def frontier_hypervolume(points: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float] = (0.0, 0.0)) -> float:
    """Hypervolume of a set of checkpoint outcome vectors (dominated ones add nothing)."""
    array = np.asarray(points, dtype=np.float64)
    return hypervolume(array.reshape(-1, len(ref)), ref) if array.size else 0.0


# ------------------------------------------------------------------------------------------
# comparing runs: one n* for everyone, checkpoint frontiers, hypervolume, dominance
# ------------------------------------------------------------------------------------------


def checkpoint_scoring(run_dirs: Sequence[str], scoring: Any = DEFAULT_SCORING) -> dict[str, Any]:
    """The scoring options :func:`checkpoint_points` re-scores ``run_dirs`` with.

    ``scoring`` names how (``paretopo.evaluation.runlog.scoring_for``: a preset name, a
    ``ParetoPOConfig`` or a run folder); the objectives are every objective any of the runs
    trained on (in order of appearance), with ``brevity_length`` from the first run that has one.
    """
    from paretopo.evaluation.runlog import read_run

    return _comparison_scoring(scoring, [read_run(path).config for path in run_dirs])


def checkpoint_points(run_dirs: Sequence[str], scoring: Any = DEFAULT_SCORING) -> pl.DataFrame:
    """Objective means of every evaluated checkpoint of several runs, on a shared n*.

    Tool efficiency depends on n*, and each run tracks its own, so their numbers are not
    comparable. Here n* of a question is the fewest tool calls among correct answers to it in
    *any* evaluation of *any* of the runs, and every (run, step, split) is re-scored with it,
    all with one scoring (:func:`checkpoint_scoring` of ``scoring``; print it with
    ``paretopo.core.objectives.describe_scoring``).

    Returns:
        One row per (run, step, split): run, method, step, split, final, accuracy,
        mean_tool_calls, one ``obj_<name>`` column per objective, n.
    """
    from paretopo.evaluation.runlog import read_run

    frames, configs = [], []
    for path in run_dirs:
        data = read_run(path)
        if data.eval_rows.height == 0:
            raise ValueError(f"{path} has no evaluation rows (eval_rows/); was it trained with paretopo train?")
        configs.append(data.config)
        method = data.config.get("method", {}).get("method", data.name)
        finals = set(data.evals.filter(pl.col("final")).select("step", "split").iter_rows()) if data.evals.height else set()
        wanted = [c for c in ("id", "correct", "tool_calls", "completion_tokens", "step", "split") if c in data.eval_rows.columns]
        rows = data.eval_rows.select(wanted).with_columns(pl.lit(str(path)).alias("run"), pl.lit(method).alias("method"))
        rows = rows.with_columns(pl.struct("step", "split").map_elements(
            lambda s, finals=finals: (s["step"], s["split"]) in finals, return_dtype=pl.Boolean).alias("final"))
        frames.append(rows)
    rows = pl.concat(frames, how="diagonal_relaxed")
    options = _comparison_scoring(scoring, configs)
    names = scored_objectives(options)
    lengths = None
    if "brevity" in names:
        if "completion_tokens" not in rows.columns or rows["completion_tokens"].null_count():
            raise ValueError("brevity needs completion lengths, which evaluation rows written before it lack "
                             "(no completion_tokens column); compare without brevity: objectives=('task', "
                             "'tool_efficiency')")
        lengths = rows["completion_tokens"].to_numpy()
    objectives = score_completions(rows["id"].to_list(), rows["correct"].cast(pl.Float64).to_numpy(),
                                   rows["tool_calls"].to_numpy(), OptimalCallTracker(), options, lengths=lengths)
    rows = rows.with_columns(pl.Series(objective_column(name), objectives[:, k]) for k, name in enumerate(names))
    return (
        rows.group_by("run", "method", "step", "split", "final", maintain_order=True)
        .agg(
            pl.col("correct").cast(pl.Float64).mean().alias("accuracy"),
            pl.col("tool_calls").cast(pl.Float64).mean().alias("mean_tool_calls"),
            *(pl.col(objective_column(name)).mean() for name in names),
            pl.len().alias("n"),
        )
        .sort("run", "split", "step")
    )


def _comparison_scoring(scoring: Any, configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {**scoring_for(scoring), **_runs_objectives(configs)}


def _runs_objectives(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Objective names (and brevity's length) of several runs' config.json, for re-scoring them together."""
    names: list[str] = []
    brevity_length = None
    for config in configs:
        method = config.get("method", {}) if isinstance(config.get("method"), Mapping) else {}
        for name in method.get("objectives", DEFAULT_OBJECTIVES):
            if name not in names:
                names.append(name)
        if brevity_length is None and "brevity" in method.get("objectives", ()):
            brevity_length = method.get("brevity_length") or config.get("settings", {}).get("max_completion_length")
    return {"objectives": tuple(names or DEFAULT_OBJECTIVES),
            "brevity_length": None if brevity_length is None else int(brevity_length)}


def compare_runs(run_dirs: Sequence[str], split: str = "validation",
                 scoring: Any = DEFAULT_SCORING) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-run frontier summary and a dominance table between the runs' final test points,
    scored with ``scoring`` (as :func:`checkpoint_points`).

    Returns:
        ``(summary, dominance)``: summary is :func:`run_summaries` of the runs'
        :func:`checkpoint_points`; dominance[i][j] says whether run i's final test point
        dominates run j's.
    """
    points = checkpoint_points(run_dirs, scoring)
    summary = run_summaries(points, split)
    columns = [f"test_{c}" for c in objective_columns(points)]
    finals = {row["run"]: np.array([np.nan if row[c] is None else row[c] for c in columns], dtype=np.float64)
              for row in summary.iter_rows(named=True)}
    runs = list(finals)
    dominance = pl.DataFrame({"run": runs, **{
        other: [bool(np.all(finals[r] >= finals[other]) and np.any(finals[r] > finals[other])) for r in runs]
        for other in runs}})
    return summary, dominance


def run_summaries(points: pl.DataFrame, split: str = "validation") -> pl.DataFrame:
    """One row per run of :func:`checkpoint_points`' frame: its final test point and its checkpoint frontier.

    Columns: run, method, final test accuracy and mean tool calls, ``test_obj_<name>`` per
    objective (null without a final test evaluation), frontier hypervolume (over all M
    objectives, reference 0) / cardinality / spread over the checkpoints evaluated on ``split``,
    and the number of those checkpoints.
    """
    columns = objective_columns(points)
    summary_rows = []
    for run in dict.fromkeys(points["run"].to_list()):
        own = points.filter(pl.col("run") == run)
        checkpoints = own.filter(pl.col("split") == split)
        vectors = checkpoints.select(columns).to_numpy()
        on_front = frontier(vectors) if len(vectors) else np.zeros(0, dtype=bool)
        front = vectors[on_front]
        final = own.filter(pl.col("final") & (pl.col("split") == "test"))
        final_row = final.to_dicts()[-1] if final.height else {}
        summary_rows.append({
            "run": run,
            "method": own["method"][0],
            "test_accuracy": final_row.get("accuracy"),
            "test_mean_tool_calls": final_row.get("mean_tool_calls"),
            **{f"test_{c}": final_row.get(c) for c in columns},
            "frontier_hv": frontier_hypervolume(front, ref=(0.0,) * len(columns)) if len(front) else 0.0,
            "frontier_size": int(on_front.sum()),
            "frontier_spread": float(np.linalg.norm(front.max(axis=0) - front.min(axis=0))) if len(front) else 0.0,
            "checkpoints": len(vectors),
        })
    return pl.DataFrame(summary_rows)
