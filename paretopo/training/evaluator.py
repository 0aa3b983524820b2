"""The one evaluation of a training run: :class:`Evaluator`.

Every evaluation a run makes (each checkpoint on validation, stage 1's validation outcome, the
final policy on test) decodes greedily with the run's completion length and prompt rendering,
on the plan's examples of a split, scored with the run's scoring options
(``paretopo.training.plan.RunPlan``); only the split, the n* tracker and what is logged differ.
"""

from __future__ import annotations

from typing import Any

from paretopo.core.objectives import OptimalCallTracker
from paretopo.evaluation.evaluate import (
    SAMPLED_PREFIX,
    EvalResult,
    accuracy_and_calls_by,
    evaluate_policy,
)
from paretopo.evaluation.runlog import RunLog
from paretopo.training.plan import RunPlan

__all__ = ["Evaluator"]


class Evaluator:
    """Evaluates a policy on a split of ``plan`` and writes the result to the run log."""

    def __init__(self, plan: RunPlan, tokenizer: Any, run_log: RunLog | None = None):
        self.plan, self.tokenizer, self.run_log = plan, tokenizer, run_log

    def evaluate(self, model: Any, split: str, *, tracker: OptimalCallTracker | None = None,
                 progress: bool = False) -> EvalResult:
        """Greedy rollouts on the plan's ``split`` examples; ``tracker`` keeps n* across calls."""
        plan = self.plan
        return evaluate_policy(model, self.tokenizer, plan.task, plan.examples(split), greedy=True,
                               max_new_tokens=plan.settings.max_completion_length, tracker=tracker,
                               efficiency_options=plan.scoring, tools_in_prompt=plan.tools_in_prompt,
                               progress=progress, description=f"{split} ({plan.method})")

    def evaluate_and_log(self, model: Any, split: str, step: int, *, final: bool = False,
                         progress: bool = False, extra: dict[str, Any] | None = None) -> EvalResult:
        """Evaluate, then append the summary (evals.parquet, with ``extra`` columns) and the rows
        (eval_rows/) of ``step``."""
        result = self.evaluate(model, split, progress=progress)
        if self.run_log is not None:
            self.run_log.log_eval([{"method": self.plan.method, "seed": self.plan.settings.seed, "step": step,
                                    "split": split, "final": final, **result.as_dict(), **(extra or {})}])
            self.run_log.log_eval_rows(step, split, result.rows)
        return result

    def final_test(self, model: Any, step: int, *, progress: bool = False) -> tuple[dict[str, Any], list | None]:
        """The final policy on test, greedy and, with ``RunSettings.test_samples``, sampled beside it
        (RL optimises the sampled policy; greedy decoding hides part of what it learned).

        Returns the logged test summary (``sampled_*`` columns added) and, per tier, the sampled
        accuracy and calls (None without sampling or tiers). The sampled rows stay out of
        eval_rows/, so the n* every comparison shares is the greedy evaluation's.
        """
        plan, samples = self.plan, self.plan.settings.test_samples
        extra, by_tier = {}, None
        if samples:
            sampled = evaluate_policy(model, self.tokenizer, plan.task, plan.examples("test"), num_samples=samples,
                                      greedy=False, temperature=1.0, max_new_tokens=plan.settings.max_completion_length,
                                      seed=plan.settings.seed, efficiency_options=plan.scoring,
                                      tools_in_prompt=plan.tools_in_prompt, progress=progress,
                                      description=f"test, {samples} samples ({plan.method})")
            extra = {f"{SAMPLED_PREFIX}accuracy": sampled.accuracy,
                     f"{SAMPLED_PREFIX}mean_tool_calls": sampled.mean_tool_calls,
                     f"{SAMPLED_PREFIX}per_question": samples}
            if "meta_tier" in sampled.rows.columns:
                by_tier = accuracy_and_calls_by(sampled.rows, "tier", SAMPLED_PREFIX).to_dicts()
        greedy = self.evaluate_and_log(model, "test", step, final=True, progress=progress, extra=extra)
        return {**greedy.as_dict(), **extra}, by_tier
