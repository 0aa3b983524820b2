"""The one evaluation of a training run: :class:`Evaluator`.

Every evaluation a run makes (each checkpoint on validation, stage 1's validation outcome, the
final policy on test) decodes greedily with the run's completion length and prompt rendering,
on the plan's examples of a split, scored with the run's scoring options
(``paretopo.training.plan.RunPlan``); only the split, the n* tracker and what is logged differ.
"""

from __future__ import annotations

from typing import Any

from paretopo.core.objectives import OptimalCallTracker
from paretopo.evaluation.evaluate import EvalResult, evaluate_policy
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
                         progress: bool = False) -> EvalResult:
        """Evaluate, then append the summary (evals.parquet) and the rows (eval_rows/) of ``step``."""
        result = self.evaluate(model, split, progress=progress)
        if self.run_log is not None:
            self.run_log.log_eval([{"method": self.plan.method, "seed": self.plan.settings.seed, "step": step,
                                    "split": split, "final": final, **result.as_dict()}])
            self.run_log.log_eval_rows(step, split, result.rows)
        return result
