"""Evaluate a policy on a task: accuracy, tool use, the objective vector, and frontiers.

``evaluate_policy`` runs the same tool-using rollouts as training (``paretopo.rollout``) over a
list of examples in batches with a progress bar and returns per-question rows plus summary
numbers:

* ``accuracy``: share of completions whose final answer is correct;
* ``mean_tool_calls``: executed tool calls per completion;
* ``tool_productivity``: correct answers per tool call (OTC's measure; ``inf`` with no calls);
* ``objectives``: the mean objective vector ``(task, tool_efficiency)``, with tool efficiency
  measured against an n* tracker of the evaluation questions (updated from this evaluation's
  correct answers first, exactly as in training). That vector is stage 1's outcome and a point
  of the checkpoint frontier.

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

from paretopo.hypervolume import hypervolume
from paretopo.objectives import OptimalCallTracker, score_completions
from paretopo.pareto import nondominated_mask
from paretopo.rollout import generate_rollouts
from paretopo.tasks.base import Example, Task

__all__ = ["EvalResult", "behaviour_table", "evaluate_policy", "frontier", "frontier_hypervolume", "summarize"]


@dataclass
class EvalResult:
    """Summary numbers and one row per completion (``rows``: a polars frame)."""

    accuracy: float
    mean_tool_calls: float
    tool_productivity: float
    objectives: tuple[float, float]
    n_completions: int
    rows: pl.DataFrame = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "mean_tool_calls": self.mean_tool_calls,
            "tool_productivity": self.tool_productivity,
            "obj_task": self.objectives[0],
            "obj_tool_efficiency": self.objectives[1],
            "n_completions": self.n_completions,
        }


def summarize(
    question_ids: Sequence[str],
    correct: Sequence[float],
    calls: Sequence[int],
    *,
    tracker: OptimalCallTracker | None = None,
    efficiency_options: Mapping[str, Any] | None = None,
) -> tuple[float, float, float, tuple[float, float], np.ndarray]:
    """Accuracy, mean calls, productivity, mean objective vector and the per-row objectives."""
    if len(question_ids) == 0:
        raise ValueError("nothing to summarise: the evaluation produced no completions")
    tracker = tracker if tracker is not None else OptimalCallTracker()
    correct_array = np.asarray(correct, dtype=np.float64)
    calls_array = np.asarray(calls, dtype=np.int64)
    objectives = score_completions(list(question_ids), correct_array, calls_array, tracker, efficiency_options or {})
    total_calls = int(calls_array.sum())
    productivity = float(correct_array.sum() / total_calls) if total_calls else math.inf
    means = objectives.mean(axis=0)
    return (float(correct_array.mean()), float(calls_array.mean()), productivity,
            (float(means[0]), float(means[1])), objectives)


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
    efficiency_options: Mapping[str, Any] | None = None,
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
        efficiency_options: ``form``, ``alpha``, ``max_calls``, ``unknown_nstar`` for the
            tool-efficiency objective (as in training).
        tools_in_prompt: render the tools block in the prompt (False for the tiny policy, which
            learned the convention in its warm start).
    """
    if not examples:
        raise ValueError("no examples to evaluate; check the split name and the data file")
    tools = {tool.__name__: tool for tool in task.tools()}
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    records: list[dict[str, Any]] = []
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc=description, disable=not progress, unit="batch"):
        batch = list(examples[start : start + batch_size])
        rollouts = generate_rollouts(
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
        tracker=tracker, efficiency_options=efficiency_options,
    )
    rows = pl.DataFrame(records, infer_schema_length=None).with_columns(
        pl.Series("obj_task", objectives[:, 0]), pl.Series("obj_tool_efficiency", objectives[:, 1])
    )
    return EvalResult(accuracy, mean_calls, productivity, means, len(records), rows)


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


def checkpoint_points(run_dirs: Sequence[str], efficiency_options: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """Objective means of every evaluated checkpoint of several runs, on a shared n*.

    Tool efficiency depends on n*, and each run tracks its own, so their numbers are not
    comparable. Here n* of a question is the fewest tool calls among correct answers to it in
    *any* evaluation of *any* of the runs, and every (run, step, split) is re-scored with it.

    Returns:
        One row per (run, step, split): run, method, step, split, final, accuracy,
        mean_tool_calls, obj_task, obj_tool_efficiency, n.
    """
    from paretopo.runlog import read_run

    frames = []
    for path in run_dirs:
        data = read_run(path)
        if data.eval_rows.height == 0:
            raise ValueError(f"{path} has no evaluation rows (eval_rows/); was it trained with paretopo train?")
        method = data.config.get("method", {}).get("method", data.name)
        finals = set(data.evals.filter(pl.col("final")).select("step", "split").iter_rows()) if data.evals.height else set()
        rows = data.eval_rows.select("id", "correct", "tool_calls", "step", "split").with_columns(
            pl.lit(str(path)).alias("run"), pl.lit(method).alias("method"))
        rows = rows.with_columns(pl.struct("step", "split").map_elements(
            lambda s, finals=finals: (s["step"], s["split"]) in finals, return_dtype=pl.Boolean).alias("final"))
        frames.append(rows)
    rows = pl.concat(frames, how="diagonal_relaxed")
    objectives = score_completions(rows["id"].to_list(), rows["correct"].cast(pl.Float64).to_numpy(),
                                   rows["tool_calls"].to_numpy(), OptimalCallTracker(), efficiency_options or {})
    rows = rows.with_columns(pl.Series("obj_task", objectives[:, 0]), pl.Series("obj_tool_efficiency", objectives[:, 1]))
    return (
        rows.group_by("run", "method", "step", "split", "final", maintain_order=True)
        .agg(
            pl.col("correct").cast(pl.Float64).mean().alias("accuracy"),
            pl.col("tool_calls").cast(pl.Float64).mean().alias("mean_tool_calls"),
            pl.col("obj_task").mean(),
            pl.col("obj_tool_efficiency").mean(),
            pl.len().alias("n"),
        )
        .sort("run", "split", "step")
    )


def compare_runs(run_dirs: Sequence[str], split: str = "validation",
                 efficiency_options: Mapping[str, Any] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-run frontier summary and a dominance table between the runs' final test points.

    Returns:
        ``(summary, dominance)``: summary has one row per run (method, final test accuracy and
        mean tool calls, frontier hypervolume / cardinality / spread over the checkpoints
        evaluated on ``split``); dominance[i][j] says whether run i's final test point
        dominates run j's.
    """
    points = checkpoint_points(run_dirs, efficiency_options)
    summary_rows = []
    finals = {}
    for run in dict.fromkeys(points["run"].to_list()):
        own = points.filter(pl.col("run") == run)
        checkpoints = own.filter(pl.col("split") == split)
        vectors = checkpoints.select("obj_task", "obj_tool_efficiency").to_numpy()
        on_front = frontier(vectors) if len(vectors) else np.zeros(0, dtype=bool)
        front = vectors[on_front]
        final = own.filter(pl.col("final") & (pl.col("split") == "test"))
        final_row = final.to_dicts()[-1] if final.height else {}
        finals[run] = np.array([final_row.get("obj_task", np.nan), final_row.get("obj_tool_efficiency", np.nan)])
        summary_rows.append({
            "run": run,
            "method": own["method"][0],
            "test_accuracy": final_row.get("accuracy"),
            "test_mean_tool_calls": final_row.get("mean_tool_calls"),
            "test_obj_task": final_row.get("obj_task"),
            "test_obj_tool_efficiency": final_row.get("obj_tool_efficiency"),
            "frontier_hv": frontier_hypervolume(front) if len(front) else 0.0,
            "frontier_size": int(on_front.sum()),
            "frontier_spread": float(np.linalg.norm(front.max(axis=0) - front.min(axis=0))) if len(front) else 0.0,
            "checkpoints": len(vectors),
        })
    runs = list(finals)
    dominance = pl.DataFrame({"run": runs, **{
        other: [bool(np.all(finals[r] >= finals[other]) and np.any(finals[r] > finals[other])) for r in runs]
        for other in runs}})
    return pl.DataFrame(summary_rows), dominance
